"""Batch throughput of ``timbrescribe transcribe``: files per minute with ``--jobs 2`` against
``--jobs 1`` (or any job counts), side by side in one run.

Writes FILES synthetic recordings (44.1 kHz stereo, random harmonic notes, fixed seed) or takes
the audio files of --inputs, then runs the command once per job count and repeat, the job counts
taking turns (1, 2, 1, 2, ...) so that a change in the machine's load falls on all of them alike.
Every run writes into a fresh folder; the outputs of all runs must be identical. Prints the wall
time of each run and, per job count, the median wall time, files per minute and the ratio to the
first job count, with the cores and load average of the machine.

    .venv/bin/python scripts/bench_batch.py [--files 16] [--seconds 30] [--jobs 1 2] [--repeats 3]
        [--instruments auto] [--inputs DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile

FILE_RATE = 44100


def write_recordings(folder: Path, files: int, seconds: float, seed: int) -> list[Path]:
    """``files`` stereo recordings of random harmonic notes (two voices, 2-6 notes per second)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FILE_RATE)) / FILE_RATE
    paths = []
    for index in range(files):
        channels = np.zeros((len(t), 2))
        for voice, (low, high) in enumerate(((40, 60), (60, 84))):
            start = 0.0
            while start < seconds:
                length = rng.uniform(0.15, 0.5)
                pitch = rng.integers(low, high)
                frequency = 440.0 * 2.0 ** ((pitch - 69) / 12)
                inside = (t >= start) & (t < start + length)
                envelope = np.exp(-3.0 * (t[inside] - start))
                note = sum(np.sin(2 * np.pi * frequency * h * t[inside]) / h for h in range(1, 6)) * envelope
                channels[inside, voice] += note
                channels[inside, 1 - voice] += 0.5 * note
                start += length
        path = folder / f"recording_{index:03d}.wav"
        soundfile.write(path, (0.25 * channels / np.abs(channels).max()).astype(np.float32), FILE_RATE)
        paths.append(path)
    return paths


def output_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def timed_run(inputs: Path, out: Path, jobs: int, instruments: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all processes) of one batch run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "timbrescribe.cli", "transcribe", str(inputs), "-o", str(out),
         "-k", instruments, "--jobs", str(jobs), "--quiet"],
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16, help="synthetic recordings to write (default 16)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each recording (default 30)")
    parser.add_argument("--inputs", type=Path, help="transcribe the audio files of this folder instead")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts to compare (default 1 2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per job count (default 3)")
    parser.add_argument("--instruments", default="auto", help="-k of the command (default auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        scratch = Path(scratch)
        if args.inputs is not None:
            inputs = args.inputs
            count = sum(1 for p in inputs.iterdir() if p.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3"))
        else:
            inputs = scratch / "inputs"
            inputs.mkdir()
            count = len(write_recordings(inputs, args.files, args.seconds, args.seed))
        print(f"batch throughput, {date.today()}: {count} files from {inputs}, -k {args.instruments}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
        walls: dict[int, list[float]] = {jobs: [] for jobs in args.jobs}
        digests = set()
        for repeat in range(args.repeats):
            for jobs in args.jobs:
                out = scratch / f"out-jobs{jobs}-run{repeat}"
                wall, cpu = timed_run(inputs, out, jobs, args.instruments)
                walls[jobs].append(wall)
                digests.add(output_digest(out))
                print(f"  run {repeat + 1}, --jobs {jobs}: {wall:.1f} s wall, {cpu:.1f} CPU-s, "
                      f"load average {os.getloadavg()[0]:.2f}", flush=True)
        if len(digests) != 1:
            raise SystemExit("the runs gave different outputs")
        first = statistics.median(walls[args.jobs[0]])
        print("| --jobs | runs | median wall (s) | files/min | ratio to --jobs "
              f"{args.jobs[0]} |\n|---|---|---|---|---|")
        for jobs in args.jobs:
            median = statistics.median(walls[jobs])
            print(f"| {jobs} | {len(walls[jobs])} | {median:.1f} | {60 * count / median:.1f} | {first / median:.2f} |")
        print("outputs identical across all runs")


if __name__ == "__main__":
    main()
