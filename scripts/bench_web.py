"""Real-time factor of the browser page (onnxruntime-web in headless Chromium) next to the Python
runtime's, in one run, on the bundled example (15 s) and a 5-minute file made by repeating it.

    make web-vendor && .venv/bin/python scripts/bench_web.py [--out out/web/bench]

Times are wall-clock: the page's from the file handed to it to the notes shown (audio decoding
and resampling by the browser included; decoding alone is listed too), Python's from the file
path to the Transcription (decoding with soundfile + soxr included), both after one warm-up run
with the model sessions already open. Writes bench.json in the output folder and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

from timbrescribe import web_command
from timbrescribe.options import open_session
from timbrescribe.transcription import parse_instruments, transcribe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "timbrescribe" / "examples" / "example.flac"
MEASURE = ROOT / "web" / "tests" / "browser" / "measure.js"
LONG_SECONDS = 300


def long_file(folder: Path) -> Path:
    """The example repeated to LONG_SECONDS seconds (its own rate and channels), as FLAC."""
    path = folder / f"example_x{LONG_SECONDS // 15}.flac"
    if not path.is_file():
        samples, sr = soundfile.read(str(EXAMPLE), always_2d=True)
        repeats = int(np.ceil(LONG_SECONDS * sr / len(samples)))
        soundfile.write(str(path), np.tile(samples, (repeats, 1))[: LONG_SECONDS * sr], sr)
    return path


def python_times(files: list[Path], instruments: str) -> list[dict]:
    k = parse_instruments(instruments)
    session = open_session(k, None, None)
    transcribe(files[0], instruments=instruments, session=session)  # warm-up
    rows = []
    for path in files:
        started = time.perf_counter()
        result = transcribe(path, instruments=instruments, session=session)
        seconds = time.perf_counter() - started
        rows.append({"file": path.name, "k": instruments, "runtime": "python", "duration": result.duration_s,
                     "seconds": seconds, "rtf": seconds / result.duration_s, "notes": len(result.notes),
                     "tracks": len(result.tracks)})
    return rows


def browser_times(url: str, files: list[Path], instruments: str) -> list[dict]:
    k = "auto" if instruments == "auto" else str(instruments)
    out = subprocess.run(["node", str(MEASURE), url, k, *map(str, files)], cwd=ROOT / "web",
                         check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        record = json.loads(line)
        rows.append({"file": Path(record["file"]).name, "k": instruments, "runtime": f"browser ({record['threads']} threads)",
                     "duration": record["duration"], "seconds": record["totalSeconds"],
                     "rtf": record["totalSeconds"] / record["duration"], "decode_seconds": record["decodeSeconds"],
                     "worker_seconds": record["workerSeconds"], "notes": record["notes"], "tracks": record["tracks"]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "web" / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    missing = web_command.missing_vendor_files()
    if missing:
        parser.error(f"web/vendor lacks {', '.join(missing)}: run `make web-vendor` first")
    files = [EXAMPLE, long_file(args.out)]
    server = web_command.make_server("127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    rows = []
    try:
        for instruments in ("1", "auto"):
            rows += python_times(files, instruments)
            rows += browser_times(url, files, instruments)
    finally:
        server.shutdown()
        server.server_close()
    chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip()
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "load_average_at_end": os.getloadavg(), "chromium": chromium, "rows": rows}
    (args.out / "bench.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{record['date']}, {record['machine']}, {chromium}; load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'file':<18} {'K':<5} {'runtime':<22} {'audio s':>8} {'time s':>8} {'RTF':>7} {'decode s':>9} {'notes':>6} {'tracks':>6}")
    for row in rows:
        decode = f"{row['decode_seconds']:.2f}" if "decode_seconds" in row else "-"
        print(f"{row['file']:<18} {row['k']:<5} {row['runtime']:<22} {row['duration']:>8.1f} {row['seconds']:>8.2f} "
              f"{row['rtf']:>7.4f} {decode:>9} {row['notes']:>6} {row['tracks']:>6}")
    print(f"written: {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
