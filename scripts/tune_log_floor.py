"""Choose the front end's RELATIVE_LOG_FLOOR on the dev sets: the synthetic validation set and TRIOS.

For each factor, the note model (--checkpoint) is exported with the floor set to
factor × 1.01e-8 / exp(--median-log-spread) (the DESIGN's absolute ε = 1.01e-8 divided by the
median spread of the training mixes), then `timbrescribe evaluate --system timbrescribe-notes` scores
it on both sets. Prints agnostic note onset F and frame F per set and factor; writes nothing else
than the exported graphs under --out.

usage: python scripts/tune_log_floor.py [--factors 1 0.5 0.2 0.1] [--checkpoint checkpoints/agnostic/last.pt]
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import timbrescribe.frontend as frontend
from timbrescribe.export import export_agnostic_onnx
from timbrescribe.model import load_agnostic_model
from timbrescribe.transcription import TUNED_DECODER_PATH

ROOT = Path(__file__).resolve().parents[1]
ABSOLUTE_EPS = 1.01e-8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.5, 0.2, 0.1])
    parser.add_argument("--median-log-spread", type=float, default=-5.97,
                        help="median log s of the training mixes (default -5.97: 60 train-mix clips)")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "agnostic" / "last.pt")
    parser.add_argument("--val", type=Path, default=ROOT / "datasets" / "val")
    parser.add_argument("--trios", type=Path, default=ROOT.parent / "shared" / "data" / "trios")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "log-floor")
    return parser.parse_args()


def note_scores(model: Path, dataset: Path, scores: Path) -> tuple[float, float]:
    """(note onset F, frame F) of the one-track system on the full mixes of ``dataset``."""
    subprocess.run([sys.executable, "-m", "timbrescribe.cli", "evaluate", str(dataset), "--system",
                    "timbrescribe-notes", "--model", str(model), "--json", str(scores)],
                   check=True, stdout=subprocess.DEVNULL)
    agnostic = json.loads(scores.read_text())["summary"]["mix"]["agnostic"]
    return agnostic["note"]["f"], agnostic["frame"]["f"]


def main() -> None:
    args = parse_args()
    model = load_agnostic_model(args.checkpoint)
    print(f"{'factor':>7} {'floor':>10} {'val note F':>11} {'val frame F':>12} {'TRIOS note F':>13} {'TRIOS frame F':>14}")
    for factor in args.factors:
        floor = factor * ABSOLUTE_EPS / np.exp(args.median_log_spread)
        folder = args.out / f"factor-{factor:g}"
        folder.mkdir(parents=True, exist_ok=True)
        frontend.RELATIVE_LOG_FLOOR = floor  # read by normalise_energy when the graph is traced
        network, _ = export_agnostic_onnx(model, folder / "agnostic.onnx")
        shutil.copy(TUNED_DECODER_PATH, folder / TUNED_DECODER_PATH.name)
        val = note_scores(network, args.val, folder / "val.json")
        trios = note_scores(network, args.trios, folder / "trios.json")
        print(f"{factor:7g} {floor:10.3g} {val[0]:11.3f} {val[1]:12.3f} {trios[0]:13.3f} {trios[1]:14.3f}", flush=True)


if __name__ == "__main__":
    main()
