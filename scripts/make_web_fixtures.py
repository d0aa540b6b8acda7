"""Writes the golden fixtures of the web page's JavaScript ports into tests/web/fixtures/: inputs made
from fixed seeds and the answers of the Python code (decode.py, pooling.py, clustering.py,
transcription.tracks_from_clustering). The JS tests (web/tests/, `node --test`) check their ports
against them; tests/web/test_fixtures.py checks that the files still equal what this script makes.

    .venv/bin/python scripts/make_web_fixtures.py          # rewrite the fixtures
    .venv/bin/python scripts/make_web_fixtures.py --check  # exit 1 if any is out of date
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from timbrescribe.clustering import ClusterSettings, cluster_notes
from timbrescribe.constants import EMBEDDING_DIM, N_PITCHES, SAMPLE_RATE, n_frames
from timbrescribe.decode import DecoderSettings, decode_notes, separated_notes
from timbrescribe.inference import SHORT_FILE_CHUNK_SECONDS, SHORT_FILE_SECONDS, AgnosticSession, SeparationSession, chunk_frames, chunk_spans
from timbrescribe.notes import Note
from timbrescribe.pooling import CellStore
from timbrescribe.transcription import package_cluster_settings, package_decoder_settings, tracks_from_clustering

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "tests" / "web" / "fixtures"
MAP_FRAMES = 250
CODE_SCALE = 65535.0  # maps are stored as uint16 codes q, value float32(q / CODE_SCALE)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _note_dict(note: Note) -> dict:
    return {"onset": note.onset, "offset": note.offset, "pitch": note.pitch, "velocity": note.velocity}


def _synthetic_maps(seed: int, n_notes: int) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """uint16 codes of onset and frame maps that look like a model's: low noise, notes with onset
    peaks (some plateaus), sustained frame runs with dips, frame rises without an onset peak,
    frame runs that only reach the leftover threshold; then cells set to exact threshold values."""
    rng = np.random.default_rng(seed)
    onset = rng.random((N_PITCHES, MAP_FRAMES)) * 0.04
    frame = rng.random((N_PITCHES, MAP_FRAMES)) * 0.12
    for _ in range(n_notes):
        row = int(rng.integers(10, 70))
        start = int(rng.integers(0, MAP_FRAMES - 5))
        length = int(rng.integers(2, 60))
        end = min(MAP_FRAMES, start + length)
        level = rng.uniform(0.15, 0.95)
        frame[row, start:end] = np.maximum(frame[row, start:end], level * rng.uniform(0.8, 1.0, end - start))
        kind = rng.integers(0, 4)
        if kind == 0:  # onset peak
            onset[row, start] = rng.uniform(0.03, 0.9)
        elif kind == 1:  # plateau peak
            onset[row, start : start + 2] = rng.uniform(0.05, 0.9)
        # kind 2: no onset (inferred or leftover); kind 3: a dip inside the note
        if kind == 3 and end - start > 8:
            dip = int(rng.integers(start + 2, end - 3))
            frame[row, dip : dip + int(rng.integers(1, 4))] = rng.uniform(0.0, 0.2)
    codes_onset = np.clip(np.rint(onset * CODE_SCALE), 0, CODE_SCALE).astype(np.uint16)
    codes_frame = np.clip(np.rint(frame * CODE_SCALE), 0, CODE_SCALE).astype(np.uint16)
    # cells whose value is exactly a float32 threshold (float32 comparisons in numpy)
    overrides = []
    for value in (0.05, 0.2, 0.4, 0.5, 0.3, 0.1):
        for _ in range(3):
            which = int(rng.integers(0, 2))
            row, col = int(rng.integers(0, N_PITCHES)), int(rng.integers(0, MAP_FRAMES))
            overrides.append([which, row * MAP_FRAMES + col, float(np.float32(value))])
    return codes_onset, codes_frame, overrides


def _maps_from_codes(codes_onset, codes_frame, overrides) -> tuple[np.ndarray, np.ndarray]:
    maps = [(codes.astype(np.float64) / CODE_SCALE).astype(np.float32) for codes in (codes_onset, codes_frame)]
    for which, index, value in overrides:
        maps[which].reshape(-1)[index] = np.float32(value)
    return maps[0], maps[1]


def decode_fixture() -> dict:
    tuned = package_decoder_settings()
    settings_list = [
        ("tuned", tuned),
        ("defaults", DecoderSettings()),
        ("no-extras", dataclasses.replace(tuned, infer_onsets=False, leftover_notes=False, max_dip_frames=0)),
        ("dense-rule", dataclasses.replace(tuned, dense_polyphony=3, dense_frame_threshold=0.1)),
        # as the separated transcription decodes: the rule off, then dense_ends after clustering
        ("separated dense-rule", dataclasses.replace(tuned, dense_polyphony=3, dense_frame_threshold=0.1)),
    ]
    cases = []
    for seed, (label, settings) in enumerate(settings_list):
        codes_onset, codes_frame, overrides = _synthetic_maps(seed, n_notes=120)
        onset, frame = _maps_from_codes(codes_onset, codes_frame, overrides)
        separated = label.startswith("separated")
        notes = (separated_notes if separated else decode_notes)(onset, frame, settings)
        if settings.dense_polyphony:  # the case must exercise the rule
            assert notes != decode_notes(onset, frame, settings.without_dense_rule())
        cases.append({
            "name": f"seed {seed}, {label} settings",
            "separated": separated,
            "settings": settings.to_dict(),
            "n_frames": MAP_FRAMES,
            "onset_codes": _b64(codes_onset),
            "frame_codes": _b64(codes_frame),
            "overrides": overrides,
            "notes": [_note_dict(note) for note in notes],
        })
    return {"code_scale": CODE_SCALE, "cases": cases}


def pooling_fixture() -> dict:
    rng = np.random.default_rng(10)
    t = 24
    frame = (rng.random((N_PITCHES, t)) * 0.3).astype(np.float32)
    frame[rng.random((N_PITCHES, t)) < 0.7] = 0.0
    embedding = rng.normal(size=(EMBEDDING_DIM, N_PITCHES, t)).astype(np.float16).astype(np.float32)
    floor = 0.1
    store = CellStore(floor)
    split = 11
    store.add(frame[:, :split], embedding[:, :, :split], 0)
    store.add(frame[:, split:], embedding[:, :, split:], split)
    notes = []
    for _ in range(30):
        start = int(rng.integers(0, t - 2))
        end = int(rng.integers(start + 1, t + 1))
        notes.append(Note(start * 256 / 22050, end * 256 / 22050, int(rng.integers(24, 108)), 64))
    vectors = store.pool(notes, EMBEDDING_DIM)
    return {
        "floor": floor, "n_frames": t, "split": split,
        "frame": _b64(frame), "embedding": _b64(embedding),
        "notes": [_note_dict(note) for note in notes],
        "vectors": vectors.astype(float).tolist(),
    }


def _clustered_vectors(rng, n: int, groups: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(groups, EMBEDDING_DIM))
    truth = rng.integers(0, groups, n)
    vectors = centres[truth] + spread * rng.normal(size=(n, EMBEDDING_DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), truth


def _notes(rng, n: int, polyphonic: bool) -> list[Note]:
    notes, time = [], 0.0
    for _ in range(n):
        length = float(rng.uniform(0.1, 0.8))
        onset = float(rng.uniform(0, 20)) if polyphonic else time
        notes.append(Note(round(onset, 4), round(onset + length, 4), int(rng.integers(36, 96)), 80))
        time = onset + length + 0.01
    return notes


def clustering_fixture() -> dict:
    tuned = package_cluster_settings()
    rng = np.random.default_rng(20)
    cases = []

    def add(name, vectors, notes, k, settings):
        result = cluster_notes(vectors, k, settings, notes)
        tracks = tracks_from_clustering(notes, result)
        cases.append({
            "name": name, "k": k, "settings": settings.to_dict(),
            "vectors": vectors.astype(float).tolist(), "notes": [_note_dict(note) for note in notes],
            "labels": result.labels.tolist(), "k_out": result.k, "confidence": result.confidence.tolist(),
            "tracks": [{"name": t.name, "pitches": [n.pitch for n in t.notes], "confidence": t.confidence} for t in tracks],
        })

    vectors, _ = _clustered_vectors(rng, 90, 3, 0.35)
    notes = _notes(rng, 90, polyphonic=True)
    add("3 groups, K estimated (tuned)", vectors, notes, None, tuned)
    for k in (1, 2, 3, 4):
        add(f"3 groups, K={k}", vectors, notes, k, tuned)
    vectors5, _ = _clustered_vectors(rng, 120, 5, 0.5)
    notes5 = _notes(rng, 120, polyphonic=True)
    add("5 noisy groups, K estimated", vectors5, notes5, None, tuned)
    add("5 noisy groups, K=5", vectors5, notes5, 5, tuned)
    add("5 noisy groups, K=6, register weight", vectors5, notes5, 6, dataclasses.replace(tuned, pitch_weight=0.3))
    solo = _notes(rng, 40, polyphonic=False)
    add("melodic line: one instrument", _clustered_vectors(rng, 40, 2, 0.2)[0], solo, None, tuned)
    add("subset clustered, rest assigned", vectors5, notes5, 3, dataclasses.replace(tuned, max_spectral_notes=37))
    add("subset, K estimated", vectors5, notes5, None, dataclasses.replace(tuned, max_spectral_notes=50))
    add("merge, complete linkage", vectors5, notes5, None, dataclasses.replace(
        tuned, method="merge", merge_linkage="complete", merge_threshold=0.6, min_group_share=0.0, solo_polyphony=0.0))
    add("eigengap", vectors, notes, None, dataclasses.replace(tuned, method="eigengap", solo_polyphony=0.0))
    add("silhouette", vectors, notes, None, dataclasses.replace(tuned, method="silhouette", solo_polyphony=0.0))
    with_zero = vectors[:30].copy()
    with_zero[[3, 17]] = 0.0
    add("zero vectors among the notes", with_zero, notes[:30], 3, tuned)
    add("fewer notes than K", vectors[:3], notes[:3], 5, tuned)
    return {"cases": cases}


def chunks_fixture() -> dict:
    """Chunk spans of the two-pass runtime for files of several lengths, per model (as
    AgnosticSession.activations lays them out)."""
    cases = []
    contexts = {session: session().context_frames for session in (AgnosticSession, SeparationSession)}
    for session in (AgnosticSession, SeparationSession):
        for n_samples in (1, 255, 256, 257, 22050, 330750, 600 * SAMPLE_RATE, 600 * SAMPLE_RATE + 1, 1800 * SAMPLE_RATE + 77):
            short = n_samples <= SHORT_FILE_SECONDS * SAMPLE_RATE
            seconds = SHORT_FILE_CHUNK_SECONDS if short else session.chunk_seconds
            spans = list(chunk_spans(n_frames(n_samples), chunk_frames(seconds), contexts[session]))
            cases.append({"model": session.default_model_path.stem, "n_samples": n_samples,
                          "first_spans": [list(span) for span in spans[:3]],
                          "last_span": list(spans[-1]), "count": len(spans)})
    return {"cases": cases}


def build_fixtures() -> dict[str, dict]:
    """File name -> fixture document."""
    return {
        "decode.json": decode_fixture(),
        "pooling.json": pooling_fixture(),
        "clustering.json": clustering_fixture(),
        "chunks.json": chunks_fixture(),
    }


def _text(document: dict) -> str:
    return json.dumps(document, indent=None, separators=(",", ":")) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that the fixtures are up to date")
    args = parser.parse_args()
    stale = []
    for name, document in build_fixtures().items():
        path = FIXTURES_DIR / name
        text = _text(document)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path} ({len(text)} bytes)")
    if stale:
        print(f"out of date: {', '.join(stale)} (run scripts/make_web_fixtures.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
