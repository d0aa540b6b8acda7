"""``timbrescribe data sources``: list the timbre sources (split, licence, origin, installed or not)
and install the optional ones from local git directories."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Without options: one line per source (name, kind, split, installed or not, licence). "
        "With --install-from DIR: first copies the optional sources (GM banks of "
        "marmooo/free-soundfonts, SFZ instruments of sfzinstruments/*) at their pinned commits "
        "from git directories under DIR (DIR/owner+name/repo, DIR/owner+name, DIR/owner/name or "
        "DIR/name; bare or cloned) into the sources folder, recording the commits in "
        "installed.json there. Rendering uses whatever of a split is installed; without the "
        "optional sources the Debian fonts remain. docs/data.md lists every source."
    )
    parser.add_argument("--install-from", metavar="DIR", default=None,
                        help="folder holding git directories of the source repositories")
    parser.add_argument("--dest", metavar="DIR", default=None,
                        help="sources folder (default: $TIMBRESCRIBE_SOURCES, else sources/ in the repository)")
    parser.add_argument("--any-commit", action="store_true",
                        help="install a repository's HEAD when it lacks the pinned commit (the commit is recorded)")


def run(args: argparse.Namespace) -> int:
    import os

    from timbrescribe.data import sources

    if args.dest is not None:
        os.environ[sources.SOURCES_ENV] = args.dest  # so that the listing below looks there too
    if args.install_from is not None:
        sources.install(args.install_from, args.dest, any_commit=args.any_commit)
    print(f"sources folder: {sources.sources_dir()}")
    for source in sources.registry().values():
        state = "installed" if source.available() else "absent"
        print(f"{source.name:18s} {source.kind:4s} {source.split:10s} {state:9s} {source.licence}")
    return 0
