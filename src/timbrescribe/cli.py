"""The ``timbrescribe`` command line. Each subcommand lives in the module that does the work;
modules are imported only when their subcommand runs, so ``transcribe`` never imports torch."""
from __future__ import annotations

import argparse
import importlib
import sys

from timbrescribe.errors import UserError

# (command words, module, one-line help). The module provides add_arguments(parser) and run(args) -> int.
COMMANDS = [
    (("data", "render"), "timbrescribe.data.commands", "render a synthetic multi-instrument dataset"),
    (("data", "devset"), "timbrescribe.data.devset_command", "convert a real-audio dataset into a dev set for evaluate"),
    (("data", "sources"), "timbrescribe.data.sources_command", "list the timbre sources; install the optional ones"),
    (("evaluate",), "timbrescribe.evaluation.commands", "score predicted notes against a dataset"),
    (("train", "agnostic"), "timbrescribe.training.commands", "train the timbre-agnostic note model"),
    (("train", "timbre"), "timbrescribe.training.timbre_command", "train the timbre branch that separates instruments"),
    (("transcribe",), "timbrescribe.transcribe_command", "transcribe audio files to MIDI"),
    (("web",), "timbrescribe.web_command", "serve the in-browser transcriber page locally"),
]

GROUP_HELP = {
    "data": "make synthetic training and validation data, and real-audio dev sets",
    "train": "train the models",
}
EXAMPLES = """examples:
  timbrescribe transcribe song.wav -o out/                 out/song.mid
  timbrescribe transcribe recordings/ -o out/ --format midi,json,csv --plot
  timbrescribe transcribe dataset/ -o out/ --recursive --jobs 2 --skip-existing
  timbrescribe data render --preset smoke --out data/smoke
  timbrescribe web --port 8000                             the page on http://127.0.0.1:8000/
  timbrescribe COMMAND --help                              options of one command"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timbrescribe",
        description="Transcribe recordings of several instruments into MIDI, one track per instrument.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_text in COMMANDS:
        sub = top
        for depth, word in enumerate(words[:-1]):
            key = " ".join(words[: depth + 1])
            if key not in groups:
                group_parser = sub.add_parser(word, help=GROUP_HELP[key], description=GROUP_HELP[key])
                groups[key] = group_parser.add_subparsers(dest=f"{word}_command", metavar="COMMAND")
                group_parser.set_defaults(_group_parser=group_parser)
            sub = groups[key]
        command_parser = sub.add_parser(words[-1], help=help_text, description=help_text)
        command_parser.set_defaults(_module=module)
        _lazy_arguments(module, command_parser)
    return parser


def _lazy_arguments(module: str, parser: argparse.ArgumentParser) -> None:
    # Argument definitions are light; the heavy imports happen inside run().
    importlib.import_module(module).add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_module"):
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as err:
        print(f"timbrescribe: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("timbrescribe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
