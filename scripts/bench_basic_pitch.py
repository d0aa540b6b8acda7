"""Benchmark the Basic Pitch baseline: scores on a dataset (timbre-agnostic, full mixes by default)
and its real-time factor on ONE CPU thread.

Thread limits: onnxruntime intra_op_num_threads=1 (BasicPitchSystem(threads=1)) and the OpenMP/BLAS/
numba environment limits below, set before numpy is imported. The machine may be shared, so every
excerpt is also re-timed ``--repeats`` times: the fastest wall-clock run and the smallest CPU time
(which contention hardly inflates on one thread) are reported as well.

usage: python scripts/bench_basic_pitch.py [--dataset DIR] [--submixes] [--repeats N] [--json OUT]
(install the baseline first: bash scripts/install_baseline.sh)
"""
import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from timbrescribe.constants import SAMPLE_RATE  # noqa: E402
from timbrescribe.errors import UserError  # noqa: E402
from timbrescribe.evaluation import harness, layout  # noqa: E402
from timbrescribe.evaluation.systems import BasicPitchSystem  # noqa: E402

DEFAULT_DATASET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "trios"


def fastest_rtfs(system: BasicPitchSystem, excerpt: layout.Excerpt, repeats: int) -> dict[str, float]:
    """Smallest wall-clock and CPU-time RTF over ``repeats`` runs on the same audio. With one
    thread, CPU time is what the run costs on an idle core, however busy the machine is."""
    audio = excerpt.load_audio()
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        system.predict(audio, SAMPLE_RATE)
        wall = min(wall, time.perf_counter() - wall_start)
        cpu = min(cpu, time.process_time() - cpu_start)
    seconds = len(audio) / SAMPLE_RATE
    return {"wall": wall / seconds, "cpu": cpu / seconds, "audio_seconds": seconds}


def run_context() -> dict:
    """When and where a benchmark ran (timings are only comparable within one run)."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg(),
    }


def run_script(main, name: str) -> None:
    """Run a benchmark's main(); a UserError becomes one line on stderr and exit status 2."""
    try:
        sys.exit(main())
    except UserError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET), help="dataset folder (default: TRIOS)")
    parser.add_argument("--submixes", action="store_true", help="also score the stem sub-mixes")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per excerpt (default 3)")
    parser.add_argument("--json", metavar="OUT", help="write the full report here")
    args = parser.parse_args()

    excerpts = layout.excerpts(layout.read_dataset(args.dataset), submixes=args.submixes)
    system = BasicPitchSystem(threads=1)
    results = harness.evaluate(system, excerpts)
    print(harness.format_table(results))

    best = {e.name: fastest_rtfs(system, e, args.repeats) for e in excerpts}
    total_seconds = sum(b["audio_seconds"] for b in best.values())
    overall = {
        clock: sum(b[clock] * b["audio_seconds"] for b in best.values()) / total_seconds
        for clock in ("wall", "cpu")
    }
    print(f"best of {args.repeats} runs on one thread, RTF (audio-weighted): "
          f"wall {overall['wall']:.4f}, CPU {overall['cpu']:.4f}")
    for name, rtf in best.items():
        print(f"  {name}: wall {rtf['wall']:.4f}, CPU {rtf['cpu']:.4f}")

    if args.json:
        settings = {
            "dataset": str(Path(args.dataset).resolve()),
            "system": system.name,
            "submixes": args.submixes,
            "threads": 1,
            **run_context(),
        }
        report = harness.report(results, settings)
        report["best_of_repeats_rtf"] = {"repeats": args.repeats, "overall": overall, "excerpts": best}
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_script(main, "bench_basic_pitch")
