"""Note decoder: onset and frame activation maps (84 x T) -> notes (DESIGN.md §5).

Row k of a map is MIDI pitch MIDI_MIN + k; column t is the frame centred at frame_to_time(t).
A decoded note spanning frames [s, e) has onset frame_to_time(s) and offset frame_to_time(e).

1. Onset candidates: per pitch, local maxima of the onset map *along time* at or above
   onset_threshold; optionally also the starts of frame-map runs that rise sharply and have no
   onset peak nearby ("inferred" onsets).
2. Each candidate starts a note that runs while the frame map stays at or above frame_threshold
   (dips of up to max_dip_frames bridged) and stops at the next candidate of the same pitch.
   In dense frames, where at least dense_polyphony pitches reach frame_threshold, a note also
   runs on while its frame map stays at or above dense_frame_threshold: in a dense chord the
   network spreads its confidence over the chord's notes, and their decaying tails fall below
   the threshold that keeps a lone note's reverb tail out.
   Notes at one pitch cannot overlap, and pitches interact only through the dense frames, which
   depend on the frame map alone; so the result does not depend on the order candidates are
   processed in: all are decoded at once, vectorised.
3. Leftover energy: frame-map runs not covered by a kept note whose peak reaches
   leftover_threshold become notes too. This equals repeatedly taking the strongest unused cell
   and extending it both ways in time, but needs no loop.
4. Notes shorter than min_note_ms are dropped. Velocity = round(127 x mean frame activation over
   the note), clipped to 1..127.

Pitches interact only through the dense frames, counted over all rows first; so the maps are then
decoded a block of pitch rows at a time: the temporaries of a long file stay bounded (BLOCK_CELLS)
and the notes are the same as from all rows at once.

numpy only: this runs on the onnxruntime inference path, without torch (or scipy).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from timbrescribe.constants import FRAME_RATE, MIDI_MIN, N_PITCHES, frame_to_time, time_to_frame
from timbrescribe.notes import Note
from timbrescribe.settings_file import JsonSettings

# Map cells (pitch rows x frames) decoded together, in whole rows: at least one row, all 84 for
# files up to 36 s. A block's temporaries take about 30 bytes per cell.
BLOCK_CELLS = 1 << 18


@dataclass(frozen=True)
class DecoderSettings(JsonSettings):
    """Thresholds and switches of decode_notes (tuned values live in a JSON file)."""

    kind = "decoder settings"

    onset_threshold: float = 0.5  # an onset-map peak must reach this to start a note
    frame_threshold: float = 0.3  # a note lasts while the frame map is at or above this
    min_note_ms: float = 90.0  # notes shorter than this are dropped
    max_dip_frames: int = 2  # frames below frame_threshold tolerated inside a note
    infer_onsets: bool = True  # also start notes at sharp rises of the frame map
    rise_threshold: float = 0.3  # rise of the frame map around a run start that counts as sharp
    inferred_onset_gap: int = 2  # no inferred onset within this many frames of an onset peak
    leftover_notes: bool = True  # turn strong frame energy not covered by notes into notes
    leftover_threshold: float = 0.5  # peak frame activation a leftover run needs to become a note
    dense_polyphony: int = 0  # pitches at or above frame_threshold that make a frame dense (0: off)
    dense_frame_threshold: float = 0.15  # in a dense frame a note also lasts while at or above this

    def __post_init__(self):
        for name in ("onset_threshold", "frame_threshold", "rise_threshold", "leftover_threshold",
                     "dense_frame_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("min_note_ms", "max_dip_frames", "inferred_onset_gap", "dense_polyphony"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def without_dense_rule(self) -> DecoderSettings:
        """These settings with the dense-frame rule off."""
        return replace(self, dense_polyphony=0)

    @property
    def min_note_frames(self) -> int:
        """Fewest frames a kept note spans."""
        return max(1, math.ceil(self.min_note_ms * FRAME_RATE / 1000.0 - 1e-9))


def decode_notes(
    onset: np.ndarray, frame: np.ndarray, settings: DecoderSettings = DecoderSettings()
) -> list[Note]:
    """Notes from onset and frame probability maps (N_PITCHES x T; float32 or float16, which is
    widened a block at a time), sorted by (onset, pitch)."""
    onset, frame = np.asarray(onset), np.asarray(frame)
    if onset.ndim != 2 or onset.shape != frame.shape or onset.shape[0] != N_PITCHES:
        raise ValueError(
            f"onset and frame maps must both be ({N_PITCHES}, T); "
            f"got {onset.shape} and {frame.shape}"
        )
    if onset.shape[1] == 0:
        return []
    for name, values in (("onset", onset), ("frame", frame)):
        if not (values.min() >= 0.0 and values.max() <= 1.0):  # also catches NaN
            raise ValueError(f"{name} activations must be probabilities in [0, 1] (logits? NaN?)")
    rows = max(1, BLOCK_CELLS // onset.shape[1])
    dense = _dense_frames(frame, settings, rows)
    blocks = [
        _decode_rows(
            onset[first : first + rows].astype(np.float32), frame[first : first + rows].astype(np.float32),
            settings, first, dense,
        )
        for first in range(0, N_PITCHES, rows)
    ]
    row, start, end, velocity = (np.concatenate(parts) for parts in zip(*blocks))
    return _to_notes(row, start, end, velocity)


def dense_ends(notes: Sequence[Note], frame: np.ndarray, settings: DecoderSettings) -> list[Note]:
    """``notes``, decoded from ``frame`` with the dense-frame rule off, each running on while the
    rule of ``settings`` keeps it sounding (dips of up to max_dip_frames bridged), never past the
    start of the next of them at its pitch. Only ends move, and only later: onsets, pitches,
    velocities and order are kept. The separated transcription applies the rule so, after the notes
    are clustered: the longer notes would overlap more, which the clustering reads (docs/training.md)."""
    if settings.dense_polyphony == 0 or not notes:
        return list(notes)
    frame = np.asarray(frame)
    row = np.array([note.pitch - MIDI_MIN for note in notes])
    start = np.array([time_to_frame(note.onset) for note in notes])
    end = np.array([time_to_frame(note.offset) for note in notes])
    rows = max(1, BLOCK_CELLS // frame.shape[1])
    dense = _dense_frames(frame, settings, rows)
    new_end = end.copy()
    for first in range(0, N_PITCHES, rows):
        block = frame[first : first + rows].astype(np.float32)
        lasting = _lasting(block >= settings.frame_threshold, block, dense, settings)
        inside = (row >= first) & (row < first + len(block))
        starts = np.zeros(block.shape, dtype=bool)
        starts[row[inside] - first, start[inside]] = True
        stop = ~_bridge_dips(lasting, settings.max_dip_frames) | starts
        new_end[inside] = _next_stop(stop, row[inside] - first, end[inside] - 1)
    return [
        Note(note.onset, frame_to_time(int(later)), note.pitch, note.velocity) if later > stopped else note
        for note, later, stopped in zip(notes, new_end, end)
    ]


def separated_notes(onset: np.ndarray, frame: np.ndarray, settings: DecoderSettings) -> list[Note]:
    """The notes a separated transcription gives (all tracks merged): decoded with the dense-frame
    rule off, then their ends extended by it (dense_ends; the clustering in between changes no note)."""
    return dense_ends(decode_notes(onset, frame, settings.without_dense_rule()), frame, settings)


def _dense_frames(frame: np.ndarray, settings: DecoderSettings, rows: int) -> np.ndarray | None:
    """Boolean (T,) map of the frames where at least dense_polyphony pitch rows of the whole frame
    map reach frame_threshold (counted ``rows`` rows at a time); None when the rule is off."""
    if settings.dense_polyphony == 0:
        return None
    count = np.zeros(frame.shape[1], dtype=np.int64)
    for first in range(0, frame.shape[0], rows):  # widened as _decode_rows widens its block
        count += (frame[first : first + rows].astype(np.float32) >= settings.frame_threshold).sum(axis=0)
    return count >= settings.dense_polyphony


def _lasting(
    active: np.ndarray, frame: np.ndarray, dense: np.ndarray | None, settings: DecoderSettings
) -> np.ndarray:
    """Cells where a started note keeps sounding: the ``active`` ones (frame map at or above
    frame_threshold) and, in dense frames, those at or above dense_frame_threshold."""
    if dense is None:
        return active
    return active | (dense & (frame >= settings.dense_frame_threshold))


def _decode_rows(
    onset: np.ndarray, frame: np.ndarray, settings: DecoderSettings, first_row: int,
    dense: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pitch row, start frame, end frame and velocity of the notes in the rows of the maps, which
    are rows first_row, first_row + 1, ... of the whole maps; ``dense`` is _dense_frames of the
    whole maps."""
    active = frame >= settings.frame_threshold
    sounding = _bridge_dips(active, settings.max_dip_frames)
    candidates = onset_peaks(onset, settings.onset_threshold)
    if settings.infer_onsets:
        candidates |= _inferred_onsets(frame, sounding, candidates, settings)

    # A candidate frame counts as sounding, so a frame map lagging the onset by a dip still joins.
    in_note = _bridge_dips(_lasting(active, frame, dense, settings) | candidates, settings.max_dip_frames)
    pitch, start = np.nonzero(candidates)
    end = _next_stop(~in_note | candidates, pitch, start)
    keep = end - start >= settings.min_note_frames
    pitch, start, end = pitch[keep], start[keep], end[keep]

    if settings.leftover_notes:
        free = sounding & ~_cover(pitch, start, end, frame.shape)
        lo_pitch, lo_start, lo_end = _runs(free)
        peak = _span_reduce(np.maximum, frame, lo_pitch, lo_start, lo_end)
        strong = (lo_end - lo_start >= settings.min_note_frames) & (
            peak >= settings.leftover_threshold
        )
        pitch = np.concatenate([pitch, lo_pitch[strong]])
        start = np.concatenate([start, lo_start[strong]])
        end = np.concatenate([end, lo_end[strong]])

    mean = _span_reduce(np.add, frame, pitch, start, end) / (end - start)
    velocity = np.clip(np.rint(127.0 * mean), 1, 127).astype(int)
    return pitch + first_row, start, end, velocity


def onset_peaks(onset: np.ndarray, threshold: float) -> np.ndarray:
    """Cells that are local maxima along time (first frame of a plateau) and reach threshold."""
    padded = np.pad(onset, ((0, 0), (1, 1)), constant_values=-np.inf)
    before, after = padded[:, :-2], padded[:, 2:]
    return (onset > before) & (onset >= after) & (onset >= threshold)


def _inferred_onsets(
    frame: np.ndarray, sounding: np.ndarray, peaks: np.ndarray, settings: DecoderSettings
) -> np.ndarray:
    """Starts of sounding runs (frame map above threshold, dips bridged) where the frame map rises
    by at least rise_threshold from the frame before the start to the higher of the start frame and
    the next one, with no onset peak of the same pitch within inferred_onset_gap frames."""
    starts = sounding & ~np.pad(sounding, ((0, 0), (1, 0)))[:, :-1]
    before = np.pad(frame, ((0, 0), (1, 0)))[:, :-1]
    after = np.pad(frame, ((0, 0), (0, 1)), mode="edge")[:, 1:]
    sharp = np.maximum(frame, after) - before >= settings.rise_threshold
    return starts & sharp & ~_near(peaks, settings.inferred_onset_gap)


def _near(mask: np.ndarray, reach: int) -> np.ndarray:
    """Cells with a True cell of their row at most ``reach`` frames away (itself included)."""
    n = mask.shape[1]
    padded = np.pad(mask, ((0, 0), (reach, reach)))  # False outside the map
    near = np.zeros_like(mask)
    for shift in range(2 * reach + 1):
        near |= padded[:, shift : shift + n]
    return near


def _bridge_dips(mask: np.ndarray, max_dip: int) -> np.ndarray:
    """mask with every False gap of at most max_dip frames between two True cells of a row set.

    A False cell lies in such a gap when some True cell sits a frames before it and another within
    max_dip + 1 - a frames after it (1 <= a <= max_dip)."""
    n = mask.shape[1]
    padded = np.pad(mask, ((0, 0), (max_dip, max_dip)))  # False outside: edge gaps stay open
    true_within_after = np.zeros_like(mask)  # after step j: a True among the j frames after each cell
    bridged = mask.copy()
    # One running map instead of one per j keeps memory flat in max_dip (long files, large dips).
    for j in range(1, max_dip + 1):
        true_within_after |= padded[:, max_dip + j : max_dip + j + n]
        a = max_dip + 1 - j
        bridged |= padded[:, max_dip - a : max_dip - a + n] & true_within_after
    return bridged


def _next_stop(stop: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """For each cell (row, col), the first column after col whose stop cell is True (T if none)."""
    width = stop.shape[1] + 1  # a True padding column ends every row
    flat_stops = np.flatnonzero(np.pad(stop, ((0, 0), (0, 1)), constant_values=True))
    cell = row * width + col
    return flat_stops[np.searchsorted(flat_stops, cell, side="right")] - row * width


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, start column and end column (exclusive) of every run of True cells."""
    edges = np.diff(np.pad(mask.view(np.int8), ((0, 0), (1, 1))), axis=1)
    row, start = np.nonzero(edges == 1)
    _, end = np.nonzero(edges == -1)  # row-major order pairs each end with its start
    return row, start, end


def _span_reduce(
    ufunc: np.ufunc, values: np.ndarray, row: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """ufunc reduced over values[row, start:end] for each non-empty span (add -> sum, ...)."""
    if len(row) == 0:
        return np.zeros(0, dtype=np.float64)
    width = values.shape[1] + 1  # one padding column keeps every end index inside the array
    flat = np.pad(values, ((0, 0), (0, 1))).ravel()
    bounds = np.stack([row * width + start, row * width + end], axis=1).ravel()
    return ufunc.reduceat(flat, bounds, dtype=np.float64)[::2]


def _cover(row: np.ndarray, start: np.ndarray, end: np.ndarray, shape: tuple) -> np.ndarray:
    """Boolean map of the cells inside the spans [start, end)."""
    length = end - start
    first_of_span = np.repeat(np.cumsum(length) - length, length)
    cell = np.repeat(row * shape[1] + start, length) + np.arange(length.sum()) - first_of_span
    covered = np.zeros(shape[0] * shape[1], dtype=bool)
    covered[cell] = True
    return covered.reshape(shape)


def _to_notes(row: np.ndarray, start: np.ndarray, end: np.ndarray, velocity: np.ndarray) -> list[Note]:
    """Notes for the spans with their velocities, sorted by (onset, pitch)."""
    order = np.lexsort((row, start))
    return [
        Note(on, off, pitch, vel)
        for on, off, pitch, vel in zip(
            frame_to_time(start[order]).tolist(),
            frame_to_time(end[order]).tolist(),
            (MIDI_MIN + row[order]).tolist(),
            velocity[order].tolist(),
        )
    ]
