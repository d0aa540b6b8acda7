"""Peak RSS and wall time of ``timbrescribe transcribe`` on long 44.1 kHz stereo WAV files.

usage: python scripts/peak_rss_long.py [--minutes 1 10 60] [--dir DIR] [--threads N]

Writes one WAV per length (16-bit, 44.1 kHz, stereo) by tiling the bundled example, then runs
``timbrescribe transcribe FILE -o OUT --threads N`` with ``--instruments auto`` and
``--instruments 1``, each in a fresh process measured by scripts/peak_rss.py, and prints a table.
The WAVs are written tile by tile, so this script itself stays small.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "timbrescribe" / "examples" / "example.flac"
PEAK_RSS_SCRIPT = Path(__file__).resolve().parent / "peak_rss.py"
TIMBRESCRIBE = Path(sys.executable).parent / "timbrescribe"
RATE = 44100
INSTRUMENTS = ("auto", "1")


def stereo_tile() -> np.ndarray:
    """The example at RATE as (n, 2): the left channel as is, the right one quieter."""
    mono, sr = soundfile.read(str(EXAMPLE), dtype="float32")
    left = soxr.resample(mono, sr, RATE, quality="HQ")
    return np.stack([left, 0.8 * left], axis=1)


def write_long_wav(path: Path, minutes: float, tile: np.ndarray) -> None:
    """A WAV of ``minutes`` made of copies of ``tile``, written one copy at a time."""
    remaining = int(round(minutes * 60 * RATE))
    with soundfile.SoundFile(str(path), "w", RATE, tile.shape[1], subtype="PCM_16") as out:
        while remaining > 0:
            out.write(tile[:remaining])
            remaining -= len(tile)


def measure(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of ``command`` run by scripts/peak_rss.py in a fresh process."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(PEAK_RSS_SCRIPT), *command], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1].split()[2]), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--dir", type=Path, help="folder for the WAVs and outputs (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        folder = args.dir or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        tile = stereo_tile()
        rows = []
        for minutes in args.minutes:
            wav = folder / f"long_{minutes:g}min.wav"
            write_long_wav(wav, minutes, tile)
            for instruments in INSTRUMENTS:
                command = [str(TIMBRESCRIBE), "transcribe", str(wav), "-o", str(folder / "out"),
                           "--threads", str(args.threads), "--instruments", instruments]
                megabytes, seconds = measure(command)
                rows.append((minutes, instruments, megabytes, seconds))
                print(f"{minutes:g} min, --instruments {instruments}: {megabytes:.0f} MB, {seconds:.1f} s",
                      file=sys.stderr, flush=True)
            wav.unlink()

    print(f"| minutes | --instruments | peak RSS (MB) | wall (s) |  (--threads {args.threads})")
    print("|---|---|---|---|")
    for minutes, instruments, megabytes, seconds in rows:
        print(f"| {minutes:g} | {instruments} | {megabytes:.0f} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
