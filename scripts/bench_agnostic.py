"""Benchmark timbrescribe against Basic Pitch side by side, timbre-agnostic, in one run.

1. Scores (frame F, note onset F, note onset+offset F; merged parts vs merged notes) of the systems
   on the full mixes of TRIOS, of the real solo-violin dev set (``timbrescribe data devset
   bach-violin``; skipped when absent) and of the synthetic test set, one CPU thread each. With
   ``--previous-model`` and ``--previous-decoder`` a previous note model runs beside the current
   one, with the decoder settings tuned for it, e.g. from git:
       git show 6f25f0a:src/timbrescribe/weights/agnostic.onnx > out/previous/agnostic.onnx
       (likewise agnostic.energy.onnx, and decoder.json to out/previous/decoder.json)
2. Real-time factor on TRIOS: best of ``--repeats`` runs per excerpt, CPU time and wall clock, on
   one thread and on ``--threads`` threads; the systems take turns excerpt by excerpt, so that a
   change in machine load touches both alike. numpy/BLAS are held to one thread throughout (see
   bench_basic_pitch.py); the thread counts are onnxruntime's.
3. Peak RSS of each command-line tool (``timbrescribe transcribe --threads 1``, ``basic-pitch``)
   transcribing a ``--long-minutes`` file (TRIOS mixes repeated, 44.1 kHz 16-bit mono like TRIOS)
   in a fresh process (scripts/peak_rss.py).

The synthetic test set is the validation recipe (held-out soundfont) under a seed of its own:
    timbrescribe data render --preset val --out datasets/test --hours 0.25 --seed 1001

usage: python scripts/bench_agnostic.py [--model PATH [--decoder JSON]] [--previous-model PATH --previous-decoder JSON]
       [--violin DIR] [--synthetic DIR] [--repeats N] [--json OUT]
"""
from bench_basic_pitch import DEFAULT_DATASET, fastest_rtfs, run_context, run_script  # first: it limits numpy to one thread

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from timbrescribe.decode import DecoderSettings  # noqa: E402
from timbrescribe.errors import UserError  # noqa: E402
from timbrescribe.evaluation import harness, layout  # noqa: E402
from timbrescribe.evaluation.systems import BasicPitchSystem, System, TimbrescribeNotesSystem  # noqa: E402
from timbrescribe.inference import DEFAULT_MODEL_PATH  # noqa: E402
from timbrescribe.transcription import decoder_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SYNTHETIC = REPO / "datasets" / "test"
DEFAULT_VIOLIN = REPO / "datasets" / "bach-violin"
PREVIOUS = "timbrescribe-notes (previous)"
PEAK_RSS_SCRIPT = Path(__file__).resolve().parent / "peak_rss.py"
BIN = Path(sys.executable).parent
METRICS = (("frame", "frame F"), ("note", "note F"), ("note_offset", "note+off F"))


def make_systems(model: Path, threads: int, previous: tuple[Path, Path] | None = None,
                 decoder: DecoderSettings | None = None) -> dict[str, System]:
    """Ours (with ``decoder``, None: the package's settings), the previous note model (graph,
    decoder settings file) when given, and Basic Pitch."""
    systems = {TimbrescribeNotesSystem.name: TimbrescribeNotesSystem(threads=threads, model_path=model, decoder=decoder)}
    if previous is not None:
        graph, decoder = previous
        systems[PREVIOUS] = TimbrescribeNotesSystem(
            threads=threads, model_path=graph, decoder=DecoderSettings.from_json(decoder))
    systems[BasicPitchSystem.name] = BasicPitchSystem(threads=threads)
    return systems


def score(systems: dict[str, System], datasets: dict[str, Path]) -> dict[str, dict[str, dict]]:
    """dataset -> system -> the harness summary of its full mixes."""
    scores = {}
    for set_name, root in datasets.items():
        excerpts = layout.excerpts(layout.read_dataset(root))
        scores[set_name] = {
            name: harness.summarize(harness.evaluate(system, excerpts))["mix"] for name, system in systems.items()
        }
    return scores


def timed(systems: dict[str, System], excerpts: list[layout.Excerpt], repeats: int) -> dict[str, dict]:
    """system -> audio-weighted best-of-repeats RTF (wall, cpu) over the excerpts, and per excerpt."""
    for system in systems.values():
        harness.warm_up(system)
    per_excerpt: dict[str, dict] = {name: {} for name in systems}
    for excerpt in excerpts:
        for name, system in systems.items():
            per_excerpt[name][excerpt.name] = fastest_rtfs(system, excerpt, repeats)
    result = {}
    for name, runs in per_excerpt.items():
        seconds = sum(run["audio_seconds"] for run in runs.values())
        overall = {
            clock: sum(run[clock] * run["audio_seconds"] for run in runs.values()) / seconds
            for clock in ("wall", "cpu")
        }
        result[name] = {"overall": overall, "excerpts": runs}
    return result


def write_long_file(path: Path, excerpts: list[layout.Excerpt], minutes: float) -> float:
    """The excerpts' mix files (same rate and channels) one after another, repeated to ``minutes``;
    returns the duration in seconds."""
    parts, rate = [], None
    for excerpt in excerpts:
        samples, rate = soundfile.read(str(excerpt.piece.mix_path), dtype="int16", always_2d=True)
        parts.append(samples)
    one_round = np.concatenate(parts)
    wanted = int(minutes * 60 * rate)
    tiled = np.tile(one_round, (wanted // len(one_round) + 1, 1))[:wanted]
    soundfile.write(str(path), tiled, rate, subtype="PCM_16")
    return wanted / rate


def peak_rss(command: list[str]) -> float:
    """Peak RSS in MB of ``command`` run by scripts/peak_rss.py in a fresh process."""
    result = subprocess.run(
        [sys.executable, str(PEAK_RSS_SCRIPT), *command], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1].split()[2])


def long_file_rss(models: dict[str, Path], excerpts: list[layout.Excerpt], minutes: float) -> dict:
    """Peak RSS of the command-line tools on one long file; ``models``: our systems' graphs."""
    with tempfile.TemporaryDirectory() as folder:
        audio = Path(folder) / "long.wav"
        seconds = write_long_file(audio, excerpts, minutes)
        commands = {
            name: [
                str(BIN / "timbrescribe"), "transcribe", str(audio), "-o", f"{folder}/ours{k}",
                "--threads", "1", "--model", str(model), "--instruments", "1",
            ]
            for k, (name, model) in enumerate(models.items())
        }
        commands[BasicPitchSystem.name] = [str(BIN / "basic-pitch"), f"{folder}/basic-pitch", str(audio)]
        os.mkdir(f"{folder}/basic-pitch")  # basic-pitch wants its output folder to exist
        return {"audio_seconds": seconds, "peak_rss_mb": {name: peak_rss(cmd) for name, cmd in commands.items()}}


def markdown_tables(scores: dict, speed: dict, threads: int, rss: dict) -> str:
    lines = ["| set | system | excerpts | " + " | ".join(label for _, label in METRICS) + " |"]
    lines.append("|---|---|---|" + "---|" * len(METRICS))
    for set_name, by_system in scores.items():
        for name, summary in by_system.items():
            values = " | ".join(f"{summary['agnostic'][key]['f']:.3f}" for key, _ in METRICS)
            lines.append(f"| {set_name} | {name} | {summary['n_excerpts']} | {values} |")
    minutes = rss["audio_seconds"] / 60
    lines += [
        "",
        f"| system | RTF 1 thread, CPU | RTF 1 thread, wall | RTF {threads} threads, wall "
        f"| peak RSS, {minutes:.0f}-min file (MB) |",
        "|---|---|---|---|---|",
    ]
    names = list(speed["1"])
    for name in names:
        lines.append(
            f"| {name} | {speed['1'][name]['overall']['cpu']:.4f} | {speed['1'][name]['overall']['wall']:.4f} "
            f"| {speed[str(threads)][name]['overall']['wall']:.4f} | {rss['peak_rss_mb'][name]:.0f} |"
        )
    *ours, theirs = names
    for name in ours:
        ratio = [
            speed["1"][name]["overall"]["cpu"] / speed["1"][theirs]["overall"]["cpu"],
            speed["1"][name]["overall"]["wall"] / speed["1"][theirs]["overall"]["wall"],
            speed[str(threads)][name]["overall"]["wall"] / speed[str(threads)][theirs]["overall"]["wall"],
            rss["peak_rss_mb"][name] / rss["peak_rss_mb"][theirs],
        ]
        lines.append(f"| ratio {name} / {theirs} | " + " | ".join(f"{r:.2f}" for r in ratio) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="our ONNX network graph")
    parser.add_argument("--decoder", type=Path, help="decoder settings (JSON) for it (default: the package's)")
    parser.add_argument("--trios", type=Path, default=DEFAULT_DATASET, help="TRIOS folder (dev set)")
    parser.add_argument("--violin", type=Path, default=DEFAULT_VIOLIN,
                        help="real solo-violin dev set (timbrescribe data devset bach-violin); skipped when absent")
    parser.add_argument("--synthetic", type=Path, default=DEFAULT_SYNTHETIC, help="rendered synthetic test set")
    parser.add_argument("--previous-model", type=Path, help="a previous note model's ONNX graph, run beside ours")
    parser.add_argument("--previous-decoder", type=Path, help="the decoder settings (JSON) tuned for it")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per excerpt (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="the 'all threads' count")
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the peak-RSS file")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every figure here")
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1 or args.long_minutes <= 0:
        raise UserError("--repeats and --threads must be at least 1, --long-minutes positive")
    if (args.previous_model is None) != (args.previous_decoder is None):
        raise UserError("--previous-model and --previous-decoder go together")
    previous = (args.previous_model, args.previous_decoder) if args.previous_model else None

    ours = DecoderSettings.from_json(args.decoder) if args.decoder else decoder_settings()
    decoder = ours.to_dict()  # the settings our runs below use
    print(f"timbrescribe decoder settings: {json.dumps(decoder)}")
    trios = layout.excerpts(layout.read_dataset(args.trios))
    one_thread = make_systems(args.model, 1, previous, ours)
    sets = {"TRIOS": args.trios, "violin (real)": args.violin, "synthetic test": args.synthetic}
    if not args.violin.is_dir():
        print(f"no violin dev set at {args.violin}: skipped")
        del sets["violin (real)"]
    scores = score(one_thread, sets)
    speed = {"1": timed(one_thread, trios, args.repeats)}
    speed[str(args.threads)] = timed(make_systems(args.model, args.threads, previous, ours), trios, args.repeats)
    models = {TimbrescribeNotesSystem.name: args.model}
    if previous:
        models[PREVIOUS] = args.previous_model
    rss = long_file_rss(models, trios, args.long_minutes)
    print(markdown_tables(scores, speed, args.threads, rss))

    if args.json:
        manifest = json.loads((args.synthetic / "manifest.json").read_text())
        settings = {
            "model": str(args.model.resolve()),
            "decoder": decoder,
            "previous": {"model": str(args.previous_model.resolve()), "decoder": str(args.previous_decoder.resolve())}
            if previous else None,
            "violin": str(args.violin.resolve()) if "violin (real)" in sets else None,
            "trios": str(args.trios.resolve()),
            "synthetic": {"path": str(args.synthetic.resolve()), "preset": manifest["preset"], "seed": manifest["seed"]},
            "repeats": args.repeats,
            "threads": args.threads,
            **run_context(),
        }
        report = {"settings": settings, "scores": scores, "rtf_best_of_repeats": speed, "long_file": rss}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_script(main, "bench_agnostic")
