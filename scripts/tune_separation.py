"""Choose how notes are clustered into instruments (affinity width, K-estimation method and its
threshold) on validation data only, and write weights/clustering.json with a record beside it.

Validation data: the synthetic validation sets (timbre sources that training never draws, 1-4
parts; by default both `datasets/val` and `datasets/val-sampled`, pooled as one source) and TRIOS
dev (full mixes and 2-/3-part sub-mixes from stems). Never a test set.

1. Every excerpt is analysed once with the separation model (notes + per-note timbre vectors).
2. The affinity width and the pitch weight are chosen by the separated note onset F with the true
   number of parts.
3. With that width, every K-estimation method is tried on a grid of its parameters (the merge
   method's threshold, smallest group share and linkage together); the choice maximises, per source and
   then averaged over the two sources with equal weight, the mean of two shares: the separated
   note F with estimated K, and how often K is exactly right (averaged over the true K). F alone
   rewards estimating too few instruments: merging two parts costs less F than splitting one
   wrongly, and on the 2026-11-30 pair F alone chose settings that found 3 or 4 instruments in
   0-10 % of such mixtures. --methods limits the methods tried.
The F is the all-notes separated F (metrics.SeparatedScores.all_notes): the mean over parts
ignores tracks no part is matched to, so it would reward estimating too many instruments.
With the true K (step 2) the objective is that F alone.
4. On top of the chosen method, the melodic-line rule (ClusterSettings.solo_polyphony: notes that
   hardly overlap are one instrument) is swept the same way. Ties of the objective go to the
   settings that get K exactly right more often (mean over sources and true K).
5. With several ``--decoder`` files (e.g. the settings tuned for note F + frame F on this graph and
   those of another note model), steps 1-4 run for each, and the one whose clustering scores best
   is kept; ``--decoder-out`` writes it (the separation graph's decoder settings, with a record).

    .venv/bin/python scripts/tune_separation.py --model runs/timbre/separation.onnx
    .venv/bin/python scripts/tune_separation.py --model separation.onnx --decoder a.json b.json \
        --decoder-out separation.decoder.json
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from timbrescribe.clustering import ClusterSettings, cluster_notes  # noqa: E402
from timbrescribe.evaluation import layout  # noqa: E402
from timbrescribe.evaluation.metrics import score_separated  # noqa: E402
from timbrescribe.decode import DecoderSettings  # noqa: E402
from timbrescribe.inference import SeparationSession  # noqa: E402
from timbrescribe.settings_file import tuning_record_path  # noqa: E402
from timbrescribe.transcription import (  # noqa: E402
    TUNED_CLUSTERING_PATH, TUNED_SEPARATION_DECODER_PATH, analyse, tracks_from_clustering,
)
from timbrescribe.tuning import model_fingerprint  # noqa: E402
from tune_thresholds import shown  # noqa: E402

WIDTHS = (0.1, 0.2, 0.3, 0.5)
PITCH_WEIGHTS = (0.0, 0.2)
METHOD_GRIDS = {  # every combination of the values is tried (the merge settings interact)
    "merge": {"merge_threshold": (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
              "min_group_share": (0.0, 0.02, 0.05, 0.1, 0.15), "merge_linkage": ("average", "complete")},
    "eigengap": {"affinity_width": (0.05, 0.1)},
    "silhouette": {"silhouette_floor": (0.0, 0.2, 0.3, 0.4, 0.5)},
}
SOLO_POLYPHONY = (0.05, 0.1, 0.2, 0.3)


def analysed_excerpts(sources: dict[str, list[layout.Excerpt]], session, decoder) -> list[dict]:
    items = []
    for source, excerpts in sources.items():
        for excerpt in tqdm(excerpts, desc=f"analyse {source}", unit="excerpt"):
            analysis = analyse(excerpt.load_audio(), session, decoder, with_vectors=True)
            parts = {name: notes for name, notes in excerpt.parts.items() if notes}
            items.append({"source": source, "name": excerpt.name, "parts": parts,
                          "notes": analysis.notes, "vectors": analysis.vectors})
    return items


def score(items: list[dict], settings: ClusterSettings, oracle: bool) -> dict:
    """Per source: mean separated note F over parts and the all-notes separated F (which charges
    the notes of extra tracks, so that over-splitting cannot win), and per true K the share of
    exact K estimates. The objective (see the module doc): with ``oracle`` the mean over sources of
    the all-notes F, otherwise of (all-notes F + mean exact-K share over true K) / 2."""
    note_f, all_f = defaultdict(list), defaultdict(list)
    k_hits = defaultdict(lambda: defaultdict(list))
    for item in items:
        true_k = len(item["parts"])
        clustering = cluster_notes(item["vectors"], true_k if oracle else None, settings, item["notes"])
        scores = score_separated(item["parts"], tracks_from_clustering(item["notes"], clustering))
        note_f[item["source"]].append(scores.mean.note.f)
        all_f[item["source"]].append(scores.all_notes.f)
        k_hits[item["source"]][true_k].append(clustering.k == true_k)
    per_source = {source: float(np.mean(values)) for source, values in all_f.items()}
    k_accuracy = {source: {k: float(np.mean(v)) for k, v in sorted(by_k.items())} for source, by_k in k_hits.items()}
    objective = per_source if oracle else {
        source: (f + float(np.mean(list(k_accuracy[source].values())))) / 2 for source, f in per_source.items()}
    return {
        "all_notes_f": per_source,
        "note_f": {source: float(np.mean(values)) for source, values in note_f.items()},
        "objective": float(np.mean(list(objective.values()))),
        "k_accuracy": k_accuracy,
    }


def mean_k_accuracy(result: dict) -> float:
    """Mean over sources and true K of how often K is exactly right: breaks ties of the objective
    (the melodic-line rule often leaves every mixture's F as it was while finding more solos)."""
    shares = [share for by_k in result["k_accuracy"].values() for share in by_k.values()]
    return sum(shares) / len(shares)


def tune_clustering(items: list[dict], methods: list[str]) -> dict:
    """Steps 2-4 (module doc) on analysed excerpts: the chosen settings, their scores with
    estimated and with oracle K, and everything tried."""
    multi = [item for item in items if len(item["parts"]) >= 2]
    base = ClusterSettings()
    oracle = {}
    for width in WIDTHS:
        for weight in PITCH_WEIGHTS:
            oracle[width, weight] = score(multi, dataclasses.replace(base, affinity_width=width, pitch_weight=weight), oracle=True)
            print(f"oracle K  width {width:<5} pitch weight {weight:<4} objective {oracle[width, weight]['objective']:.4f} "
                  f"all-notes F {json.dumps({k: round(v, 4) for k, v in oracle[width, weight]['all_notes_f'].items()})}", flush=True)
    width, weight = max(oracle, key=lambda key: oracle[key]["objective"])
    base = dataclasses.replace(base, pitch_weight=weight)
    print(f"chosen width {width}, pitch weight {weight}")

    tried = []
    for method, space in METHOD_GRIDS.items():
        if method not in methods:
            continue
        for values in itertools.product(*space.values()):
            changes = dict(zip(space, values))
            settings = dataclasses.replace(base, **{"affinity_width": width, "method": method, **changes})
            result = score(items, settings, oracle=False)
            tried.append((settings, result))
            print(f"estimated K  {method:<10} {' '.join(f'{k}={v:<5}' for k, v in changes.items())} "
                  f"objective {result['objective']:.4f} "
                  f"all-notes F {json.dumps({k: round(v, 4) for k, v in result['all_notes_f'].items()})} "
                  f"K exact {json.dumps(result['k_accuracy'])}")
    chosen, result = max(tried, key=lambda pair: pair[1]["objective"])
    for value in SOLO_POLYPHONY:
        settings = dataclasses.replace(chosen, solo_polyphony=value)
        result_solo = score(items, settings, oracle=False)
        tried.append((settings, result_solo))
        print(f"estimated K  {chosen.method} + solo_polyphony={value:<5} objective {result_solo['objective']:.4f} "
              f"all-notes F {json.dumps({k: round(v, 4) for k, v in result_solo['all_notes_f'].items()})} "
              f"K exact {json.dumps(result_solo['k_accuracy'])}")
    chosen, result = max(tried, key=lambda pair: (round(pair[1]["objective"], 6), mean_k_accuracy(pair[1])))
    oracle_chosen = score(multi, chosen, oracle=True)
    print(f"chosen: {chosen}")
    print(f"  estimated K: {json.dumps(result)}")
    print(f"  oracle K (2+ parts): {json.dumps(oracle_chosen)}")
    return {"chosen": chosen, "estimated_k": result, "oracle_k": oracle_chosen, "oracle": oracle, "tried": tried}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="separation ONNX model to tune for")
    parser.add_argument("--val", type=Path, nargs="+", default=[ROOT / "datasets" / "val", ROOT / "datasets" / "val-sampled"],
                        help="synthetic validation sets, pooled as one source (default: val and val-sampled)")
    parser.add_argument("--trios", type=Path, default=ROOT.parent / "shared" / "data" / "trios")
    parser.add_argument("--out", type=Path, default=TUNED_CLUSTERING_PATH, help="settings file to write")
    parser.add_argument("--decoder", type=Path, nargs="+", default=[TUNED_SEPARATION_DECODER_PATH],
                        help="decoder settings file(s) of the model; with several, each is tuned for and the "
                             "best by the objective is kept (default: the package's separation.decoder.json)")
    parser.add_argument("--decoder-out", type=Path, default=None,
                        help="write the chosen decoder settings here, with a <stem>.tuning.json record")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", choices=sorted(METHOD_GRIDS),
                        default=sorted(METHOD_GRIDS), help="K-estimation methods to try (default: all)")
    args = parser.parse_args()
    missing = [str(path) for path in args.decoder if not path.is_file()]
    if missing:
        parser.error(f"no decoder settings file {', '.join(missing)}")

    started = time.perf_counter()
    sources = {"synthetic-val": [excerpt for path in args.val for excerpt in layout.excerpts(layout.read_dataset(path))]}
    if args.trios.is_dir():
        sources["trios"] = layout.excerpts(layout.read_dataset(args.trios), submixes=True)
    session = SeparationSession(args.model, threads=args.threads)
    candidates = []
    for path in args.decoder:
        decoder = DecoderSettings.from_json(path)
        print(f"decoder {path}: {decoder}")
        candidates.append((path, decoder, tune_clustering(analysed_excerpts(sources, session, decoder), args.methods)))
    path, decoder, tuned = max(candidates, key=lambda c: (round(c[2]["estimated_k"]["objective"], 6),
                                                         mean_k_accuracy(c[2]["estimated_k"])))
    compared = [{"path": shown(p), "settings": d.to_dict(), "objective": t["estimated_k"]["objective"],
                 "k_accuracy": t["estimated_k"]["k_accuracy"]} for p, d, t in candidates]
    if len(candidates) > 1:
        print("decoder candidates: " + ", ".join(f"{c['path']} {c['objective']:.4f}" for c in compared)
              + f"; chosen {shown(path)}")

    args.out.write_text(json.dumps(tuned["chosen"].to_dict(), indent=1) + "\n")
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = {
        "model": str(args.model), "model_fingerprint": model_fingerprint(args.model), "date": date,
        "sources": {source: len(excerpts) for source, excerpts in sources.items()},
        "validation_sets": [shown(path) for path in args.val],
        "decoder": decoder.to_dict(), "decoder_candidates": compared, "methods": args.methods,
        "chosen": tuned["chosen"].to_dict(), "estimated_k": tuned["estimated_k"], "oracle_k": tuned["oracle_k"],
        "oracle_by_width_and_pitch_weight": {f"{w} {p}": result for (w, p), result in tuned["oracle"].items()},
        "tried": [{"settings": s.to_dict(), **r} for s, r in tuned["tried"]],
        "seconds": round(time.perf_counter() - started, 1),
    }
    tuning_record_path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out} and its record ({record['seconds']} s)")
    if args.decoder_out is not None:
        decoder.to_json(args.decoder_out)
        decoder_record = {
            "date": date, "model": {"path": shown(args.model), "fingerprint": model_fingerprint(args.model)},
            "objective": "the clustering objective of scripts/tune_separation.py (estimated K), each candidate "
                         "with the clustering tuned for it", "settings": decoder.to_dict(), "candidates": compared,
        }
        record_path = tuning_record_path(args.decoder_out)
        record_path.write_text(json.dumps(decoder_record, indent=2) + "\n")
        print(f"wrote {args.decoder_out} and {record_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
