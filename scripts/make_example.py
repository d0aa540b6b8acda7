"""Renders the bundled example (src/timbrescribe/examples/): a short multi-instrument excerpt of real
music from the music21 corpus, played with the held-out validation soundfont, so the demo shows the
model on timbres it never trained on. Writes example.flac (the mix) and example.mid (the reference,
one track per instrument). Deterministic: the same seed gives the same files.

    .venv/bin/python scripts/make_example.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import soundfile

from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.data.engine import make_example, parts_midi
from timbrescribe.data.presets import get_preset

# Acoustic chamber-music families, so the demo sounds like the recordings users bring.
CHAMBER_FAMILIES = {"piano", "strings", "brass", "reed", "pipe", "guitar"}
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "src" / "timbrescribe" / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--parts", type=int, default=3, help="number of instruments wanted")
    parser.add_argument("--out", type=Path, default=EXAMPLES_DIR)
    args = parser.parse_args()

    preset = get_preset("val")
    for index in range(1000):
        example = make_example(preset, args.seed, index)
        if (
            len(example.parts) == args.parts
            and example.source.startswith("score:")
            and {part.family for part in example.parts} <= CHAMBER_FAMILIES
            and min(len(part.notes) for part in example.parts) >= 10
        ):
            break
    else:
        raise SystemExit(f"no {args.parts}-part score example among the first 1000 draws")
    args.out.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(args.out / "example.flac"), example.mix, SAMPLE_RATE, subtype="PCM_16")
    parts_midi(example.parts).write(str(args.out / "example.mid"))
    names = ", ".join(f"{p.name} ({len(p.notes)} notes)" for p in example.parts)
    print(f"example {index}: {example.source}, {len(example.mix) / SAMPLE_RATE:.1f} s, {names}")


if __name__ == "__main__":
    main()
