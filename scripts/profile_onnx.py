"""Where an exported network graph spends its time: onnxruntime's own profiler, one thread, on one
chunk of noise, summed per operator type and per node (after onnxruntime's graph optimisations,
so fused nodes carry the name of one of their parts).

    .venv/bin/python scripts/profile_onnx.py src/timbrescribe/weights/separation.onnx --seconds 15
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from timbrescribe.constants import SAMPLE_RATE  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="network graph (.onnx) exported by timbrescribe")
    parser.add_argument("--seconds", type=float, default=15.0, help="chunk length (default 15)")
    parser.add_argument("--runs", type=int, default=3, help="profiled runs after one warm-up (default 3)")
    parser.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = onnxruntime.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
        audio = 0.1 * np.random.default_rng(0).standard_normal((1, int(args.seconds * SAMPLE_RATE)))
        feed = {"audio": audio.astype(np.float32), "energy_moments": np.array([[1000.0, 0.0, 1000.0]], np.float32)}
        for _ in range(1 + args.runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())

    by_type, by_node = Counter(), Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_type[event["args"]["op_name"]] += event["dur"]
            by_node[event["name"].removesuffix("_kernel_time")] += event["dur"]
    total = sum(by_type.values())
    print(f"{args.model}: {args.seconds:g} s chunk, {args.runs + 1} runs (the first a warm-up), one thread")
    for title, counts in (("operator type", by_type), ("node", by_node)):
        print(f"\n| {title} | share of kernel time |\n|---|---|")
        for name, microseconds in counts.most_common(args.top):
            print(f"| {name} | {microseconds / total:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
