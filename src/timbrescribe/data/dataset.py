"""PyTorch Dataset of random crops of rendered examples, with per-part piano-roll targets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch

from timbrescribe.constants import HOP, N_PITCHES
from timbrescribe.data.instruments import FAMILIES
from timbrescribe.data.labels import piano_rolls_from_arrays
from timbrescribe.data.storage import load_manifest, load_notes

FAMILY_INDEX = {name: i for i, name in enumerate(sorted(FAMILIES))}


class ClipDataset(torch.utils.data.Dataset):
    """Random ``clip_frames``-frame crops of the examples in ``root`` (one per example per call).

    Each item holds 'audio' (clip_frames*HOP,) float32 mix; 'onset' and 'frame'
    (max_parts, 84, clip_frames) float32 per-part targets, frame t centred on sample t*HOP of the
    crop; 'part_mask' (max_parts,) bool; 'program' and 'family' (max_parts,) int64, -1 padding
    (family indexes sorted(FAMILIES)); 'start_frame' () int64, the crop's first frame in the
    example. Crops start on a frame boundary; examples shorter than
    the clip are zero-padded. With ``remix`` the mix is rebuilt from the stems: a random subset of
    at least ``min_parts`` parts (all of them when fewer exist), each with a random gain within
    ±``remix_gain_db``; the parts left out get empty targets and a False mask. With ``seed`` the crops are reproducible: call k for example i in a
    process uses generator (seed, i, k, DataLoader worker seed); without it they are random.
    """

    def __init__(
        self, root: str | Path, clip_frames: int = 860, max_parts: int = 4, seed: int | None = None,
        remix: bool = False, min_parts: int = 2, remix_gain_db: float = 6.0,
    ):
        self.root = Path(root)
        self.remix, self.min_parts, self.remix_gain_db = remix, min_parts, remix_gain_db
        self.clip_frames = clip_frames
        self.max_parts = max_parts
        self.seed = seed
        self.records = load_manifest(root)["examples"]
        too_many = [r["id"] for r in self.records if len(r["programs"]) > max_parts]
        if too_many:
            raise ValueError(f"examples {too_many[:5]} have more than max_parts={max_parts} parts")
        self._calls = np.zeros(len(self.records), np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        worker = torch.utils.data.get_worker_info()
        call = int(self._calls[index])
        self._calls[index] += 1
        return np.random.default_rng([self.seed, index, call, worker.seed if worker else 0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        path = self.root / record["file"]
        clip_samples = self.clip_frames * HOP
        last_start = max(0, (record["n_samples"] - clip_samples) // HOP)
        rng = self._rng(index)
        first_frame = int(rng.integers(0, last_start + 1))
        n_parts = len(record["programs"])
        audio = np.zeros(clip_samples, np.float32)
        start = first_frame * HOP
        with soundfile.SoundFile(path.with_suffix(".flac")) as flac:
            flac.seek(start)
            channels = flac.read(clip_samples, dtype="float32", always_2d=True)
        kept = np.ones(n_parts, bool)
        if self.remix:
            count = int(rng.integers(min(self.min_parts, n_parts), n_parts + 1))
            kept[:] = False
            kept[rng.choice(n_parts, count, replace=False)] = True
            gains = 10.0 ** (rng.uniform(-self.remix_gain_db, self.remix_gain_db, n_parts) / 20.0) * kept
            mix = channels[:, 1 : 1 + n_parts] @ gains.astype(np.float32)
        else:
            mix = channels[:, 0]
        audio[: mix.size] = mix
        notes = load_notes(path.with_suffix(".npz"))
        onset = np.zeros((self.max_parts, N_PITCHES, self.clip_frames), np.float32)
        frame = np.zeros_like(onset)
        for part in np.flatnonzero(kept):
            mine = notes["note_part"] == part
            onset[part], frame[part] = piano_rolls_from_arrays(
                notes["note_onset"][mine], notes["note_offset"][mine], notes["note_pitch"][mine],
                self.clip_frames, first_frame,
            )
        program = np.full(self.max_parts, -1, np.int64)
        family = np.full(self.max_parts, -1, np.int64)
        program[:n_parts] = record["programs"]
        family[:n_parts] = [FAMILY_INDEX[f] for f in record["families"]]
        return {
            "audio": torch.from_numpy(audio),
            "onset": torch.from_numpy(onset),
            "frame": torch.from_numpy(frame),
            "part_mask": torch.from_numpy(np.pad(kept, (0, self.max_parts - n_parts))),
            "program": torch.from_numpy(program),
            "family": torch.from_numpy(family),
            "start_frame": torch.tensor(first_frame, dtype=torch.int64),
        }
