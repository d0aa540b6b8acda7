"""``timbrescribe evaluate``: score a system, or MIDI predictions already written, on a dataset."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder: <piece>/mix.wav, <part>.mid, stems/, meta.json")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--predictions",
        metavar="DIR",
        help="folder of predicted MIDI files, one per excerpt: <piece>.mid, <piece>__<part>+<part>.mid",
    )
    source.add_argument("--system", metavar="NAME", help="run a transcription system: timbrescribe (one track per instrument), timbrescribe-notes "
                        "(one track), descriptor-baseline (training-free timbre descriptors), basic-pitch")
    parser.add_argument(
        "--submixes",
        action="store_true",
        help="also score every 2-, 3- and 4-part sum of each piece's stems",
    )
    parser.add_argument(
        "--oracle-k",
        action="store_true",
        help="tell --system how many parts each excerpt has instead of letting it estimate them",
    )
    parser.add_argument("--json", metavar="OUT", help="write every score and the settings to this JSON file")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for --system (default 1)")
    parser.add_argument(
        "--model", type=Path, metavar="PATH",
        help="ONNX model for --system timbrescribe (a separation model) or timbrescribe-notes (a note "
        "model) (default: the shipped weights)",
    )


def run(args: argparse.Namespace) -> int:
    import datetime
    import json

    from timbrescribe.errors import UserError
    from timbrescribe.evaluation import harness, layout, systems

    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.json and Path(args.json).is_dir():
        raise UserError(f"--json {args.json}: is a directory")
    excerpts = layout.excerpts(layout.read_dataset(args.dataset), submixes=args.submixes)
    if args.predictions:
        source = systems.MidiDirectorySystem(args.predictions)
    else:
        source = systems.make_system(args.system, args.threads, model_path=args.model)
    results = harness.evaluate(source, excerpts, oracle_k=args.oracle_k)
    print(harness.format_table(results))
    if args.json:
        settings = {
            "dataset": str(Path(args.dataset).resolve()),
            "system": source.name,
            "predictions": str(Path(args.predictions).resolve()) if args.predictions else None,
            "model": str(args.model) if args.model else None,
            "submixes": args.submixes,
            "oracle_k": args.oracle_k,
            "threads": args.threads,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(harness.report(results, settings), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
