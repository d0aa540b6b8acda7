"""Choose the decoder settings on validation data (DESIGN.md §5, §7).

Tuning data: the synthetic validation set (rendered with held-out timbres), the TRIOS dev set
(real full mixes) and, where it is present, the real solo-violin dev set (`timbrescribe data
devset bach-violin`). Never a test set.

Activations are computed once per recording with the exported model and cached as ``.npz`` under
``<cache>/<model fingerprint>/<source>/<name>-<audio digest>.npz``, so neither a new model nor other
audio under the same name reads stale maps.

Objective (OBJECTIVES): note onset-only F (mir_eval, 50 ms, via evaluation.metrics.note_scores) of
the decoded notes against all reference parts merged ("note"), or the mean of that and the frame F
of the decoded notes ("note+frame": a higher frame threshold that gains a little note F can cost
much frame F), averaged over the recordings of each source, then averaged over the sources with
equal weight, so that the few long TRIOS pieces count as much as the many short synthetic examples.

Search: a coarse grid over onset threshold x frame threshold x minimum note length; coordinate
descent (each setting swept alone over its whole range, secondary ones included: dip tolerance,
inferred and leftover notes, the dense-frame rule) until a round changes nothing, as the settings
interact (a low leftover threshold makes onset peaks less needed); grids at half and a quarter of the coarse
spacing around the best; coordinate descent again. Every stage contains its starting point, so
the best objective never decreases; settings already scored are not scored again. A best value
at the end of the range tried is reported (the range may need widening for another model).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timbrescribe.decode import DecoderSettings, decode_notes, separated_notes
from timbrescribe.evaluation.metrics import Scores, frame_scores, mean_scores, note_scores, score_notes
from timbrescribe.notes import Note

SYNTHETIC_SOURCE = "synthetic-val"
TRIOS_SOURCE = "trios"
VIOLIN_SOURCE = "violin"
_PER_SOURCE = "mean over sources (equal weight) of the per-recording mean "
OBJECTIVES = {
    "note": _PER_SOURCE + "note onset-only F (mir_eval, 50 ms, all parts merged)",
    "note+frame": _PER_SOURCE + "(note onset-only F + frame F) / 2 (mir_eval, 50 ms, all parts merged)",
}

# Coarse grid of the three main settings. The onset head is trained with a small focal alpha
# (DESIGN.md §4), so its peaks can stay far below 0.5: the onset grid reaches down to 0.05.
COARSE_GRID = {
    "onset_threshold": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    "frame_threshold": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
    "min_note_ms": (30.0, 60.0, 90.0, 120.0),
}
# Secondary settings, swept one at a time (with the coarse values of the main ones).
SECONDARY_SWEEPS = {
    "max_dip_frames": (0, 1, 2, 3, 4, 6, 8, 12),
    "rise_threshold": (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5),
    "infer_onsets": (True, False),
    "leftover_threshold": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "leftover_notes": (True, False),
    "dense_polyphony": (0, 2, 3, 4, 5, 6, 8),
    "dense_frame_threshold": (0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2),
}
MAX_ROUNDS = 5  # of coordinate descent


@dataclass(frozen=True)
class Recording:
    """A validation recording before inference: where it comes from, how to load its mono audio
    at SAMPLE_RATE, and its reference notes (all parts merged)."""

    source: str
    name: str
    load_audio: Callable[[], np.ndarray]
    reference: list[Note]


@dataclass(frozen=True)
class TuningItem:
    """A validation recording after inference: its onset and frame maps (84 x T)."""

    source: str
    name: str
    onset: np.ndarray
    frame: np.ndarray
    reference: list[Note]


@dataclass(frozen=True)
class Trial:
    """One scored setting: the per-recording score (see OBJECTIVES) averaged per source, and the
    objective (the mean over sources)."""

    settings: DecoderSettings
    source_f: dict[str, float]
    objective: float


# ---------------------------------------------------------------------------- data


def recordings(root: str | Path, source: str) -> list[Recording]:
    """The full mixes of a dataset read by evaluation.layout (the evaluation layout, or a rendered
    synthetic dataset), each scored against all its pitched parts merged."""
    from timbrescribe.evaluation.layout import excerpts, read_dataset

    return [
        Recording(source, excerpt.name, excerpt.load_audio, [n for notes in excerpt.parts.values() for n in notes])
        for excerpt in excerpts(read_dataset(root))
    ]


def model_fingerprint(model_path: str | Path) -> str:
    """Short hash of the network and energy ONNX files: cached activations belong to it."""
    from timbrescribe.inference import energy_model_path

    digest = hashlib.sha256()
    for path in (Path(model_path), energy_model_path(model_path)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_item(recording: Recording, session, cache_dir: Path) -> TuningItem:
    """The recording with its activations, read from ``cache_dir`` or computed with ``session``
    (an AgnosticSession) and written there. The file is named by a digest of the audio as well as
    the recording's name: two datasets with the same example names (val and val-sampled), or a
    re-rendered dataset, never read each other's maps."""
    audio = recording.load_audio()
    digest = hashlib.sha256(np.ascontiguousarray(audio).tobytes()).hexdigest()[:12]
    path = cache_dir / recording.source / f"{recording.name}-{digest}.npz"
    if path.is_file():
        with np.load(path) as cached:
            onset, frame = cached["onset"], cached["frame"]
    else:
        onset, frame = session.activations(audio)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".partial.npz")
        np.savez(partial, onset=onset, frame=frame)
        partial.replace(path)  # an interrupted run leaves no truncated cache file
    return TuningItem(recording.source, recording.name, onset, frame, recording.reference)


# ---------------------------------------------------------------------------- scoring


def by_source(items: Sequence[TuningItem], values: Sequence) -> dict[str, list]:
    """``values`` (one per item) grouped by the items' sources, in order of first appearance."""
    groups: dict[str, list] = {}
    for item, value in zip(items, values, strict=True):
        groups.setdefault(item.source, []).append(value)
    return groups


def recording_score(reference: Sequence[Note], notes: Sequence[Note], objective: str) -> float:
    """One recording's score under ``objective`` (a key of OBJECTIVES)."""
    note_f = note_scores(reference, notes, with_offsets=False).f
    if objective == "note":
        return note_f
    if objective == "note+frame":
        return (note_f + frame_scores(reference, notes).f) / 2
    raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")


def decoded(item: TuningItem, settings: DecoderSettings, separated: bool = False) -> list[Note]:
    """The item's notes as transcription gives them, one track or ``separated`` (decode.separated_notes)."""
    decode = separated_notes if separated else decode_notes
    return decode(item.onset, item.frame, settings)


def evaluate(items: Sequence[TuningItem], settings: DecoderSettings, objective: str = "note",
             separated: bool = False) -> Trial:
    """Decode every item with ``settings`` (as a ``separated`` transcription would) and score ``objective``."""
    scores = [recording_score(item.reference, decoded(item, settings, separated), objective) for item in items]
    per_source = {source: float(np.mean(values)) for source, values in by_source(items, scores).items()}
    return Trial(settings, per_source, float(np.mean(list(per_source.values()))))


def full_scores(items: Sequence[TuningItem], settings: DecoderSettings, separated: bool = False) -> dict[str, Scores]:
    """All three metrics (frame, note, note with offset), macro-averaged per source."""
    scores = [score_notes(item.reference, decoded(item, settings, separated)) for item in items]
    return {source: mean_scores(values) for source, values in by_source(items, scores).items()}


# ---------------------------------------------------------------------------- search


def grid(base: DecoderSettings, space: Mapping[str, Iterable]) -> list[DecoderSettings]:
    """``base`` with every combination of the values in ``space`` (invalid combinations skipped)."""
    names = list(space)
    settings = []
    for values in itertools.product(*(space[name] for name in names)):
        try:
            settings.append(dataclasses.replace(base, **dict(zip(names, values))))
        except ValueError:
            continue
    return settings


class Search:
    """Scores settings on fixed items by ``objective`` (a key of OBJECTIVES), each distinct setting
    once, decoding as a ``separated`` transcription does when asked (see decoded); ``trials`` holds
    them all."""

    def __init__(self, items: Sequence[TuningItem], progress: Callable[[int], None] | None = None,
                 objective: str = "note", separated: bool = False):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
        self.items = items
        self.objective = objective
        self.separated = separated
        self.trials: dict[DecoderSettings, Trial] = {}
        self.progress = progress

    def run(self, candidates: Iterable[DecoderSettings]) -> Trial:
        """Score the new candidates; returns the best trial so far."""
        for settings in candidates:
            if settings not in self.trials:
                self.trials[settings] = evaluate(self.items, settings, self.objective, self.separated)
                if self.progress is not None:
                    self.progress(len(self.trials))
        return self.best()

    def best(self) -> Trial:
        """The highest objective so far (the first scored wins a tie)."""
        return max(self.trials.values(), key=lambda trial: trial.objective)

    def ranked(self) -> list[Trial]:
        """All trials, best first (ties in scoring order)."""
        return sorted(self.trials.values(), key=lambda trial: trial.objective, reverse=True)


def refine_space(best: DecoderSettings, tried: Mapping[str, Iterable[float]]) -> dict[str, list[float]]:
    """For each setting, its value in ``best`` and the midpoints towards the nearest ``tried``
    values below and above it: each call halves the spacing around the best."""
    space = {}
    for name, values in tried.items():
        value = getattr(best, name)
        below = [v for v in values if v < value]
        above = [v for v in values if v > value]
        neighbours = ([max(below)] if below else []) + ([min(above)] if above else [])
        space[name] = sorted({value, *(round((value + v) / 2, 4) for v in neighbours)})
    return space


def tried_values(search: Search, names: Iterable[str]) -> dict[str, list]:
    """The distinct values of each named setting among the scored settings, sorted."""
    return {name: sorted({getattr(s, name) for s in search.trials}) for name in names}


def _can_extend(settings: DecoderSettings, name: str, value, step) -> bool:
    """Whether DecoderSettings allows ``value + step`` for ``name`` (a threshold beyond 0 or 1, or
    a negative count or length, is not a range that could be widened)."""
    return bool(grid(settings, {name: (value + step,)}))


def edge_settings(search: Search, names: Iterable[str]) -> list[str]:
    """Named numeric settings for which only the smallest or only the largest value tried reaches
    the best objective, where a value beyond it is allowed: the optimum may lie outside the
    searched range. (Ties are common: a value that changes no decoded note scores the same, and
    the first one scored is kept.)"""
    best = search.best()
    edges = []
    for name, values in tried_values(search, names).items():
        if len(values) < 2 or isinstance(values[0], bool):
            continue
        winners = {getattr(t.settings, name) for t in search.trials.values() if t.objective == best.objective}
        low = winners == {values[0]} and _can_extend(best.settings, name, values[0], values[0] - values[1])
        high = winners == {values[-1]} and _can_extend(best.settings, name, values[-1], values[-1] - values[-2])
        if low or high:
            edges.append(name)
    return edges


def coordinate_descent(search: Search, lines: Mapping[str, Iterable], max_rounds: int = MAX_ROUNDS) -> Trial:
    """Sweep each setting alone over its ``lines`` values from the best so far, one after the
    other, round after round until a round leaves the best unchanged; returns the best trial."""
    for _ in range(max_rounds):
        start = search.best().settings
        for name, values in lines.items():
            search.run(grid(search.best().settings, {name: values}))
        if search.best().settings == start:
            break
    return search.best()


def tune(
    search: Search,
    base: DecoderSettings = DecoderSettings(),
    coarse: Mapping[str, Iterable] = COARSE_GRID,
    secondary: Mapping[str, Iterable] = SECONDARY_SWEEPS,
) -> Trial:
    """Coarse grid; coordinate descent over all settings; grids at half and a quarter of the
    coarse spacing around the best; coordinate descent again. Returns the best trial."""
    lines = {**coarse, **secondary}
    search.run([base, *grid(base, coarse)])
    coordinate_descent(search, lines)
    for _ in range(2):
        best = search.best().settings
        search.run(grid(best, refine_space(best, tried_values(search, coarse))))
    return coordinate_descent(search, lines)


def describe(settings: DecoderSettings, names: Sequence[str]) -> str:
    """``name=value`` of the given settings, for tables."""
    return " ".join(f"{name}={getattr(settings, name)}" for name in names)
