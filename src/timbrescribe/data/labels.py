"""Piano-roll targets from performed notes, on the model's frame grid (frame k centred on sample
k*HOP, see constants).

onset: 1 at the frame nearest each note's onset (the note's first frame).
frame: 1 from that frame up to, not including, the frame nearest the offset; at least the onset
frame (sustain OR onset). Pitches outside MIDI_MIN..MIDI_MAX are dropped.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from timbrescribe.constants import HOP, MIDI_MIN, N_PITCHES, SAMPLE_RATE
from timbrescribe.notes import Note


def note_frames(onsets: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first frame, end frame exclusive) of each note; same rounding as constants.time_to_frame."""
    start = np.round(np.asarray(onsets, dtype=np.float64) * SAMPLE_RATE / HOP).astype(np.int64)
    end = np.round(np.asarray(offsets, dtype=np.float64) * SAMPLE_RATE / HOP).astype(np.int64)
    return start, np.maximum(end, start + 1)


def piano_rolls_from_arrays(
    onsets: np.ndarray,
    offsets: np.ndarray,
    pitches: np.ndarray,
    n_frames: int,
    first_frame: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(onset, frame) float32 rolls of shape (N_PITCHES, n_frames) for frames first_frame.. of the
    notes given as arrays of onset/offset seconds and MIDI pitches.

    A note that starts before ``first_frame`` has no onset in the window but keeps its sustain.
    """
    onset_roll = np.zeros((N_PITCHES, n_frames), np.float32)
    frame_roll = np.zeros((N_PITCHES, n_frames), np.float32)
    start, end = note_frames(onsets, offsets)
    start, end = start - first_frame, end - first_frame
    rows = np.asarray(pitches, dtype=np.int64) - MIDI_MIN
    for row, a, b in zip(rows, start, end):
        if not 0 <= row < N_PITCHES or b <= 0 or a >= n_frames:
            continue
        if a >= 0:
            onset_roll[row, a] = 1.0
        frame_roll[row, max(a, 0) : min(b, n_frames)] = 1.0
    return onset_roll, frame_roll


def piano_rolls(notes: Iterable[Note], n_frames: int, first_frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(onset, frame) rolls (N_PITCHES, n_frames) of ``notes``; see piano_rolls_from_arrays."""
    notes = list(notes)
    return piano_rolls_from_arrays(
        np.array([n.onset for n in notes]), np.array([n.offset for n in notes]),
        np.array([n.pitch for n in notes]), n_frames, first_frame,
    )
