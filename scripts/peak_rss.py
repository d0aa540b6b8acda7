"""Run a command and print its peak resident memory (RSS) in MB.

usage: python scripts/peak_rss.py COMMAND [ARG...]

The command runs as a child of this small process and its peak RSS is the ``ru_maxrss`` that
wait4() returns for it. Run this script as a fresh process (as bench_agnostic.py does) rather than
calling ``peak_rss_mb`` from a large one: a child's ``ru_maxrss`` also counts the memory of the
process that forked it as it was at the fork (here a bare interpreter, ~10 MB).
"""
import os
import subprocess
import sys


def peak_rss_mb(command: list[str]) -> tuple[int, float]:
    """(exit status, peak RSS in MB) of ``command`` run to completion; its output passes through."""
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    returncode, megabytes = peak_rss_mb(sys.argv[1:])
    print(f"peak RSS {megabytes:.1f} MB")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
