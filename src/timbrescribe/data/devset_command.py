"""``timbrescribe data devset``: turn a local copy of a real-audio dataset into the evaluation
layout (``<piece>/mix.wav``, ``<part>.mid``, ``meta.json``), for development only."""
from __future__ import annotations

import argparse

DEVSETS = ("bach-violin",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "bach-violin: every movement of salu133445/bach-violin-dataset whose recording the git "
        "directory holds (snapshots may lack large files) becomes OUT/<movement>/ with mix.wav "
        "(mono, 16-bit), violin.mid and violin.csv (the score's notes at the dataset's aligned "
        "times) and meta.json (player, licence, source paths and commit); OUT/index.json lists "
        "the pieces, minutes and notes per player and licence, and what was skipped and why. "
        "Score it with `timbrescribe evaluate OUT --system timbrescribe`. Dev use only: some "
        "recordings are CC BY-NC; never train on it or redistribute it (docs/data.md)."
    )
    parser.add_argument("name", choices=DEVSETS, help="the dataset to convert")
    parser.add_argument(
        "--mirror", required=True, metavar="DIR",
        help="git directory of the dataset (bare or a clone), or a folder holding it as "
             "owner+name/repo, owner+name, owner/name or name (e.g. /work/.mirror)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created; files in it are replaced)")
    parser.add_argument("--revision", default="HEAD", metavar="REV", help="commit to read (default HEAD)")


def run(args: argparse.Namespace) -> int:
    from timbrescribe.data import bach_violin

    index = bach_violin.convert(args.mirror, args.out, revision=args.revision)
    print(f"{args.out}: {len(index['pieces'])} pieces, {index['minutes']:.2f} min, {index['notes']} notes "
          f"from {index['repo']} @ {index['commit'][:12]}; {len(index['skipped'])} movements skipped "
          f"(reasons in {bach_violin.INDEX_FILE})")
    for licence, entry in index["by_licence"].items():
        print(f"  {licence}: {entry['pieces']} pieces, {entry['minutes']:.2f} min, {entry['notes']} notes")
    return 0
