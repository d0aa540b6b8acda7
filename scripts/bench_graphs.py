"""Network time of exported graphs side by side: what the model costs without decoding, audio
reading or resampling, which bench_agnostic.py's end-to-end times include.

Each graph runs AgnosticSession.activations (chunked exactly as transcription runs it, with the
graph's own chunk context) over the TRIOS full mixes, prepared once. The graphs take turns round
by round, so a busy spell of the machine falls on all of them; each graph's best round counts.
One thread: CPU time (what the run costs on an idle core); more threads: wall clock. Prints each
graph's real-time factor and its ratio to the first graph's.

usage: python scripts/bench_graphs.py GRAPH [GRAPH ...] [--rounds N] [--threads N] [--trios DIR]
"""
from bench_basic_pitch import DEFAULT_DATASET, run_context, run_script  # first: it limits numpy to one thread

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from timbrescribe.constants import SAMPLE_RATE  # noqa: E402
from timbrescribe.errors import UserError  # noqa: E402
from timbrescribe.evaluation import layout  # noqa: E402
from timbrescribe.inference import AgnosticSession  # noqa: E402


def best_round_seconds(sessions: dict[str, AgnosticSession], audio: list, rounds: int, cpu: bool) -> dict[str, float]:
    """graph -> its fastest round over all the audio (CPU time if ``cpu``, else wall clock)."""
    clock = time.process_time if cpu else time.perf_counter
    for session in sessions.values():  # warm-up: the first run of a shape plans its memory
        session.activations(audio[0])
    best = {name: float("inf") for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            start = clock()
            for samples in audio:
                session.activations(samples)
            best[name] = min(best[name], clock() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graphs", type=Path, nargs="+", help="exported network graphs (.onnx)")
    parser.add_argument("--rounds", type=int, default=5, help="turns per graph (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    parser.add_argument("--trios", type=Path, default=DEFAULT_DATASET, help="TRIOS folder (dev set)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the figures here")
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        raise UserError("--rounds and --threads must be at least 1")
    names = [str(path) for path in args.graphs]
    if len(set(names)) != len(names):
        raise UserError("each graph once, please")
    sessions = {name: AgnosticSession(path, threads=args.threads) for name, path in zip(names, args.graphs)}
    audio = [excerpt.load_audio() for excerpt in layout.excerpts(layout.read_dataset(args.trios))]
    seconds = sum(len(samples) for samples in audio) / SAMPLE_RATE
    cpu = args.threads == 1
    best = best_round_seconds(sessions, audio, args.rounds, cpu)
    first = best[names[0]]
    clock = "CPU time" if cpu else "wall clock"
    print(f"{len(audio)} TRIOS mixes, {seconds:.1f} s of audio, {args.threads} thread(s), {clock}, "
          f"best of {args.rounds} rounds")
    print(f"| graph | context frames | RTF | ratio to {names[0]} |")
    print("|---|---|---|---|")
    for name in names:
        print(f"| {name} | {sessions[name].context_frames} | {best[name] / seconds:.4f} | {best[name] / first:.3f} |")
    if args.json:
        record = {"context": run_context(), "threads": args.threads, "clock": clock, "rounds": args.rounds,
                  "audio_seconds": seconds, "rtf": {name: best[name] / seconds for name in names}}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    run_script(main, "bench_graphs")
