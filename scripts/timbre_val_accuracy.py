"""Validation note accuracy (the training loop's measure) of timbre branches and of the training-free
descriptor baseline, side by side on the same notes: ground-truth notes of every validation example
with two or more parts, pooled and clustered with the true number of parts; the share of notes that
land with their own part under the best one-to-one matching.

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
from timbrescribe.evaluation.descriptor_baseline import descriptor_vectors  # noqa: E402
from timbrescribe.model import load_timbre_branch  # noqa: E402
from timbrescribe.training.commands import TimbreTrainConfig  # noqa: E402
from timbrescribe.training.timbre import load_timbre_validation, note_accuracy, validate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="*", type=Path, help="timbre branch weights (best.pt / last.pt)")
    parser.add_argument("--val", type=Path, default=Path("datasets/val"))
    parser.add_argument("--examples", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(2)
    val = load_timbre_validation(args.val, args.examples)
    accuracies = []
    for spectrum, _, parts in zip(val.spectra, val.rolls, val.notes):
        notes = [note for part in parts for note in part]
        truth = np.concatenate([np.full(len(part), i) for i, part in enumerate(parts)]).astype(np.int64)
        clustering = cluster_notes(descriptor_vectors(spectrum.numpy(), notes), len(parts))
        accuracies.append(note_accuracy(clustering.labels, truth))
    print(f"{len(val.spectra)} examples of {args.val}")
    print(f"descriptor baseline: note accuracy {np.mean(accuracies):.4f}")
    config = TimbreTrainConfig(data=[], val=str(args.val), out="")
    for path in args.weights:
        scores = validate(load_timbre_branch(path), val, config)
        print(f"{path}: note accuracy {scores['val_note_accuracy']:.4f} (InfoNCE {scores['val_loss']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
