"""Transcription scores (DESIGN.md §7): notes with mir_eval, frames counted on piano rolls (the
same figures as mir_eval's multipitch metric, see frame_scores).

Three metrics, each as precision / recall / F-measure:

* ``frame``: multipitch on the model's 11.61 ms frame grid (HOP / SAMPLE_RATE). A note sounds in
  frame k when onset <= k * period < offset; a pitch counts once per frame however many notes hold it.
* ``note``: note onset within 50 ms and same pitch, offsets ignored.
* ``note_offset``: as ``note``, and the offset within max(50 ms, 20 % of the reference duration).

Empty input: when the reference or the estimate has no notes, every score is 0 (mir_eval's
convention for notes, applied to frames too), including when both are empty. The same holds for
the frame metric when one side has notes but none covers a grid point (all shorter than a frame).

Separated scoring matches predicted tracks to reference parts one to one, maximising the summed
note (onset-only) F-measure with the Hungarian method; a part left without a track scores 0, a
track left without a part is reported as unmatched and lowers no score itself (its notes do count
in the timbre-agnostic scores).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from timbrescribe.constants import HOP, SAMPLE_RATE
from timbrescribe.notes import Note, Track

FRAME_PERIOD = HOP / SAMPLE_RATE  # seconds, 11.61 ms
ONSET_TOLERANCE = 0.05  # seconds
OFFSET_RATIO = 0.2  # of the reference note's duration
OFFSET_MIN_TOLERANCE = 0.05  # seconds
PITCH_TOLERANCE_CENTS = 50.0

METRIC_SETTINGS = {
    "frame_period_s": FRAME_PERIOD,
    "onset_tolerance_s": ONSET_TOLERANCE,
    "offset_ratio": OFFSET_RATIO,
    "offset_min_tolerance_s": OFFSET_MIN_TOLERANCE,
    "pitch_tolerance_cents": PITCH_TOLERANCE_CENTS,
    "track_matching": "Hungarian assignment maximising note (onset-only) F per part",
}


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F-measure, each in [0, 1]."""

    precision: float
    recall: float
    f: float


ZERO = PRF(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Scores:
    """The three metrics of one reference/estimate pair."""

    frame: PRF
    note: PRF
    note_offset: PRF

    def as_dict(self) -> dict:
        return asdict(self)


ZERO_SCORES = Scores(ZERO, ZERO, ZERO)


@dataclass(frozen=True)
class PartScore:
    """One reference part in separated scoring and the predicted track it was matched to."""

    part: str
    track: str | None  # None: no predicted track was left for this part
    scores: Scores


@dataclass(frozen=True)
class SeparatedScores:
    """Per-part scores, their mean over reference parts, the predicted tracks left unmatched, and
    ``all_notes``: note onset P/R/F over every note at once, a predicted note counting as right only
    when it matches a note of the part its track was assigned to. Unlike the mean over parts, this
    charges the notes of unmatched tracks as false positives, so splitting an instrument into extra
    tracks cannot raise it."""

    parts: list[PartScore]
    mean: Scores
    unmatched_tracks: list[str]
    all_notes: PRF

    def as_dict(self) -> dict:
        return {
            "mean": self.mean.as_dict(),
            "all_notes": asdict(self.all_notes),
            "parts": [
                {"part": p.part, "track": p.track, "scores": p.scores.as_dict()} for p in self.parts
            ],
            "unmatched_tracks": self.unmatched_tracks,
        }


def _midi_to_hz(pitches: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitches, dtype=float) - 69.0) / 12.0)


def _note_arrays(notes: Sequence[Note]) -> tuple[np.ndarray, np.ndarray]:
    intervals = np.array([(n.onset, n.offset) for n in notes], dtype=float).reshape(-1, 2)
    return intervals, _midi_to_hz([n.pitch for n in notes])


def note_scores(reference: Sequence[Note], estimate: Sequence[Note], with_offsets: bool) -> PRF:
    """Note-level P/R/F: onset within 50 ms and same pitch; with offsets also the offset rule."""
    import mir_eval

    if not reference or not estimate:
        return ZERO
    ref_intervals, ref_hz = _note_arrays(reference)
    est_intervals, est_hz = _note_arrays(estimate)
    precision, recall, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals,
        ref_hz,
        est_intervals,
        est_hz,
        onset_tolerance=ONSET_TOLERANCE,
        pitch_tolerance=PITCH_TOLERANCE_CENTS,
        offset_ratio=OFFSET_RATIO if with_offsets else None,
        offset_min_tolerance=OFFSET_MIN_TOLERANCE,
    )
    return PRF(float(precision), float(recall), float(f))


def note_frames(note: Note) -> tuple[int, int]:
    """First frame at or after the note's onset and first at or after its offset, on the grid
    k * FRAME_PERIOD: the note sounds in frames [first, end)."""
    return int(np.ceil(note.onset / FRAME_PERIOD - 1e-9)), int(np.ceil(note.offset / FRAME_PERIOD - 1e-9))


def frame_roll(notes: Sequence[Note], n_frames: int) -> np.ndarray:
    """(128, n_frames) bool: MIDI pitch p sounds in frame k of the grid k * FRAME_PERIOD."""
    roll = np.zeros((128, n_frames), dtype=bool)
    for note in notes:
        first, end = note_frames(note)
        roll[note.pitch, max(first, 0) : min(end, n_frames)] = True
    return roll


def frame_scores(reference: Sequence[Note], estimate: Sequence[Note]) -> PRF:
    """Frame-level multipitch P/R/F on the FRAME_PERIOD grid covering both note lists. A side
    without any sounding frame (no notes, or notes too short to cover a grid point) scores 0.

    Counted on piano rolls: mir_eval.multipitch gives the same figures here (its pitch tolerance,
    half a semitone, matches only equal MIDI pitches, and both grids are the same; the tests check
    it) but takes about a second per 30 s of music, which decoder tuning cannot afford."""
    if not reference or not estimate:
        return ZERO
    last_offset = max(n.offset for n in (*reference, *estimate))
    n_frames = int(np.ceil(last_offset / FRAME_PERIOD)) + 1
    ref_roll, est_roll = frame_roll(reference, n_frames), frame_roll(estimate, n_frames)
    n_ref, n_est = int(ref_roll.sum()), int(est_roll.sum())
    if not n_ref or not n_est:
        return ZERO
    hits = int(np.count_nonzero(ref_roll & est_roll))
    precision, recall = hits / n_est, hits / n_ref
    return PRF(precision, recall, 2 * hits / (n_est + n_ref))


def score_notes(reference: Sequence[Note], estimate: Sequence[Note]) -> Scores:
    """All three metrics for one reference/estimate pair."""
    return Scores(
        frame=frame_scores(reference, estimate),
        note=note_scores(reference, estimate, with_offsets=False),
        note_offset=note_scores(reference, estimate, with_offsets=True),
    )


def score_agnostic(parts: Mapping[str, Sequence[Note]], tracks: Sequence[Track]) -> Scores:
    """Timbre-agnostic scores: all reference parts merged against all predicted notes merged."""
    reference = [note for notes in parts.values() for note in notes]
    estimate = [note for track in tracks for note in track.notes]
    return score_notes(reference, estimate)


def score_separated(parts: Mapping[str, Sequence[Note]], tracks: Sequence[Track]) -> SeparatedScores:
    """Match tracks to parts by the best assignment on note F, score each part, average over parts."""
    from scipy.optimize import linear_sum_assignment

    names = list(parts)
    gain = np.array(
        [[note_scores(parts[name], track.notes, with_offsets=False).f for track in tracks] for name in names]
    ).reshape(len(names), len(tracks))
    rows, cols = linear_sum_assignment(gain, maximize=True)
    track_of_part = {i: tracks[j] for i, j in zip(rows.tolist(), cols.tolist())}
    part_scores = [
        PartScore(name, track_of_part[i].name, score_notes(parts[name], track_of_part[i].notes))
        if i in track_of_part
        else PartScore(name, None, ZERO_SCORES)
        for i, name in enumerate(names)
    ]
    matched = set(cols.tolist())
    unmatched = [track.name for j, track in enumerate(tracks) if j not in matched]
    n_reference = sum(len(notes) for notes in parts.values())
    n_predicted = sum(len(track.notes) for track in tracks)
    hits = sum(p.scores.note.recall * len(parts[p.part]) for p in part_scores)
    precision, recall = hits / max(n_predicted, 1), hits / max(n_reference, 1)
    all_notes = PRF(precision, recall, 2 * precision * recall / (precision + recall) if hits else 0.0)
    return SeparatedScores(part_scores, mean_scores([p.scores for p in part_scores]), unmatched, all_notes)


def mean_scores(all_scores: Sequence[Scores]) -> Scores:
    """Macro average: each of P, R and F averaged separately over the items (0 for no items)."""
    if not all_scores:
        return ZERO_SCORES

    def mean_prf(metric: str) -> PRF:
        values = [getattr(s, metric) for s in all_scores]
        return PRF(*(float(np.mean([getattr(v, f.name) for v in values])) for f in fields(PRF)))

    return Scores(*(mean_prf(f.name) for f in fields(Scores)))
