"""The Bach Violin Dataset (salu133445/bach-violin-dataset) as a real-audio dev set of solo violin.

The dataset's ``bach-violin/info.csv`` has one row per performed movement: the recording it is in
(``source_filename``, under ``audio/<collection>/``), where in that recording it is (``start``,
``end``, h:mm:ss; the dataset's own ``src/slice_audio.py`` cuts it with ``ffmpeg -ss start -to
end``) and whether the player tunes to A = 415 Hz (``baroque_tuning``). ``notes/<collection>/
<movement>.csv`` holds the score as played (repeats expanded): ``onset,offset,pitch,velocity``
with onset and offset in score ticks. ``alignments/<collection>/<movement>.csv`` has one row per
row of the notes file, ``start,end`` in seconds from the start of the cut movement, found by DTW
on constant-Q spectrograms (``src/align_scores.py``: 16 kHz, hop 512, so the times are multiples
of 32 ms). ``audio.csv`` gives each recording's licence; ``audio/<collection>/LICENSE`` its text.

Each movement whose recording is in the local git directory (snapshots may lack large files)
becomes one piece of the evaluation layout (``evaluation/layout.py``): ``<movement>/mix.wav``
(mono, the recording's rate, 16-bit), ``violin.mid`` and ``violin.csv`` (the aligned notes) and
``meta.json`` (player, licence, source paths and commit). ``index.json`` and ``README.md`` at
the top describe the set. Dev use only: nothing of it is trained on or shipped.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timbrescribe.errors import UserError
from timbrescribe.notes import Note, Track
from timbrescribe.outputs import atomic_paths, write_midi

REPO = "salu133445/bach-violin-dataset"
ROOT = "bach-violin"
DATASET = "bach-violin"
PART = "violin"
PROGRAM = 40  # General MIDI violin
# One frame of the dataset's alignment (src/align_scores.py: hop 512 at 16 kHz). A note whose
# aligned end is not after its start is given this length.
ALIGNMENT_FRAME_S = 512 / 16000
INDEX_FILE = "index.json"
README_FILE = "README.md"
NOTES_CSV_COLUMNS = ("onset", "offset", "pitch")


@dataclass(frozen=True)
class Movement:
    """One row of info.csv, with its recording's licence from audio.csv."""

    name: str  # e.g. john-garner_bwv1002_mov6: the piece's folder
    collection: str
    player: str
    work: str
    title: str
    movement: str
    source_filename: str
    start_s: float
    end_s: float
    baroque_tuning: bool
    licence: str  # audio.csv's short code: PD, CC BY, CC BY-NC, CC BY-NC-ND, or "-" (none given)

    @property
    def audio_path(self) -> str:
        return f"{ROOT}/audio/{self.collection}/{self.source_filename}"

    @property
    def notes_path(self) -> str:
        return f"{ROOT}/notes/{self.collection}/{self.name}.csv"

    @property
    def alignment_path(self) -> str:
        return f"{ROOT}/alignments/{self.collection}/{self.name}.csv"

    @property
    def licence_path(self) -> str:
        return f"{ROOT}/audio/{self.collection}/LICENSE"

    @property
    def non_commercial(self) -> bool:
        return "NC" in self.licence.upper().split("-")


# ---------------------------------------------------------------- reading the git directory


def _git(git_dir: Path, *args: str, data: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", f"--git-dir={git_dir}", *args], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        raise UserError(f"git {' '.join(args[:2])} in {git_dir} failed: {message}")
    return proc.stdout


def _is_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def find_repository(mirror: str | Path) -> Path:
    """The git directory of the dataset: ``mirror`` itself (bare or a clone), or one found under
    it as ``data.sources.find_git_dir`` looks (``owner+name/repo``, ``owner+name``, ...)."""
    from timbrescribe.data.sources import find_git_dir

    mirror = Path(mirror)
    if not mirror.exists():
        raise UserError(f"--mirror {mirror}: no such folder")
    if not mirror.is_dir():
        raise UserError(f"--mirror {mirror}: not a folder")
    for candidate in (mirror / ".git", mirror):
        if _is_git_dir(candidate):
            return candidate
    found = find_git_dir(mirror, REPO)
    if found is None:
        owner, name = REPO.split("/")
        raise UserError(
            f"--mirror {mirror}: no git directory of {REPO} there (looked for the folder itself and "
            f"{owner}+{name}/repo, {owner}+{name}, {owner}/{name}, {name} under it)"
        )
    return found


class Snapshot:
    """Files of one commit of the dataset's git directory; knows which blobs it really holds."""

    def __init__(self, git_dir: Path, revision: str = "HEAD"):
        self.git_dir = git_dir
        self.commit = _git(git_dir, "rev-parse", "--verify", f"{revision}^{{commit}}").decode().strip()
        listing = _git(git_dir, "ls-tree", "-r", "-z", self.commit, "--", ROOT).split(b"\0")
        self.blobs: dict[str, str] = {}
        for line in filter(None, listing):
            meta, path = line.split(b"\t", 1)
            _mode, kind, sha = meta.split()
            if kind == b"blob":
                self.blobs[path.decode()] = sha.decode()
        if f"{ROOT}/info.csv" not in self.blobs:
            raise UserError(f"{git_dir} @ {self.commit[:12]}: no {ROOT}/info.csv; is this {REPO}?")
        shas = list(self.blobs.values())
        checks = _git(git_dir, "cat-file", "--batch-check", data="".join(f"{sha}\n" for sha in shas).encode())
        missing = {sha for sha, line in zip(shas, checks.decode().splitlines()) if line.endswith("missing")}
        self.present = {path for path, sha in self.blobs.items() if sha not in missing}

    def listed(self, path: str) -> bool:
        return path in self.blobs

    def has(self, path: str) -> bool:
        return path in self.present

    def read(self, path: str) -> bytes:
        if not self.has(path):
            state = "listed but absent from the snapshot" if self.listed(path) else "not in the commit"
            raise UserError(f"{REPO} @ {self.commit[:12]}: {path} is {state}")
        return _git(self.git_dir, "cat-file", "blob", self.blobs[path])

    def text(self, path: str) -> str:
        return self.read(path).decode("utf-8")


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def parse_clock(value: str) -> float:
    """``h:mm:ss`` (or ``mm:ss``, or seconds) as seconds."""
    try:
        seconds = 0.0
        for field in value.strip().split(":"):
            seconds = seconds * 60 + float(field)
    except ValueError:
        raise UserError(f"{value!r}: not a time of the form h:mm:ss") from None
    return seconds


def read_movements(snapshot: Snapshot) -> list[Movement]:
    """Every movement of info.csv, in its order."""
    licences = {row["filename"]: row["license"].strip() for row in _csv_rows(snapshot.text(f"{ROOT}/audio.csv"))}
    movements = []
    for row in _csv_rows(snapshot.text(f"{ROOT}/info.csv")):
        movements.append(
            Movement(
                name=row["filename"],
                collection=row["collection"],
                player=row["violinist_name"],
                work=row["work"],
                title=row["title"],
                movement=row["movement"],
                source_filename=row["source_filename"],
                start_s=parse_clock(row["start"]),
                end_s=parse_clock(row["end"]),
                baroque_tuning=row.get("baroque_tuning", "0").strip() == "1",
                licence=licences.get(row["source_filename"], "-"),
            )
        )
    return movements


# ---------------------------------------------------------------- notes


@dataclass(frozen=True)
class AlignedNotes:
    notes: list[Note]
    lengthened: int  # aligned end not after start: given one alignment frame
    trimmed: int  # overlapped the next note of the same pitch: ended at its onset
    clipped: int  # ran past the end of the audio: ended there
    merged: int  # a second note of the same pitch and onset (a unison of two voices): dropped


def aligned_notes(notes_text: str, alignment_text: str, duration_s: float) -> AlignedNotes:
    """The notes of a movement at their aligned times: row i of the alignment gives the start and
    end (seconds) of row i of the notes (whose pitch and velocity are taken; its score ticks are
    not). Notes are sorted by onset and pitch; a note of no length after alignment gets one
    alignment frame, one that overlaps the next note of its pitch ends where that one starts, two
    of one pitch and onset are one note (the longer), and none runs past the audio."""
    score = _csv_rows(notes_text)
    alignment = _csv_rows(alignment_text)
    if len(score) != len(alignment):
        raise ValueError(f"{len(score)} notes but {len(alignment)} alignment rows")
    if not score:
        raise ValueError("no notes")
    lengthened = clipped = 0
    raw = []
    for note, times in zip(score, alignment):
        onset, offset = float(times["start"]), float(times["end"])
        if not np.isfinite(onset) or not np.isfinite(offset) or onset < 0:
            raise ValueError(f"alignment row {times} is not a time in the recording")
        if onset >= duration_s:
            raise ValueError(f"a note starts at {onset:.3f} s, after the end of the audio ({duration_s:.3f} s)")
        if offset <= onset:
            offset = onset + ALIGNMENT_FRAME_S
            lengthened += 1
        if offset > duration_s:
            offset = duration_s
            clipped += 1
        velocity = int(np.clip(round(float(note.get("velocity") or 64)), 1, 127))
        raw.append((onset, offset, int(note["pitch"]), velocity))
    raw.sort()
    by_pitch: dict[int, list[int]] = defaultdict(list)
    for index, (_onset, _offset, pitch, _velocity) in enumerate(raw):
        by_pitch[pitch].append(index)
    trimmed = 0
    for indices in by_pitch.values():
        for current, following in zip(indices, indices[1:]):
            onset, offset, pitch, velocity = raw[current]
            next_onset = raw[following][0]
            if offset > next_onset and next_onset > onset:
                raw[current] = (onset, next_onset, pitch, velocity)
                trimmed += 1
    # Two notes of one pitch at the same onset (a unison of two voices) are one sounding note.
    unique: dict[tuple[float, int], tuple[float, float, int, int]] = {}
    for onset, offset, pitch, velocity in raw:
        kept = unique.get((onset, pitch))
        if kept is None or offset > kept[1]:
            unique[(onset, pitch)] = (onset, offset, pitch, velocity)
    notes = [Note(*values) for values in sorted(unique.values())]
    return AlignedNotes(notes, lengthened, trimmed, clipped, merged=len(raw) - len(notes))


# ---------------------------------------------------------------- audio


def decode_audio(data: bytes, name: str) -> tuple[np.ndarray, int]:
    """An encoded recording (MP3, Ogg Opus, ... whatever libsndfile reads) as (frames, channels)
    float32 and its sample rate."""
    import soundfile

    try:
        samples, sr = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
        raise UserError(f"{name}: cannot decode ({err}); libsndfile >= 1.1 reads MP3 and Opus") from None
    return samples, int(sr)


def cut_movement(samples: np.ndarray, sr: int, start_s: float, end_s: float) -> np.ndarray:
    """Mono samples of [start_s, end_s) of a recording, as the dataset's slice_audio.py cuts them
    (an end past the recording stops at its end)."""
    first = int(round(start_s * sr))
    last = min(int(round(end_s * sr)), len(samples))
    if last <= first:
        raise ValueError(f"the recording ({len(samples) / sr:.1f} s) has nothing from {start_s:.1f} s to {end_s:.1f} s")
    return samples[first:last].mean(axis=1).astype(np.float32)


# ---------------------------------------------------------------- writing


def _write_wav(samples: np.ndarray, sr: int, path: Path) -> None:
    import soundfile

    soundfile.write(str(path), np.clip(samples, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")


def _write_notes_csv(notes: list[Note], path: Path) -> None:
    lines = [",".join(NOTES_CSV_COLUMNS)]
    lines += [f"{n.onset:.6f},{n.offset:.6f},{n.pitch}" for n in notes]
    path.write_text("\n".join(lines) + "\n")


def _write_json(document: dict, path: Path) -> None:
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def write_piece(out: Path, movement: Movement, mix: np.ndarray, sr: int, aligned: AlignedNotes,
                snapshot_info: dict, licence_text: str) -> dict:
    """One piece folder (all its files replaced together); returns its meta.json."""
    piece = out / movement.name
    piece.mkdir(parents=True, exist_ok=True)
    notes = aligned.notes
    pitches = [n.pitch for n in notes]
    meta = {
        "dataset": DATASET,
        "piece": movement.name,
        "synthetic": False,
        "dev_only": True,
        "sample_rate": sr,
        "duration_s": round(len(mix) / sr, 3),
        "instruments": [PART],
        "pitched_instruments": [PART],
        "player": movement.player,
        "collection": movement.collection,
        "work": movement.work,
        "title": movement.title,
        "movement": movement.movement,
        "licence": movement.licence,
        "non_commercial": movement.non_commercial,
        "licence_text": licence_text.strip(),
        "stems": [{
            "name": PART,
            "gm_program": PROGRAM,
            "is_drum": False,
            "pitched": True,
            "n_notes": len(notes),
            "pitch_range": [min(pitches), max(pitches)],
            "first_onset_s": round(notes[0].onset, 3),
            "last_offset_s": round(max(n.offset for n in notes), 3),
            "has_stem_audio": False,
        }],
        "source": {
            **snapshot_info,
            "audio_path": movement.audio_path,
            "notes_path": movement.notes_path,
            "alignment_path": movement.alignment_path,
            "licence_path": movement.licence_path,
            "cut_s": [movement.start_s, movement.end_s],
        },
        "annotation": (
            "score notes (repeats expanded) at the dataset's estimated alignment times (DTW of "
            "constant-Q spectrograms against a synthesised score, 32 ms frames); sounding pitch"
        ),
        "label_fixes": {
            "lengthened_to_one_frame": aligned.lengthened,
            "trimmed_at_next_same_pitch": aligned.trimmed,
            "clipped_at_audio_end": aligned.clipped,
            "unisons_merged": aligned.merged,
        },
    }
    targets = [piece / "mix.wav", piece / f"{PART}.mid", piece / f"{PART}.csv", piece / "meta.json"]
    with atomic_paths(targets) as (wav, midi, notes_csv, meta_path):
        _write_wav(mix, sr, wav)
        write_midi([Track(PART, notes, program=PROGRAM)], midi)
        _write_notes_csv(notes, notes_csv)
        _write_json(meta, meta_path)
    return meta


def _summary(pieces: list[dict]) -> dict:
    by_player: dict[str, dict] = {}
    by_licence: dict[str, dict] = {}
    for meta in pieces:
        for table, key in ((by_player, meta["player"]), (by_licence, meta["licence"])):
            entry = table.setdefault(key, {"pieces": 0, "minutes": 0.0, "notes": 0})
            entry["pieces"] += 1
            entry["minutes"] += meta["duration_s"] / 60
            entry["notes"] += meta["stems"][0]["n_notes"]
    for table in (by_player, by_licence):
        for entry in table.values():
            entry["minutes"] = round(entry["minutes"], 2)
    return {"by_player": by_player, "by_licence": by_licence}


def _readme(index: dict) -> str:
    lines = [
        "# Bach Violin Dataset (development set)",
        "",
        f"Solo violin recordings of {REPO} at commit {index['commit']}, one folder per movement,",
        "made by `timbrescribe data devset bach-violin`. Notes are the score (repeats expanded) at the",
        "dataset's estimated (DTW) alignment times. **Dev only**: never trained on, never shipped or",
        "redistributed. Licences differ per player (meta.json of each piece; NC = non-commercial).",
        "",
        "| piece | player | licence | minutes | notes |",
        "|---|---|---|---|---|",
    ]
    for piece in index["pieces"]:
        lines.append(f"| {piece['piece']} | {piece['player']} | {piece['licence']} | "
                     f"{piece['minutes']:.2f} | {piece['notes']} |")
    lines += ["", "Cite: H.-W. Dong, C. Zhou, T. Berg-Kirkpatrick, J. McAuley, \"Deep Performer: Score-to-Audio",
              "Music Performance Synthesis\", ICASSP 2022.", ""]
    return "\n".join(lines)


def convert(mirror: str | Path, out: str | Path, revision: str = "HEAD",
            log: Callable[[str], None] = print) -> dict:
    """Write every movement whose recording the snapshot holds into ``out`` (see the module's
    docstring); returns the index (also written to ``out/index.json``). A movement without its
    recording, notes or alignment is skipped and listed with the reason; no recording at all is a
    UserError."""
    git_dir = find_repository(mirror)
    snapshot = Snapshot(git_dir, revision)
    movements = read_movements(snapshot)
    convertible, skipped = [], []
    for movement in movements:
        reason = None
        if not snapshot.has(movement.audio_path):
            reason = ("recording listed but absent from the snapshot" if snapshot.listed(movement.audio_path)
                      else "recording not in the repository")
        elif not (snapshot.has(movement.notes_path) and snapshot.has(movement.alignment_path)):
            reason = "notes or alignment file missing"
        elif movement.baroque_tuning:
            reason = "baroque tuning (A = 415 Hz): the notes' pitch is not known to match the recording"
        if reason is None:
            convertible.append(movement)
        else:
            skipped.append({"piece": movement.name, "reason": reason})
    if not convertible:
        absent = sum(snapshot.listed(m.audio_path) and not snapshot.has(m.audio_path) for m in movements)
        raise UserError(
            f"{git_dir} @ {snapshot.commit[:12]}: no movement has its recording in the snapshot "
            f"({len(movements)} movements, {absent} with a recording listed but absent)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    snapshot_info = {"repo": REPO, "commit": snapshot.commit}
    pieces = []
    decoded: tuple[str, np.ndarray, int] | None = None  # movements of one recording come together
    for movement in convertible:
        started = time.perf_counter()
        if decoded is None or decoded[0] != movement.audio_path:
            decoded = (movement.audio_path, *decode_audio(snapshot.read(movement.audio_path), movement.audio_path))
        _, samples, sr = decoded
        try:
            mix = cut_movement(samples, sr, movement.start_s, movement.end_s)
            aligned = aligned_notes(snapshot.text(movement.notes_path), snapshot.text(movement.alignment_path),
                                    len(mix) / sr)
        except ValueError as err:
            skipped.append({"piece": movement.name, "reason": str(err)})
            log(f"{movement.name}: skipped ({err})")
            continue
        licence_text = snapshot.text(movement.licence_path) if snapshot.has(movement.licence_path) else ""
        meta = write_piece(out, movement, mix, sr, aligned, snapshot_info, licence_text)
        pieces.append(meta)
        fixes = ", ".join(f"{count} {what}" for what, count in meta["label_fixes"].items() if count)
        log(f"{movement.name}: {meta['duration_s'] / 60:.2f} min, {len(aligned.notes)} notes, "
            f"{movement.licence}{' (' + fixes + ')' if fixes else ''} [{time.perf_counter() - started:.1f} s]")
    if not pieces:
        raise UserError(f"{git_dir} @ {snapshot.commit[:12]}: no movement could be converted: "
                        + "; ".join(f"{s['piece']}: {s['reason']}" for s in skipped[-3:]))
    index = {
        "dataset": DATASET,
        "dev_only": True,
        "repo": REPO,
        "commit": snapshot.commit,
        "from": str(git_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "minutes": round(sum(m["duration_s"] for m in pieces) / 60, 2),
        "notes": sum(m["stems"][0]["n_notes"] for m in pieces),
        "pieces": [
            {"piece": m["piece"], "player": m["player"], "licence": m["licence"],
             "minutes": round(m["duration_s"] / 60, 2), "notes": m["stems"][0]["n_notes"]}
            for m in pieces
        ],
        **_summary(pieces),
        "skipped": skipped,
    }
    with atomic_paths([out / INDEX_FILE, out / README_FILE]) as (index_path, readme_path):
        _write_json(index, index_path)
        readme_path.write_text(_readme(index))
    return index

