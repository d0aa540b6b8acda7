"""Read an evaluation set laid out as DESIGN.md §7 describes.

``<set>/<piece>/mix.wav``, one ``<part>.mid`` per part, optional ``stems/<part>.wav`` and optional
``meta.json`` whose ``pitched_instruments`` lists the parts to score (otherwise every ``.mid`` but
``all.mid``, the merged reference, is a part). A piece is any sub-folder holding ``mix.wav`` or a
``.mid`` file; other sub-folders are ignored.

An *excerpt* is what one transcription run sees: the full mix of a piece (named ``<piece>``) or,
with sub-mixes, the sum of 2, 3 or 4 of its pitched stems (named ``<piece>__<part>+<part>...``,
parts in alphabetical order), scored against exactly those parts.

A synthetic dataset made by ``timbrescribe data render`` (a folder with ``manifest.json`` and
``examples/<id>.flac`` + ``.npz``) is read too: each example is a piece named by its id, its mix is
channel 0 of the FLAC, its parts are the rendered parts (named by instrument, ``name-2`` ... for a
repeated instrument) with their notes from the npz, and channel 1 + i is the stem of part i.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timbrescribe.errors import UserError
from timbrescribe import quiet_imports
from timbrescribe.notes import Note, Track

MERGED_REFERENCE = "all.mid"
MIX_FILE = "mix.wav"
SUBMIX_SEPARATOR = "__"
PART_JOINER = "+"
SUBMIX_SIZES = (2, 3, 4)


@dataclass(frozen=True)
class Piece:
    """One recording: its mix, the notes of each scored part, the stems it has."""

    name: str
    mix_path: Path
    parts: dict[str, list[Note]]
    stem_paths: dict[str, Path]  # file holding the stem of each scored part that has one

    def load_mix(self) -> np.ndarray:
        """The mix, mono float32 at SAMPLE_RATE."""
        from timbrescribe.audio import load_audio

        return load_audio(self.mix_path)

    def load_stem(self, part: str) -> np.ndarray:
        """The stem of one part, mono float32 at SAMPLE_RATE."""
        from timbrescribe.audio import load_audio

        return load_audio(self.stem_paths[part])


@dataclass(frozen=True)
class SyntheticPiece(Piece):
    """An example of a rendered dataset: the mix and the stems are channels of one FLAC file
    (``mix_path``, also the file of every stem)."""

    stem_channels: dict[str, int]

    def load_mix(self) -> np.ndarray:
        return _load_channel(self.mix_path, 0)

    def load_stem(self, part: str) -> np.ndarray:
        return _load_channel(self.mix_path, self.stem_channels[part])


def _load_channel(path: Path, channel: int) -> np.ndarray:
    """One channel of an audio file, mono float32 at SAMPLE_RATE."""
    import soundfile

    from timbrescribe.audio import prepare_audio

    samples, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return prepare_audio(samples[:, channel], sr)


@dataclass(frozen=True)
class Excerpt:
    """Audio to transcribe (the full mix or a sum of stems) and the parts it is scored against."""

    name: str
    piece: Piece
    part_names: tuple[str, ...]
    is_full_mix: bool

    @property
    def group(self) -> str:
        """``mix`` or ``submix-N`` (N parts): results are averaged within a group."""
        return "mix" if self.is_full_mix else f"submix-{len(self.part_names)}"

    @property
    def parts(self) -> dict[str, list[Note]]:
        return {name: self.piece.parts[name] for name in self.part_names}

    def load_audio(self) -> np.ndarray:
        """Mono float32 at SAMPLE_RATE: the mix, or the plain sum of the stems (padded to the longest)."""
        if self.is_full_mix:
            return self.piece.load_mix()
        stems = [self.piece.load_stem(name) for name in self.part_names]
        total = np.zeros(max(len(stem) for stem in stems), dtype=np.float32)
        for stem in stems:
            total[: len(stem)] += stem
        return total


def midi_tracks(path: Path) -> list[Track]:
    """The non-empty instruments of a MIDI file as tracks (name, program, drum flag, notes).
    Notes without duration are dropped."""
    pretty_midi = quiet_imports.pretty_midi()

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as err:  # pretty_midi/mido raise many exception types for a damaged file
        raise UserError(f"{path}: cannot read as MIDI ({err})") from None
    tracks = []
    for index, instrument in enumerate(midi.instruments):
        notes = [
            Note(float(n.start), float(n.end), int(n.pitch), int(n.velocity))
            for n in instrument.notes
            if n.end > n.start
        ]
        if notes:
            name = instrument.name.strip() or f"track{index}"
            tracks.append(Track(name, notes, program=instrument.program, is_drum=instrument.is_drum))
    return tracks


def _part_names(piece_dir: Path) -> list[str]:
    meta_path = piece_dir / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{meta_path}: not valid JSON ({err})") from None
        if "pitched_instruments" in meta:
            return list(meta["pitched_instruments"])
    return sorted(p.stem for p in piece_dir.glob("*.mid") if p.name != MERGED_REFERENCE)


def read_piece(piece_dir: Path) -> Piece:
    """Read one piece folder; a missing mix or part file is a UserError."""
    mix_path = piece_dir / MIX_FILE
    if not mix_path.is_file():
        raise UserError(f"{piece_dir}: no {MIX_FILE}")
    parts = {}
    for name in _part_names(piece_dir):
        midi_path = piece_dir / f"{name}.mid"
        if not midi_path.is_file():
            raise UserError(f"{piece_dir}: part {name!r} has no {midi_path.name}")
        parts[name] = [note for track in midi_tracks(midi_path) for note in track.notes]
    if not parts:
        raise UserError(f"{piece_dir}: no parts to score")
    stems = {name: piece_dir / "stems" / f"{name}.wav" for name in parts}
    stems = {name: path for name, path in stems.items() if path.is_file()}
    return Piece(piece_dir.name, mix_path, parts, stems)


def _looks_like_piece(directory: Path) -> bool:
    return (directory / MIX_FILE).exists() or any(directory.glob("*.mid"))


def _unique_names(names: list[str]) -> list[str]:
    """The names with the k-th repeat of a name (k >= 2) suffixed ``-k``."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def read_synthetic_dataset(root: Path) -> list[SyntheticPiece]:
    """Every example of a dataset rendered by ``timbrescribe data render``, in id order."""
    from timbrescribe.data.storage import example_name, load_manifest, load_notes, part_notes

    pieces = []
    for record in load_manifest(root)["examples"]:
        base = root / record["file"]
        names = _unique_names(record["names"])
        parts = dict(zip(names, part_notes(load_notes(base.with_suffix(".npz")), len(names))))
        flac = base.with_suffix(".flac")
        pieces.append(
            SyntheticPiece(
                name=example_name(record["id"]),
                mix_path=flac,
                parts=parts,
                stem_paths=dict.fromkeys(names, flac),
                stem_channels={name: 1 + i for i, name in enumerate(names)},
            )
        )
    if not pieces:
        raise UserError(f"{root}: the rendered dataset has no finished examples")
    return pieces


def read_dataset(path: str | Path) -> list[Piece]:
    """Every piece of a dataset folder, sorted by name; a rendered synthetic dataset (one with
    a manifest) gives one piece per example."""
    from timbrescribe.data.storage import MANIFEST

    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: no such dataset directory")
    if (root / MANIFEST).is_file():
        return read_synthetic_dataset(root)
    piece_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _looks_like_piece(d))
    if not piece_dirs:
        raise UserError(f"{root}: no pieces (sub-folders with {MIX_FILE} and <part>.mid files)")
    return [read_piece(d) for d in piece_dirs]


def excerpts(pieces: list[Piece], submixes: bool = False) -> list[Excerpt]:
    """The full mix of every piece and, with ``submixes``, every 2-, 3- and 4-part sum of its stems."""
    result = []
    for piece in pieces:
        result.append(Excerpt(piece.name, piece, tuple(piece.parts), is_full_mix=True))
        if not submixes:
            continue
        with_stems = sorted(piece.stem_paths)
        for size in SUBMIX_SIZES:
            for combination in itertools.combinations(with_stems, size):
                name = piece.name + SUBMIX_SEPARATOR + PART_JOINER.join(combination)
                result.append(Excerpt(name, piece, combination, is_full_mix=False))
    return result
