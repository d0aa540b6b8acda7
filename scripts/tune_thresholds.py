"""Tune the decoder settings of an exported model (note or separation graph) on the VALIDATION data and write them.

Sources, weighted equally: the synthetic validation set (--val), the TRIOS dev set (--trios,
full mixes) and the real solo-violin dev set (--violin; left out when absent). Objective and search: see timbrescribe.tuning. Activations are cached under --cache
per model fingerprint, so a rerun with the same model only decodes and scores.

A separation graph's notes are decoded as the separated transcription decodes them: the
dense-frame rule only extends the ends of notes found without it (timbrescribe.tuning.decoded).

With --base FILE the search starts from those settings; with --only NAMES it sweeps just the
named settings (coordinate descent, timbrescribe.tuning.coordinate_descent) and keeps the others,
e.g. to add the dense-frame rule to settings chosen by another objective.

Writes --out (DecoderSettings.to_json; read by timbrescribe.transcription) and, next to it,
``<stem>.tuning.json``: the model, data, objective and scores the settings were chosen with.

usage: python scripts/tune_thresholds.py [--model agnostic.onnx|separation.onnx] [--out decoder.json]
       [--cache DIR] [--val DIR] [--trios DIR] [--violin DIR] [--threads N] [--objective note|note+frame]
       [--top N] [--base FILE] [--only NAME,NAME]
"""
import argparse
import datetime
import json
import os
import time
from pathlib import Path

from timbrescribe import tuning
from timbrescribe.decode import DecoderSettings
from timbrescribe.inference import DEFAULT_MODEL_PATH, AgnosticSession
from timbrescribe.settings_file import tuning_record_path
from timbrescribe.transcription import tuned_decoder_path

ROOT = Path(__file__).resolve().parents[1]
TRIOS = ROOT.parent / "shared" / "data" / "trios"
LINES = {**tuning.COARSE_GRID, **tuning.SECONDARY_SWEEPS}
SWEPT = list(LINES)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="network .onnx (default: shipped)")
    parser.add_argument("--out", type=Path, default=None,
                        help="settings file to write (default: the package's file for the graph's kind, "
                             "decoder.json or separation.decoder.json)")
    parser.add_argument("--cache", type=Path, default=ROOT / "out" / "tuning-cache", help="activation cache")
    parser.add_argument("--val", type=Path, default=ROOT / "datasets" / "val-sampled",
                        help="synthetic val set (validation-split timbres only)")
    parser.add_argument("--trios", type=Path, default=TRIOS, help="TRIOS dev set")
    parser.add_argument("--violin", type=Path, default=ROOT / "datasets" / "bach-violin",
                        help="real solo-violin dev set (timbrescribe data devset bach-violin); left out when absent")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the activations")
    parser.add_argument("--objective", choices=sorted(tuning.OBJECTIVES), default="note",
                        help="what the settings maximise (timbrescribe.tuning.OBJECTIVES)")
    parser.add_argument("--top", type=int, default=10, help="trials to print")
    parser.add_argument("--base", type=Path, default=None, help="settings file to start from (default: DecoderSettings())")
    parser.add_argument("--only", type=lambda text: text.split(","), default=None,
                        help=f"comma-separated settings to sweep, the others kept (of: {', '.join(SWEPT)})")
    args = parser.parse_args()
    unknown = sorted(set(args.only or ()) - set(SWEPT))
    if unknown:
        parser.error(f"--only: not a swept setting: {', '.join(unknown)}")
    if args.base is not None and not args.base.is_file():
        parser.error(f"--base: no settings file {args.base}")
    return args


def shown(path: Path) -> str:
    """``path`` relative to the repository root: the record ships, machine paths do not belong in it."""
    return os.path.relpath(path.resolve(), ROOT)


def scores_row(scores) -> dict:
    return {"note_f": scores.note.f, "note_offset_f": scores.note_offset.f, "frame_f": scores.frame.f}


def print_scores(label: str, per_source: dict) -> None:
    for source, scores in per_source.items():
        row = scores_row(scores)
        print(f"  {label:9s} {source:14s} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    session = AgnosticSession(args.model, threads=args.threads)
    if args.out is None:
        args.out = tuned_decoder_path(session.has_embeddings)
    cache_dir = args.cache / tuning.model_fingerprint(args.model)
    recordings = [
        *tuning.recordings(args.val, tuning.SYNTHETIC_SOURCE),
        *tuning.recordings(args.trios, tuning.TRIOS_SOURCE),
    ]
    if args.violin.is_dir():
        recordings += tuning.recordings(args.violin, tuning.VIOLIN_SOURCE)
    else:
        print(f"no violin dev set at {args.violin}: tuning on the other sources")
    items = [tuning.cached_item(recording, session, cache_dir) for recording in recordings]
    activations_s = time.perf_counter() - started
    counts = {s: sum(item.source == s for item in items) for s in dict.fromkeys(i.source for i in items)}
    print(f"{len(items)} recordings {counts}, activations in {activations_s:.1f} s (cache {cache_dir})")

    separated = session.has_embeddings  # decode as transcription does for this graph
    search = tuning.Search(items, progress=lambda n: print(f"\r{n} settings scored", end="", flush=True),
                           objective=args.objective, separated=separated)
    base = DecoderSettings() if args.base is None else DecoderSettings.from_json(args.base)
    if args.only is None:
        best = tuning.tune(search, base)
    else:
        search.run([base])
        best = tuning.coordinate_descent(search, {name: LINES[name] for name in args.only})
    search_s = time.perf_counter() - started - activations_s
    print(f"\nsearch: {len(search.trials)} settings in {search_s:.1f} s")

    print(f"top {args.top} by the objective ({tuning.OBJECTIVES[args.objective]}):")
    for trial in search.ranked()[: args.top]:
        per_source = " ".join(f"{s} {f:.4f}" for s, f in trial.source_f.items())
        print(f"  {trial.objective:.4f}  {per_source}  {tuning.describe(trial.settings, SWEPT)}")

    # scores of the settings the search started from: the defaults, or --base
    start_label = "defaults" if args.base is None else "start"
    chosen, start = (tuning.full_scores(items, settings, separated) for settings in (best.settings, base))
    print(f"chosen: {tuning.describe(best.settings, SWEPT)}")
    edges = tuning.edge_settings(search, SWEPT)
    if edges:
        print(f"WARNING: best value at the end of the range tried for {edges}: consider widening it")
    print_scores("chosen", chosen)
    print_scores(start_label, start)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    best.settings.to_json(args.out)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": shown(args.model), "fingerprint": cache_dir.name},
        "data": {"synthetic-val": shown(args.val), "trios": shown(args.trios),
                 "violin": shown(args.violin) if args.violin.is_dir() else None, "recordings": counts},
        "objective": tuning.OBJECTIVES[args.objective],
        "decoded_as": "separated (dense-frame rule after clustering)" if separated else "one track",
        "base": None if args.base is None else shown(args.base),
        "swept": args.only or SWEPT,
        "objective_value": best.objective,
        "settings": best.settings.to_dict(),
        "settings_scored": len(search.trials),
        "search_seconds": round(search_s, 1),
        "at_range_edge": edges,
        "chosen": {s: scores_row(v) for s, v in chosen.items()},
        start_label: {s: scores_row(v) for s, v in start.items()},
    }
    record_path = tuning_record_path(args.out)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} and {record_path}")


if __name__ == "__main__":
    main()
