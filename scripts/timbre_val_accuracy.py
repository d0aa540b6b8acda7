"""Validation note accuracy (the training loop's measure) of timbre branches and of the training-free
descriptor baseline, side by side on the same notes: ground-truth notes of every validation example
with two or more parts, pooled and clustered with the true number of parts; the share of notes that
land with their own part under the best one-to-one matching. With ``--trios``, the same measure on
the TRIOS dev sub-mixes (2- and 3-part sums of the stems), reported per number of parts.

    .venv/bin/python scripts/timbre_val_accuracy.py --val datasets/val checkpoints/timbre/best.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from timbrescribe.clustering import cluster_notes  # noqa: E402
from timbrescribe.data.labels import piano_rolls  # noqa: E402
from timbrescribe.evaluation import layout  # noqa: E402
from timbrescribe.evaluation.descriptor_baseline import descriptor_vectors  # noqa: E402
from timbrescribe.frontend import Frontend  # noqa: E402
from timbrescribe.model import load_timbre_branch  # noqa: E402
from timbrescribe.training.commands import TimbreTrainConfig  # noqa: E402
from timbrescribe.training.timbre import (  # noqa: E402
    TimbreValidationSet, load_timbre_validation, note_accuracy, validate,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="*", type=Path, help="timbre branch weights (best.pt / last.pt)")
    parser.add_argument("--val", type=Path, default=Path("datasets/val"))
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--trios", type=Path, help="also score the sub-mixes of this TRIOS folder (dev set)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    sets = {str(args.val): load_timbre_validation(args.val, args.examples)}
    if args.trios is not None:
        sets |= trios_submixes(args.trios)
    config = TimbreTrainConfig(data=[], val=str(args.val), out="")
    for name, val in sets.items():
        print(f"{name}: {len(val.spectra)} examples")
        print(f"  descriptor baseline: note accuracy {baseline_accuracy(val):.4f}")
        for path in args.weights:
            scores = validate(load_timbre_branch(path), val, config)
            print(f"  {path}: note accuracy {scores['val_note_accuracy']:.4f} (InfoNCE {scores['val_loss']:.4f})")
    return 0


def baseline_accuracy(val: TimbreValidationSet) -> float:
    """Mean note accuracy of the descriptor baseline's vectors clustered with the true K."""
    accuracies = []
    for spectrum, _, parts in zip(val.spectra, val.rolls, val.notes):
        notes = [note for part in parts for note in part]
        truth = np.concatenate([np.full(len(part), i) for i, part in enumerate(parts)]).astype(np.int64)
        clustering = cluster_notes(descriptor_vectors(spectrum.numpy(), notes), len(parts))
        accuracies.append(note_accuracy(clustering.labels, truth))
    return float(np.mean(accuracies))


def trios_submixes(root: Path) -> dict[str, TimbreValidationSet]:
    """The 2- and 3-part sub-mixes of TRIOS as validation sets, one per number of parts."""
    frontend = Frontend()
    by_size: dict[int, TimbreValidationSet] = {}
    for excerpt in layout.excerpts(layout.read_dataset(root), submixes=True):
        parts = [notes for notes in excerpt.parts.values() if notes]
        if excerpt.is_full_mix or len(parts) < 2:
            continue
        with torch.no_grad():
            spectrum = frontend(torch.from_numpy(excerpt.load_audio())[None])[0]
        rolls = torch.from_numpy(np.stack([piano_rolls(part, spectrum.shape[-1])[1] for part in parts]))
        val = by_size.setdefault(len(parts), TimbreValidationSet([], [], []))
        val.spectra.append(spectrum)
        val.rolls.append(rolls)
        val.notes.append(parts)
    return {f"TRIOS {size}-part sub-mixes": by_size[size] for size in sorted(by_size)}


if __name__ == "__main__":
    sys.exit(main())
