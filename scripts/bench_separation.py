"""Benchmark the separation side by side, in one run: the learned timbre branch, the training-free
descriptor baseline, and the one-track note model.

1. Separated note onset F (mir_eval, 50 ms; tracks matched to parts by the best assignment, averaged
   over parts, then over excerpts) with the true number of parts (oracle K) and with K estimated,
   and how often the estimate is exactly right per true K. Sets: TRIOS (dev; full mixes and 2- and
   3-part sub-mixes from stems) and the synthetic test set (held-out soundfont, 1-4 parts, seed 1001,
   never used for training or tuning). Agnostic note F (all notes merged) is printed beside them,
   and frame F, separated (per part, estimated K) and agnostic.
2. Real-time factor on TRIOS full mixes, one thread, best of ``--repeats`` runs, the systems taking
   turns excerpt by excerpt: the one-track note model against the separating model with estimated
   K (clustering included). numpy/BLAS are held to one thread (bench_basic_pitch.py).
3. Peak RSS of ``timbrescribe transcribe --threads 1`` on a ``--long-minutes`` file (TRIOS mixes
   repeated, 44.1 kHz 16-bit) with and without separation, in fresh processes.

The synthetic test set:
    timbrescribe data render --preset val --out datasets/test --hours 0.25 --seed 1001

usage: python scripts/bench_separation.py [--repeats N] [--long-minutes M] [--json OUT]
"""
from bench_basic_pitch import DEFAULT_DATASET, run_context, run_script  # first: it limits numpy to one thread

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from bench_agnostic import BIN, peak_rss, timed, write_long_file  # noqa: E402

from timbrescribe.errors import UserError  # noqa: E402
from timbrescribe.evaluation import harness, layout  # noqa: E402
from timbrescribe.evaluation.systems import System, make_system  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SYNTHETIC = REPO / "datasets" / "test"
SEPARATING = ("timbrescribe", "descriptor-baseline")


def scores(systems: dict[str, System], sets: dict[str, list[layout.Excerpt]]) -> dict:
    """set -> system -> {"oracle", "estimated"} -> group -> summary (+ K exact per true K)."""
    result: dict = {}
    for set_name, excerpts in sets.items():
        for name, system in systems.items():
            for mode, oracle in (("oracle", True), ("estimated", False)):
                runs = harness.evaluate(system, excerpts, oracle_k=oracle, progress=False)
                summary = harness.summarize(runs)
                by_k = defaultdict(list)
                for run in runs:
                    by_k[len(run.excerpt.part_names)].append(run.k_exact)
                summary["k_exact_by_true_k"] = {k: float(np.mean(v)) for k, v in sorted(by_k.items())}
                result.setdefault(set_name, {}).setdefault(name, {})[mode] = summary
                print(f"{set_name} {name} {mode}: " + ", ".join(
                    f"{group} sep {s['separated']['note']['f']:.3f}" for group, s in summary.items()
                    if isinstance(s, dict) and "separated" in s), flush=True)
    return result


def long_file_rss(excerpts: list[layout.Excerpt], minutes: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        audio = Path(folder) / "long.wav"
        seconds = write_long_file(audio, excerpts, minutes)
        base = [str(BIN / "timbrescribe"), "transcribe", str(audio), "-o", f"{folder}/out", "--threads", "1"]
        return {
            "audio_seconds": seconds,
            "peak_rss_mb": {
                "separated (auto K)": peak_rss([*base, "--instruments", "auto"]),
                "one track": peak_rss([*base, "--instruments", "1"]),
            },
        }


def markdown(result: dict, speed: dict, rss: dict) -> str:
    lines = ["| set | excerpts | system | separated note F, oracle K | separated note F, estimated K "
             "| all-notes F, oracle K | all-notes F, estimated K | K exact | agnostic note F "
             "| separated frame F, estimated K | agnostic frame F |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for set_name, by_system in result.items():
        for name, modes in by_system.items():
            for group, oracle in modes["oracle"].items():
                if not isinstance(oracle, dict) or "separated" not in oracle:
                    continue
                estimated = modes["estimated"][group]
                lines.append(
                    f"| {set_name} {group} | {oracle['n_excerpts']} | {name} | {oracle['separated']['note']['f']:.3f} "
                    f"| {estimated['separated']['note']['f']:.3f} | {oracle['separated_all_notes_f']:.3f} "
                    f"| {estimated['separated_all_notes_f']:.3f} | {estimated['k_exact']:.0%} "
                    f"| {oracle['agnostic']['note']['f']:.3f} | {estimated['separated']['frame']['f']:.3f} "
                    f"| {estimated['agnostic']['frame']['f']:.3f} |"
                )
    lines += ["", "| set | system | K exactly right, by true K |", "|---|---|---|"]
    for set_name, by_system in result.items():
        for name, modes in by_system.items():
            exact = modes["estimated"]["k_exact_by_true_k"]
            lines.append(f"| {set_name} | {name} | " + ", ".join(f"K={k}: {v:.0%}" for k, v in exact.items()) + " |")
    minutes = rss["audio_seconds"] / 60
    lines += ["", "| system | RTF 1 thread, CPU | RTF 1 thread, wall |", "|---|---|---|"]
    for name, run in speed.items():
        lines.append(f"| {name} | {run['overall']['cpu']:.4f} | {run['overall']['wall']:.4f} |")
    names = list(speed)
    lines.append(f"| ratio {names[0]} / {names[1]} | {speed[names[0]]['overall']['cpu'] / speed[names[1]]['overall']['cpu']:.2f} "
                 f"| {speed[names[0]]['overall']['wall'] / speed[names[1]]['overall']['wall']:.2f} |")
    lines += ["", f"| run | peak RSS, {minutes:.0f}-min file (MB) |", "|---|---|"]
    lines += [f"| {name} | {mb:.0f} |" for name, mb in rss["peak_rss_mb"].items()]
    return "\n".join(lines)


class _EstimatedK:
    """A system wrapper that always estimates K (for the speed runs)."""

    def __init__(self, system: System):
        self.system, self.name = system, system.name

    def predict(self, audio, sr, n_tracks=None):
        return self.system.predict(audio, sr, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="separation ONNX model (default: shipped)")
    parser.add_argument("--trios", type=Path, default=DEFAULT_DATASET, help="TRIOS folder (dev set)")
    parser.add_argument("--synthetic", type=Path, default=DEFAULT_SYNTHETIC, help="rendered synthetic test set")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per excerpt (default 3)")
    parser.add_argument("--long-minutes", type=float, default=60.0, help="length of the peak-RSS file")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every figure here")
    parser.add_argument("--speed-only", action="store_true", help="measure only the real-time factors")
    args = parser.parse_args()
    if args.repeats < 1 or args.long_minutes <= 0:
        raise UserError("--repeats must be at least 1, --long-minutes positive")

    systems = {name: make_system(name, 1, args.model if name == "timbrescribe" else None) for name in SEPARATING}
    trios = layout.excerpts(layout.read_dataset(args.trios), submixes=True)
    full_mixes = [excerpt for excerpt in trios if excerpt.is_full_mix]
    speed = timed({"timbrescribe (separated, estimated K)": _EstimatedK(systems["timbrescribe"]),
                   "timbrescribe-notes (one track)": make_system("timbrescribe-notes", 1)}, full_mixes, args.repeats)
    if args.speed_only:
        print(markdown({}, speed, {"audio_seconds": 0.0, "peak_rss_mb": {}}))
        return 0
    sets = {"TRIOS": trios, "synthetic test": layout.excerpts(layout.read_dataset(args.synthetic))}
    result = scores(systems, sets)
    rss = long_file_rss(full_mixes, args.long_minutes)
    print(markdown(result, speed, rss))
    if args.json:
        report = {"settings": {"model": str(args.model) if args.model else "shipped", "trios": str(args.trios),
                               "synthetic": str(args.synthetic), "repeats": args.repeats, **run_context()},
                  "scores": result, "rtf_best_of_repeats": speed, "long_file": rss}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, "bench_separation"))
