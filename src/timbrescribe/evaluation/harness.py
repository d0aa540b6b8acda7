"""Run or load predictions for every excerpt of a dataset, score them, and report.

Each excerpt is scored timbre-agnostic (all parts merged vs all predicted notes merged) and
separated (tracks matched to parts, see :mod:`timbrescribe.evaluation.metrics`). Results are
macro-averaged over the excerpts of each group (``mix``, ``submix-2``, ...).

Real-time factor (RTF) = seconds spent in ``System.predict`` / seconds of audio, after one untimed
warm-up call on a second of quiet noise (first-call costs: lazy imports, JIT, session set-up).
Loading and mixing the audio is not counted. Precomputed MIDI predictions have no RTF.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.evaluation.layout import Excerpt
from timbrescribe.evaluation.metrics import (
    METRIC_SETTINGS,
    Scores,
    SeparatedScores,
    mean_scores,
    score_agnostic,
    score_separated,
)
from timbrescribe.evaluation.systems import MidiDirectorySystem, System
from timbrescribe.notes import Track

WARM_UP_SECONDS = 1.0
Source = System | MidiDirectorySystem  # where predictions come from


@dataclass(frozen=True)
class ExcerptResult:
    """Scores of one excerpt and, for audio systems, the time its transcription took."""

    excerpt: Excerpt
    n_tracks: int
    agnostic: Scores
    separated: SeparatedScores
    audio_seconds: float | None  # None for precomputed predictions
    processing_seconds: float | None

    @property
    def k_exact(self) -> bool:
        """Whether as many tracks were predicted as the excerpt has parts."""
        return self.n_tracks == len(self.excerpt.part_names)

    @property
    def rtf(self) -> float | None:
        if self.processing_seconds is None or not self.audio_seconds:
            return None
        return self.processing_seconds / self.audio_seconds

    def as_dict(self) -> dict:
        return {
            "name": self.excerpt.name,
            "piece": self.excerpt.piece.name,
            "group": self.excerpt.group,
            "parts": list(self.excerpt.part_names),
            "n_predicted_tracks": self.n_tracks,
            "audio_seconds": self.audio_seconds,
            "processing_seconds": self.processing_seconds,
            "rtf": self.rtf,
            "agnostic": self.agnostic.as_dict(),
            "separated": self.separated.as_dict(),
        }


def warm_up(system: System) -> None:
    """One untimed call so that one-time costs do not land on the first excerpt."""
    noise = np.random.default_rng(0).normal(0.0, 1e-3, int(WARM_UP_SECONDS * SAMPLE_RATE))
    system.predict(noise.astype(np.float32), SAMPLE_RATE)


def predict_excerpt(
    source: Source, excerpt: Excerpt, oracle_k: bool = False
) -> tuple[list[Track], float | None, float | None]:
    """Tracks for one excerpt, its audio seconds and the seconds spent predicting (None if
    precomputed). With ``oracle_k`` the system is told how many parts the excerpt has."""
    if isinstance(source, MidiDirectorySystem):
        return source.read(excerpt.name), None, None
    audio = excerpt.load_audio()
    n_tracks = len(excerpt.part_names) if oracle_k else None
    start = time.perf_counter()
    tracks = source.predict(audio, SAMPLE_RATE, n_tracks=n_tracks)
    return tracks, len(audio) / SAMPLE_RATE, time.perf_counter() - start


def evaluate_excerpt(source: Source, excerpt: Excerpt, oracle_k: bool = False) -> ExcerptResult:
    tracks, audio_seconds, processing_seconds = predict_excerpt(source, excerpt, oracle_k)
    return ExcerptResult(
        excerpt=excerpt,
        n_tracks=len(tracks),
        agnostic=score_agnostic(excerpt.parts, tracks),
        separated=score_separated(excerpt.parts, tracks),
        audio_seconds=audio_seconds,
        processing_seconds=processing_seconds,
    )


def evaluate(
    source: Source, excerpts: list[Excerpt], oracle_k: bool = False, progress: bool = True
) -> list[ExcerptResult]:
    """Score every excerpt; precomputed predictions are all checked to exist before any scoring.
    ``oracle_k``: give audio systems the true number of parts (else they estimate it)."""
    from tqdm import tqdm

    if isinstance(source, MidiDirectorySystem):
        source.check_complete([excerpt.name for excerpt in excerpts])
    else:
        warm_up(source)
    bar = tqdm(excerpts, desc=f"evaluate {source.name}", unit="excerpt", disable=None if progress else True)
    return [evaluate_excerpt(source, excerpt, oracle_k) for excerpt in bar]


def summarize(results: list[ExcerptResult]) -> dict[str, dict]:
    """Per group: excerpt count, macro-mean agnostic and separated scores (and the mean all-notes
    separated F, see metrics.SeparatedScores), overall RTF."""
    summary = {}
    for group in dict.fromkeys(r.excerpt.group for r in results):
        members = [r for r in results if r.excerpt.group == group]
        timed = [r for r in members if r.processing_seconds is not None]
        audio = sum(r.audio_seconds for r in timed)
        processing = sum(r.processing_seconds for r in timed)
        summary[group] = {
            "n_excerpts": len(members),
            "agnostic": mean_scores([r.agnostic for r in members]).as_dict(),
            "separated": mean_scores([r.separated.mean for r in members]).as_dict(),
            "separated_all_notes_f": float(np.mean([r.separated.all_notes.f for r in members])),
            "k_exact": float(np.mean([r.k_exact for r in members])),
            "audio_seconds": audio if timed else None,
            "processing_seconds": processing if timed else None,
            "rtf": processing / audio if timed and audio else None,
        }
    return summary


def report(results: list[ExcerptResult], settings: dict) -> dict:
    """Everything as one JSON-ready dict: settings, metric parameters, group means, excerpts."""
    return {
        "settings": settings,
        "metrics": METRIC_SETTINGS,
        "summary": summarize(results),
        "excerpts": [r.as_dict() for r in results],
    }


TABLE_COLUMNS = (
    "excerpt", "agn frame", "agn note", "agn n+off", "sep frame", "sep note", "sep n+off", "K", "RTF",
)


def _row(name: str, agnostic: dict, separated: dict, k: str, rtf: float | None) -> list[str]:
    values = [agnostic[m]["f"] for m in ("frame", "note", "note_offset")]
    values += [separated[m]["f"] for m in ("frame", "note", "note_offset")]
    return [name, *(f"{v:.3f}" for v in values), k, "-" if rtf is None else f"{rtf:.4f}"]


def format_table(results: list[ExcerptResult]) -> str:
    """F-measures per excerpt (agnostic, then separated), tracks predicted / parts (K; for a
    group the share of excerpts where they agree), and the macro mean of each group."""
    rows = [
        _row(r.excerpt.name, r.agnostic.as_dict(), r.separated.mean.as_dict(),
             f"{r.n_tracks}/{len(r.excerpt.part_names)}", r.rtf)
        for r in results
    ]
    for group, stats in summarize(results).items():
        name = f"MEAN {group} ({stats['n_excerpts']})"
        rows.append(_row(name, stats["agnostic"], stats["separated"], f"{stats['k_exact']:.0%}", stats["rtf"]))
    widths = [max(len(row[i]) for row in [list(TABLE_COLUMNS), *rows]) for i in range(len(TABLE_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [list(TABLE_COLUMNS), *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(results) + 2, "-" * len(lines[0]))
    return "\n".join(lines)
