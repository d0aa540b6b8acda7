"""Rendering throughput of the data engine: audio seconds rendered per CPU second, one worker.

Renders and writes examples of a fixed preset and seed into a temporary folder in this process,
after loading the preset's soundfonts (a once-per-worker cost, left out), and
prints one line for docs/benchmarks.md.

    .venv/bin/python scripts/bench_render.py [--preset train-agnostic] [--examples 12] [--seed 0]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from timbrescribe.data.engine import make_example, write_example
from timbrescribe.data.instruments import SOUNDFONTS
from timbrescribe.data.presets import PRESETS
from timbrescribe.data.render import load_soundfont


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="train-agnostic", choices=sorted(PRESETS))
    parser.add_argument("--examples", type=int, default=12, help="examples timed after the warm-up")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    with tempfile.TemporaryDirectory() as folder:
        for font in preset.soundfonts:  # loading soundfonts is a once-per-worker cost
            load_soundfont(SOUNDFONTS[font])
        audio_s = 0.0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for index in range(args.examples):
            record = write_example(make_example(preset, args.seed, index), Path(folder))
            audio_s += record["duration"]
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(
        f"| data render | preset {preset.name}, seed {args.seed}, {args.examples} examples, 1 worker | "
        f"{audio_s:.0f} s audio in {cpu:.1f} CPU-s ({wall:.1f} s wall) | "
        f"{audio_s / cpu:.1f} audio-s per CPU-s |"
    )


if __name__ == "__main__":
    main()
