"""Calibrate the note model's onset head on validation data (timbrescribe.onset_calibration).

Runs the model (--checkpoint, a training best.pt or last.pt) on the full mixes of the --val sets,
fits Platt scaling to its onset peaks, prints the reliability of the peaks before and after (on
the same validation data, and on --check sets that took no part in the fit), then writes the
weights with the calibration set (--out, a state dict) and, with --export-onnx, the ONNX graphs.

usage: python scripts/calibrate_onsets.py --checkpoint runs/agnostic-v2/best.pt --out OUT.pt
       [--val DIR ...] [--check DIR ...] [--export-onnx PATH] [--json REPORT]
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from timbrescribe import onset_calibration, tuning
from timbrescribe.export import export_agnostic_onnx
from timbrescribe.model import IDENTITY_CALIBRATION, load_agnostic_model
from timbrescribe.outputs import atomic_path
from timbrescribe.training.common import save_atomically

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="note model weights (uncalibrated)")
    parser.add_argument("--out", type=Path, required=True, help="calibrated state dict to write")
    parser.add_argument("--val", type=Path, nargs="+",
                        default=[ROOT / "datasets" / "val-sampled", ROOT / "datasets" / "val"],
                        help="validation sets the calibration is fitted on")
    parser.add_argument("--check", type=Path, nargs="*", default=[ROOT.parent / "shared" / "data" / "trios"],
                        help="dev sets only reported on")
    parser.add_argument("--export-onnx", type=Path, help="also export the calibrated model here")
    parser.add_argument("--json", type=Path, help="write the fit and the reliability tables here")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


@torch.no_grad()
def onset_maps(model, root: Path) -> list[tuple[np.ndarray, list]]:
    """(uncalibrated onset probabilities (84, T), reference notes) of every full mix in ``root``."""
    pairs = []
    for recording in tuning.recordings(root, root.name):
        audio = torch.from_numpy(np.ascontiguousarray(recording.load_audio(), dtype=np.float32))[None]
        onset_logits, _ = model.logits(audio)
        pairs.append((torch.sigmoid(onset_logits[0]).numpy(), recording.reference))
    return pairs


def report(label: str, pairs, calibration) -> dict:
    """Reliability of the peaks of ``pairs`` as trained and as calibrated; printed and returned."""
    peaks = [onset_calibration.labelled_peaks(onset, reference) for onset, reference in pairs]
    raw = np.concatenate([p for p, _ in peaks])
    labels = np.concatenate([y for _, y in peaks])
    calibrated = onset_calibration.calibrate(raw, calibration)
    result = {}
    for name, probabilities in (("trained", raw), ("calibrated", calibrated)):
        rows = onset_calibration.reliability(probabilities, labels)
        ece = onset_calibration.expected_calibration_error(probabilities, labels)
        true_peaks = probabilities[labels]
        print(f"{label} {name}: {labels.size} peaks, {labels.sum()} true; ECE {ece:.4f}; "
              f"true peaks' median p {np.median(true_peaks):.3f}")
        for row in rows:
            print(f"    p in [{row['range'][0]:.2f}, {row['range'][1]:.2f}): {row['peaks']:7d} peaks, "
                  f"mean p {row['mean_p']:.3f}, true {row['true']:.3f}")
        result[name] = {"ece": ece, "median_true_p": float(np.median(true_peaks)), "bins": rows}
    return result


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model = load_agnostic_model(args.checkpoint)
    if not torch.equal(model.onset_calibration, torch.tensor(IDENTITY_CALIBRATION)):
        raise SystemExit(f"{args.checkpoint} is already calibrated")
    fitted = [pair for root in args.val for pair in onset_maps(model, root)]
    calibration = onset_calibration.fit(fitted)
    print(f"fit on {len(fitted)} recordings: scale {calibration.scale:.4f}, shift {calibration.shift:.4f} "
          f"({calibration.n_peaks} peaks, {calibration.n_true} true)")
    tables = {"validation (fit)": report("validation (fit)", fitted, calibration)}
    for root in args.check:
        tables[f"check {root.name}"] = report(f"check {root.name}", onset_maps(model, root), calibration)
    model.onset_calibration.copy_(torch.tensor([calibration.scale, calibration.shift]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_atomically(model.state_dict(), args.out)
    print(f"wrote {args.out}")
    if args.export_onnx:
        for path in export_agnostic_onnx(model, args.export_onnx):
            print(f"wrote {path}")
    if args.json:
        payload = {"checkpoint": str(args.checkpoint), "val": [str(v) for v in args.val],
                   "calibration": calibration.__dict__, "reliability": tables}
        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
