"""Reading a rendered dataset folder (written by data/engine.py): its manifest and the note arrays of
an example. Kept free of torch and FluidSynth so that evaluation and tuning can read datasets."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from timbrescribe.errors import UserError
from timbrescribe.notes import Note

MANIFEST = "manifest.json"
EXAMPLES_DIR = "examples"  # <root>/examples/<example_name>.{flac,npz,mid}


def example_name(index: int) -> str:
    """File name (without extension) of example ``index``."""
    return f"{index:06d}"


def load_manifest(root: str | Path) -> dict:
    """The manifest of a rendered dataset folder."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise UserError(f"{path} not found: render the dataset first (timbrescribe data render)")
    return json.loads(path.read_text())


def load_notes(npz_path: Path) -> dict[str, np.ndarray]:
    """Note arrays of an example: note_part, note_onset, note_offset, note_pitch, note_velocity."""
    with np.load(npz_path) as data:
        return {key: data[key] for key in data.files if key.startswith("note_")}


def part_notes(arrays: dict[str, np.ndarray], n_parts: int) -> list[list[Note]]:
    """The notes of each of ``n_parts`` parts from an example's note arrays (load_notes)."""
    parts: list[list[Note]] = [[] for _ in range(n_parts)]
    for part, onset, offset, pitch, velocity in zip(
        arrays["note_part"], arrays["note_onset"], arrays["note_offset"], arrays["note_pitch"], arrays["note_velocity"]
    ):
        parts[part].append(Note(float(onset), float(offset), int(pitch), int(velocity)))
    return parts
