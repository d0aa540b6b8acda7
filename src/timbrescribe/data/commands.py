"""``timbrescribe data render``: render a synthetic multi-instrument dataset from a preset."""
from __future__ import annotations

import argparse
import os
import time

from timbrescribe.data.presets import PRESETS, get_preset
from timbrescribe.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Writes DIR/examples/<id>.flac (16-bit, 22050 Hz; channel 0 the mix, then one stem per "
        "part), <id>.npz (performed notes per part), <id>.mid (for listening/inspection) and "
        "DIR/manifest.json (rewritten every few examples, so training can start on a partial "
        "dataset). Re-running with the same preset and seed skips finished examples; a larger "
        "--hours extends the dataset."
    )
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    parser.add_argument(
        "--preset", required=True, metavar="NAME",
        help=f"dataset recipe, one of {', '.join(PRESETS)} ({presets})",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; re-running resumes)")
    parser.add_argument(
        "--hours", type=float, default=None, metavar="H",
        help="hours of audio to render; the example count is H*3600 / the preset's mean example "
        "length (default: the preset's own size)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S",
        help="dataset seed: example i depends only on (preset, S, i), so reruns reproduce it (default 0)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help=f"rendering processes (default: all CPU cores, here {os.cpu_count()})",
    )


def run(args: argparse.Namespace) -> int:
    from timbrescribe.data.engine import render_dataset

    preset = get_preset(args.preset)
    if args.hours is not None and args.hours <= 0:
        raise UserError(f"--hours must be positive, got {args.hours}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    count = preset.count_for_hours(args.hours)
    started = time.perf_counter()
    manifest = render_dataset(preset, args.out, count, seed=args.seed, workers=args.workers)
    wall = time.perf_counter() - started
    print(
        f"{args.out}: {manifest['count']} examples of preset {preset.name} (seed {args.seed}), "
        f"{manifest['audio_seconds'] / 3600:.3f} h of audio, wall time {wall:.1f} s"
    )
    return 0
