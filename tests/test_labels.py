"""Piano-roll targets from hand-made notes: exact frames."""
import numpy as np
import pytest

from timbrescribe.constants import HOP, MIDI_MIN, N_PITCHES, SAMPLE_RATE, frame_to_time, time_to_frame
from timbrescribe.data.labels import piano_rolls, piano_rolls_from_arrays
from timbrescribe.notes import Note


def at(frame: float) -> float:
    return frame_to_time(frame)


def test_note_on_frame_grid_gives_exact_onset_and_sustain():
    onset, frame = piano_rolls([Note(at(10), at(20), 60)], n_frames=40)
    row = 60 - MIDI_MIN
    assert onset.shape == frame.shape == (N_PITCHES, 40)
    assert onset.dtype == frame.dtype == np.float32
    assert np.flatnonzero(onset[row]).tolist() == [10]
    assert np.flatnonzero(frame[row]).tolist() == list(range(10, 20))
    assert onset.sum() == 1 and frame.sum() == 10


def test_times_round_to_the_nearest_frame_centre():
    # 10.4 frames rounds to 10, 10.6 to 11; offsets the same way (end exclusive)
    onset, frame = piano_rolls([Note(at(10.4), at(14.6), 50), Note(at(20.6), at(24.4), 51)], n_frames=30)
    assert np.flatnonzero(onset[50 - MIDI_MIN]).tolist() == [10]
    assert np.flatnonzero(frame[50 - MIDI_MIN]).tolist() == [10, 11, 12, 13, 14]
    assert np.flatnonzero(onset[51 - MIDI_MIN]).tolist() == [21]
    assert np.flatnonzero(frame[51 - MIDI_MIN]).tolist() == [21, 22, 23]


def test_onset_frame_agrees_with_time_to_frame():
    rng = np.random.default_rng(3)
    onsets = rng.uniform(0, 5, 200)
    onset, _ = piano_rolls_from_arrays(onsets, onsets + 0.2, np.full(200, 70), n_frames=500)
    expected = sorted({time_to_frame(t) for t in onsets})
    assert np.flatnonzero(onset[70 - MIDI_MIN]).tolist() == expected


def test_very_short_note_keeps_its_onset_frame_as_sustain():
    onset, frame = piano_rolls([Note(at(5), at(5.2), 40)], n_frames=10)
    assert np.flatnonzero(frame[40 - MIDI_MIN]).tolist() == [5]
    assert np.flatnonzero(onset[40 - MIDI_MIN]).tolist() == [5]


def test_pitches_outside_the_range_are_dropped():
    notes = [Note(0.1, 0.5, MIDI_MIN - 1), Note(0.1, 0.5, MIDI_MIN + N_PITCHES), Note(0.1, 0.5, MIDI_MIN)]
    onset, frame = piano_rolls(notes, n_frames=100)
    assert onset.sum() == 1 and onset[0].sum() == 1
    assert frame[1:].sum() == 0


def test_window_cuts_notes_and_drops_onsets_before_it():
    notes = [Note(at(2), at(12), 60), Note(at(8), at(30), 62), Note(at(25), at(26), 64)]
    onset, frame = piano_rolls(notes, n_frames=10, first_frame=5)
    # note 1 started before the window: sustain only, frames 5..11 -> 0..6
    assert onset[60 - MIDI_MIN].sum() == 0
    assert np.flatnonzero(frame[60 - MIDI_MIN]).tolist() == list(range(0, 7))
    # note 2 starts inside (frame 8 -> 3) and runs past the window end
    assert np.flatnonzero(onset[62 - MIDI_MIN]).tolist() == [3]
    assert np.flatnonzero(frame[62 - MIDI_MIN]).tolist() == list(range(3, 10))
    # note 3 lies after the window
    assert frame[64 - MIDI_MIN].sum() == 0 and onset[64 - MIDI_MIN].sum() == 0


def test_window_equals_slice_of_full_rolls():
    rng = np.random.default_rng(0)
    onsets = rng.uniform(0, 9, 60)
    offsets = onsets + rng.uniform(0.02, 2, 60)
    pitches = rng.integers(MIDI_MIN, MIDI_MIN + N_PITCHES, 60)
    full_onset, full_frame = piano_rolls_from_arrays(onsets, offsets, pitches, n_frames=1000)
    part_onset, part_frame = piano_rolls_from_arrays(onsets, offsets, pitches, n_frames=300, first_frame=217)
    np.testing.assert_array_equal(part_frame, full_frame[:, 217:517])
    np.testing.assert_array_equal(part_onset, full_onset[:, 217:517])


def test_empty_note_list_gives_zero_rolls():
    onset, frame = piano_rolls([], n_frames=7)
    assert onset.shape == (N_PITCHES, 7) and not onset.any() and not frame.any()


@pytest.mark.parametrize("frame_index", [0, 1, 99])
def test_frame_grid_is_hop_samples(frame_index):
    onset, _ = piano_rolls([Note(frame_index * HOP / SAMPLE_RATE, 10.0, 69)], n_frames=100)
    assert np.flatnonzero(onset[69 - MIDI_MIN]).tolist() == [frame_index]
