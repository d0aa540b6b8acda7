"""Decoder tests on hand-built activation maps (DESIGN.md §5)."""
import dataclasses
import subprocess
import sys
import tracemalloc

import mir_eval
import numpy as np
import pytest

from timbrescribe.constants import MIDI_MIN, N_PITCHES, frame_to_time
from timbrescribe import decode
from timbrescribe.decode import DecoderSettings, decode_notes

ONLY_PEAKS = DecoderSettings(infer_onsets=False, leftover_notes=False)


def empty_maps(n_frames=200):
    """All-zero onset and frame maps."""
    return np.zeros((N_PITCHES, n_frames), np.float32), np.zeros((N_PITCHES, n_frames), np.float32)


def add_note(onset, frame, row, start, end, level=0.9):
    """Idealised activations of a note over frames [start, end): frame map at level, onset peak
    at level on the first frame with 0.5 on its neighbours."""
    frame[row, start:end] = level
    onset[row, start] = level
    for side in (start - 1, start + 1):
        if 0 <= side < onset.shape[1]:
            onset[row, side] = max(onset[row, side], 0.5)


def spans(notes):
    """(pitch row, start frame, end frame) of each note, frames rounded from the note times."""
    hop = frame_to_time(1)
    return [(n.pitch - MIDI_MIN, round(n.onset / hop), round(n.offset / hop)) for n in notes]


def test_clean_note_has_exact_times_and_pitch():
    onset, frame = empty_maps()
    add_note(onset, frame, 40, 20, 50)
    (note,) = decode_notes(onset, frame)
    assert note.pitch == MIDI_MIN + 40
    assert note.onset == pytest.approx(frame_to_time(20), abs=1e-9)
    assert note.offset == pytest.approx(frame_to_time(50), abs=1e-9)


def test_onset_peak_inside_sustained_span_splits_the_note():
    onset, frame = empty_maps()
    add_note(onset, frame, 30, 20, 50)
    add_note(onset, frame, 30, 50, 80)
    assert spans(decode_notes(onset, frame)) == [(30, 20, 50), (30, 50, 80)]


def test_repeated_onsets_give_one_note_each():
    onset, frame = empty_maps()
    for start in (10, 40, 70, 100):  # four notes sounding without a gap
        add_note(onset, frame, 12, start, start + 30)
    for start in (140, 160, 180):  # three notes with 8-frame gaps
        add_note(onset, frame, 12, start, start + 12)
    assert [s[1] for s in spans(decode_notes(onset, frame))] == [10, 40, 70, 100, 140, 160, 180]


def test_lowest_and_highest_pitch_at_first_and_last_frame():
    onset, frame = empty_maps(100)
    add_note(onset, frame, 0, 0, 30)
    add_note(onset, frame, N_PITCHES - 1, 70, 100)
    notes = decode_notes(onset, frame, ONLY_PEAKS)
    assert [(n.pitch, n.onset, n.offset) for n in notes] == [
        (24, 0.0, pytest.approx(frame_to_time(30))),
        (107, pytest.approx(frame_to_time(70)), pytest.approx(frame_to_time(100))),
    ]


def test_onset_peak_on_the_last_frame():
    onset, frame = empty_maps(100)
    onset[5, 99] = 0.9
    frame[5, 99] = 0.9
    settings = DecoderSettings(min_note_ms=0, infer_onsets=False, leftover_notes=False)
    assert spans(decode_notes(onset, frame, settings)) == [(5, 99, 100)]


def test_onset_plateau_starts_one_note_at_its_first_frame():
    onset, frame = empty_maps()
    add_note(onset, frame, 50, 20, 60)
    onset[50, 21] = 0.9
    settings = DecoderSettings(min_note_ms=0, infer_onsets=False, leftover_notes=False)
    assert spans(decode_notes(onset, frame, settings)) == [(50, 20, 60)]


@pytest.mark.parametrize("dip_frames", [1, 2])
def test_dip_up_to_max_dip_frames_keeps_one_note(dip_frames):
    onset, frame = empty_maps()
    add_note(onset, frame, 33, 20, 80)
    frame[33, 40 : 40 + dip_frames] = 0.1
    assert spans(decode_notes(onset, frame, DecoderSettings(max_dip_frames=2))) == [(33, 20, 80)]


def test_longer_dip_ends_the_note():
    """Past max_dip_frames the note ends at the dip; the energy after it is a second note when an
    onset is inferred from the rise (or a leftover note), and nothing when both are off."""
    onset, frame = empty_maps()
    add_note(onset, frame, 33, 20, 80)
    frame[33, 40:43] = 0.1
    assert spans(decode_notes(onset, frame, DecoderSettings(max_dip_frames=2))) == [
        (33, 20, 40),
        (33, 43, 80),
    ]
    settings = DecoderSettings(max_dip_frames=2, infer_onsets=False, leftover_notes=False)
    assert spans(decode_notes(onset, frame, settings)) == [(33, 20, 40)]


@pytest.mark.parametrize("from_onset_peaks", [True, False])
def test_notes_shorter_than_min_note_ms_are_dropped(from_onset_peaks):
    onset, frame = empty_maps()
    add_note(onset, frame, 10, 20, 27)  # 7 frames = 81 ms
    add_note(onset, frame, 11, 20, 28)  # 8 frames = 93 ms
    if not from_onset_peaks:
        onset[:] = 0
    settings = dict(infer_onsets=False, leftover_notes=not from_onset_peaks)
    assert spans(decode_notes(onset, frame, DecoderSettings(min_note_ms=90, **settings))) == [
        (11, 20, 28)
    ]
    assert len(decode_notes(onset, frame, DecoderSettings(min_note_ms=82, **settings))) == 1
    assert len(decode_notes(onset, frame, DecoderSettings(min_note_ms=80, **settings))) == 2


def test_peaks_are_picked_along_time_so_adjacent_pitches_both_sound():
    onset, frame = empty_maps()
    add_note(onset, frame, 40, 20, 60, level=0.9)
    add_note(onset, frame, 41, 20, 60, level=0.8)  # weaker: lost by pitch-axis peaks
    add_note(onset, frame, 0, 30, 60, level=0.6)  # bottom edge row
    add_note(onset, frame, 1, 30, 60, level=0.9)
    assert spans(decode_notes(onset, frame, ONLY_PEAKS)) == [
        (40, 20, 60),
        (41, 20, 60),
        (0, 30, 60),
        (1, 30, 60),
    ]


def test_onset_inferred_from_a_sharp_frame_rise():
    onset, frame = empty_maps()
    frame[20, 30:70] = 0.9
    frame[21, 30:70] = 0.9
    frame[21, 29:31] = [0.2, 0.35]  # the rise spans two frames, the run starts at frame 30
    assert spans(decode_notes(onset, frame, DecoderSettings(leftover_notes=False))) == [
        (20, 30, 70),
        (21, 30, 70),
    ]
    assert decode_notes(onset, frame, ONLY_PEAKS) == []


def test_no_onset_inferred_from_a_slow_rise():
    onset, frame = empty_maps()
    frame[20, 30:70] = np.linspace(0.05, 0.9, 40)
    assert decode_notes(onset, frame, DecoderSettings(leftover_notes=False)) == []


def test_no_inferred_onset_next_to_an_onset_peak():
    onset, frame = empty_maps()
    frame[20, 30:70] = 0.9
    onset[20, 32] = 0.9  # the onset map peaks two frames after the frame map rises
    settings = DecoderSettings(leftover_notes=False, min_note_ms=0)
    assert spans(decode_notes(onset, frame, settings)) == [(20, 32, 70)]


def test_leftover_energy_becomes_a_note_only_when_strong():
    onset, frame = empty_maps()
    frame[60, 30:70] = 0.9
    frame[61, 30:70] = 0.4  # above frame_threshold, below leftover_threshold
    add_note(onset, frame, 62, 30, 70)  # covered by an onset note: not decoded twice
    settings = DecoderSettings(infer_onsets=False, leftover_threshold=0.5)
    assert spans(decode_notes(onset, frame, settings)) == [(60, 30, 70), (62, 30, 70)]
    assert spans(decode_notes(onset, frame, ONLY_PEAKS)) == [(62, 30, 70)]


def chord_with_a_fading_note(n_chord):
    """Maps of a chord of n_chord notes over frames [20, 100) whose lowest note fades to 0.15 at
    frame 50, and of a lone note (frames [150, 230), row 70) fading the same way at frame 180."""
    onset, frame = empty_maps(260)
    for row in range(10, 10 + 4 * n_chord, 4):
        add_note(onset, frame, row, 20, 100)
    frame[10, 50:100] = 0.15
    add_note(onset, frame, 70, 150, 230)
    frame[70, 180:230] = 0.15
    return onset, frame


@pytest.mark.parametrize("dense_polyphony, fading_end", [(0, 50), (3, 100), (4, 50)])
def test_a_fading_note_lasts_while_enough_other_pitches_sound(dense_polyphony, fading_end):
    """4-note chord: in frames 50-99 three pitches reach the frame threshold, so with the rule
    at 3 the fading note lasts to the chord's end; at 4 (or off) it ends where it fades."""
    settings = dataclasses.replace(ONLY_PEAKS, frame_threshold=0.2, dense_polyphony=dense_polyphony,
                                   dense_frame_threshold=0.1)
    found = spans(decode_notes(*chord_with_a_fading_note(4), settings))
    assert (10, 20, fading_end) in found
    assert (70, 150, 180) in found  # a lone fading note is never dense
    assert {(row, 20, 100) for row in (14, 18, 22)} <= set(found) and len(found) == 5


def test_dense_frames_need_the_frame_threshold_not_the_dense_one():
    """In frames 50-99 the other three notes sit at 0.15: above the dense threshold but below the
    frame threshold, so they make no frame dense and every note ends at 50."""
    onset, frame = chord_with_a_fading_note(4)
    frame[14:23, 50:100] = np.where(frame[14:23, 50:100] > 0, 0.15, 0.0)
    settings = dataclasses.replace(ONLY_PEAKS, frame_threshold=0.2, dense_polyphony=1,
                                   dense_frame_threshold=0.1)
    assert [s[2] for s in spans(decode_notes(onset, frame, settings)) if s[1] == 20] == [50] * 4


def test_dense_ends_extend_notes_found_without_the_rule_up_to_the_next_note_of_their_pitch():
    """As the separated transcription applies the rule (after clustering): the notes decoded with
    it off keep their onsets, pitches, velocities and order; only the fading chord note runs on,
    to the start of the next note at its pitch (frame 80), not to the chord's end."""
    onset, frame = chord_with_a_fading_note(4)
    add_note(onset, frame, 10, 80, 100)
    settings = dataclasses.replace(ONLY_PEAKS, frame_threshold=0.2, dense_polyphony=3, dense_frame_threshold=0.1)
    found = decode_notes(onset, frame, settings.without_dense_rule())
    assert (10, 20, 50) in spans(found) and (10, 80, 100) in spans(found)
    extended = decode.dense_ends(found, frame, settings)
    assert [(n.onset, n.pitch, n.velocity) for n in extended] == [(n.onset, n.pitch, n.velocity) for n in found]
    assert set(spans(extended)) - set(spans(found)) == {(10, 20, 80)}
    assert decode.dense_ends(found, frame, settings.without_dense_rule()) == found


@pytest.mark.parametrize("rows_per_block", [1, 7])
def test_dense_ends_in_blocks_of_pitch_rows_are_the_same(monkeypatch, rows_per_block):
    n_frames = 4000
    onset, frame = noisy_maps(n_frames, seed=5)
    settings = DecoderSettings(min_note_ms=30, dense_polyphony=38, dense_frame_threshold=0.1)
    found = decode_notes(onset, frame, settings.without_dense_rule())
    monkeypatch.setattr(decode, "BLOCK_CELLS", N_PITCHES * n_frames)
    whole = decode.dense_ends(found, frame, settings)
    assert sum(a.offset > b.offset for a, b in zip(whole, found)) > 100
    assert all(a.offset >= b.offset and a.onset == b.onset for a, b in zip(whole, found))
    monkeypatch.setattr(decode, "BLOCK_CELLS", rows_per_block * n_frames)
    assert decode.dense_ends(found, frame, settings) == whole


def test_empty_maps_give_no_notes():
    assert decode_notes(*empty_maps()) == []
    assert decode_notes(*empty_maps(0)) == []


def test_maps_of_the_wrong_shape_are_rejected():
    onset, frame = empty_maps()
    with pytest.raises(ValueError):
        decode_notes(onset.T, frame.T)
    with pytest.raises(ValueError):
        decode_notes(onset, frame[:, :-1])


@pytest.mark.parametrize("bad_value", [np.nan, -0.5, 3.0])
def test_activations_outside_zero_one_are_rejected(bad_value):
    onset, frame = empty_maps()
    frame[3, 50] = bad_value
    with pytest.raises(ValueError):
        decode_notes(onset, frame)


def test_decoder_does_not_import_torch():
    code = "import sys, timbrescribe.decode; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_velocity_grows_with_activation():
    onset, frame = empty_maps()
    levels = [0.35, 0.5, 0.7, 0.9, 1.0]
    for row, level in enumerate(levels):
        add_note(onset, frame, row, 20, 60, level=max(level, 0.6))
        frame[row, 20:60] = level
    velocities = [n.velocity for n in sorted(decode_notes(onset, frame), key=lambda n: n.pitch)]
    assert velocities == [round(127 * level) for level in levels]
    assert all(np.diff(velocities) > 0)


def test_random_notes_round_trip():
    rng = np.random.default_rng(7)
    n_frames = 3000
    onset, frame = empty_maps(n_frames)
    reference = []
    for row in rng.choice(N_PITCHES, size=40, replace=False):
        start = int(rng.integers(0, 40))
        while True:
            end = start + int(rng.integers(8, 80))
            if end > n_frames:
                break
            add_note(onset, frame, row, start, end, level=float(rng.uniform(0.6, 1.0)))
            reference.append((int(row), start, end))
            start = end + int(rng.choice([0, 0, 4, 20, 100]))  # back to back or apart
    notes = decode_notes(onset, frame)
    assert sorted(spans(notes)) == sorted(reference)

    ref_intervals = np.array([[frame_to_time(s), frame_to_time(e)] for _, s, e in reference])
    ref_hz = mir_eval.util.midi_to_hz(np.array([MIDI_MIN + r for r, _, _ in reference]))
    est_intervals = np.array([[n.onset, n.offset] for n in notes])
    est_hz = mir_eval.util.midi_to_hz(np.array([n.pitch for n in notes]))
    _, _, f_measure, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals, ref_hz, est_intervals, est_hz, onset_tolerance=0.05, offset_ratio=None
    )
    assert f_measure == 1.0


def test_notes_are_sorted_by_onset_then_pitch():
    onset, frame = empty_maps()
    add_note(onset, frame, 50, 40, 80)
    add_note(onset, frame, 20, 40, 80)
    add_note(onset, frame, 70, 10, 80)
    keys = [(n.onset, n.pitch) for n in decode_notes(onset, frame)]
    assert keys == sorted(keys) and len(keys) == 3


def test_settings_round_trip_through_json(tmp_path):
    tuned = DecoderSettings(onset_threshold=0.42, max_dip_frames=3, leftover_notes=False)
    tuned.to_json(tmp_path / "decoder.json")
    assert DecoderSettings.from_json(tmp_path / "decoder.json") == tuned
    assert DecoderSettings.from_dict({"frame_threshold": 0.25}).frame_threshold == 0.25


@pytest.mark.parametrize(
    "values", [{"onset_treshold": 0.4}, {"frame_threshold": 1.5}, {"max_dip_frames": -1},
               {"dense_polyphony": -1}, {"dense_frame_threshold": 1.2}]
)
def test_bad_settings_are_rejected(values):
    with pytest.raises(ValueError):
        DecoderSettings.from_dict(values)


def noisy_maps(n_frames, seed):
    """Random maps on which every rule fires many times: onset peaks and plateaus, runs with dips,
    sharp and slow rises, weak and strong leftovers."""
    rng = np.random.default_rng(seed)
    onset = rng.uniform(0, 1, (N_PITCHES, n_frames)) ** 6
    frame = np.repeat(rng.uniform(0, 1, (N_PITCHES, n_frames // 4)) ** 2, 4, axis=1)
    return onset.astype(np.float32), frame.astype(np.float32)


@pytest.mark.parametrize("dense_polyphony", [0, 38])  # the dense rule counts over all rows
@pytest.mark.parametrize("rows_per_block", [1, 5, 83])
def test_decoding_in_blocks_of_pitch_rows_gives_the_same_notes(monkeypatch, rows_per_block, dense_polyphony):
    n_frames = 20000
    onset, frame = noisy_maps(n_frames, seed=3)
    settings = DecoderSettings(min_note_ms=30, dense_polyphony=dense_polyphony, dense_frame_threshold=0.1)
    monkeypatch.setattr(decode, "BLOCK_CELLS", N_PITCHES * n_frames)  # one block of all rows
    whole = decode_notes(onset, frame, settings)
    if dense_polyphony:  # about half the frames are dense: the rule changes many notes
        plain = decode_notes(onset, frame, DecoderSettings(min_note_ms=30))
        assert len(set(whole) ^ set(plain)) > 1000
    monkeypatch.setattr(decode, "BLOCK_CELLS", rows_per_block * n_frames)
    assert decode_notes(onset, frame, settings) == whole
    assert len(whole) > 20000 and len({n.pitch for n in whole}) == N_PITCHES


def test_decoding_a_long_file_needs_little_memory_beyond_the_maps():
    n_frames = 310_000  # one hour
    onset, frame = empty_maps(n_frames)
    for row, start in zip(range(0, N_PITCHES, 3), range(1000, n_frames, 10_000)):
        add_note(onset, frame, row, start, start + 5000)
    tracemalloc.start()
    try:
        notes = decode_notes(onset, frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(notes) == 28
    assert peak < 30e6  # bytes; all rows at once would take about 500 MB
