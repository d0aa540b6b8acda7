"""``timbrescribe train timbre``: train the timbre branch (options in training/commands.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from timbrescribe.training.commands import add_timbre_arguments, run_timbre

# The note model of the shipped separation graph (docs/training.md, "What ships").
DEFAULT_NOTE_MODEL = Path(__file__).resolve().parents[3] / "checkpoints" / "agnostic-light-temporal" / "calibrated.pt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_timbre_arguments(parser)
    parser.add_argument(
        "--note-model", default=str(DEFAULT_NOTE_MODEL), metavar="PT",
        help="the frozen note model's weights or training checkpoint, joined with the timbre branch "
             f"for --export-onnx (default: {DEFAULT_NOTE_MODEL})",
    )


def run(args: argparse.Namespace) -> int:
    return run_timbre(args)
