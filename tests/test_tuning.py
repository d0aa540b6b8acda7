"""Decoder tuning: the search finds known thresholds on hand-built maps, sources weigh equally,
activations are cached, and transcription loads the tuned settings."""
import dataclasses
import json

import numpy as np
import pytest
import soundfile

from timbrescribe import transcription, tuning
from timbrescribe.constants import MIDI_MIN, N_PITCHES, SAMPLE_RATE, frame_to_time
from timbrescribe.decode import DecoderSettings
from timbrescribe.notes import Note

N_FRAMES = 400
NOTE_FRAMES = 12  # 139 ms
SHORT_FRAMES = 5  # 58 ms


class Maps:
    """Onset and frame maps built note by note, with the notes they should decode to."""

    def __init__(self):
        self.onset = np.zeros((N_PITCHES, N_FRAMES), np.float32)
        self.frame = np.zeros((N_PITCHES, N_FRAMES), np.float32)
        self.reference: list[Note] = []

    def add(self, row, start, frames, onset_peak, frame_level, real):
        """A note-like blob; ``real`` ones are reference notes. onset_peak 0: no onset peak."""
        self.frame[row, start : start + frames] = frame_level
        if onset_peak:
            self.onset[row, start] = onset_peak
            self.onset[row, [start - 1, start + 1]] = onset_peak / 2
        if real:
            self.reference.append(Note(frame_to_time(start), frame_to_time(start + frames), MIDI_MIN + row))
        return self

    def item(self, source="synthetic-val", name="x"):
        return tuning.TuningItem(source, name, self.onset, self.frame, list(self.reference))


def threshold_maps():
    """Decoded exactly (F = 1) only with onset threshold in (0.4, 0.6], frame threshold in
    (0.3, 0.5] and minimum length in (58, 139] ms, when inferred and leftover notes are off."""
    maps = Maps()
    for i in range(4):
        maps.add(30 + i, 20 + 60 * i, NOTE_FRAMES, 0.6, 0.5, real=True)
        maps.add(50 + i, 20 + 60 * i, NOTE_FRAMES, 0.4, 0.5, real=False)  # weak onset
        maps.add(60 + i, 20 + 60 * i, NOTE_FRAMES, 0.6, 0.3, real=False)  # weak frame support
        maps.add(70 + i, 20 + 60 * i, SHORT_FRAMES, 0.6, 0.5, real=False)  # too short
    return maps


PEAKS_ONLY = DecoderSettings(infer_onsets=False, leftover_notes=False)
SMALL_GRID = {
    "onset_threshold": (0.3, 0.5, 0.7),
    "frame_threshold": (0.2, 0.4, 0.6),
    "min_note_ms": (30.0, 90.0, 150.0),
}


def test_grid_search_finds_the_only_thresholds_that_decode_the_reference():
    items = [threshold_maps().item("synthetic-val"), threshold_maps().item("trios")]
    search = tuning.Search(items)
    best = search.run(tuning.grid(PEAKS_ONLY, SMALL_GRID))
    assert len(search.trials) == 27
    assert (best.settings.onset_threshold, best.settings.frame_threshold, best.settings.min_note_ms) == (
        0.5, 0.4, 90.0
    )
    assert best.source_f == pytest.approx({"synthetic-val": 1.0, "trios": 1.0})
    assert best.objective == pytest.approx(1.0)
    runner_up = search.ranked()[1]
    assert runner_up.objective < 0.95


def test_tune_refines_off_grid_and_sweeps_secondary_settings():
    # True onsets peak at 0.55, weak ones at 0.45: only a threshold in (0.45, 0.55] is right, and
    # neither the base nor the coarse grid (0.3, 0.7) has one. A strong frame run without an onset
    # peak becomes a spurious leftover note unless leftover notes are switched off.
    maps = Maps()
    for i in range(4):
        maps.add(30 + i, 20 + 60 * i, NOTE_FRAMES, 0.55, 0.5, real=True)
        maps.add(50 + i, 20 + 60 * i, NOTE_FRAMES, 0.45, 0.5, real=False)
    maps.add(70, 100, NOTE_FRAMES, 0.0, 0.8, real=False)
    search = tuning.Search([maps.item()])
    best = tuning.tune(
        search,
        base=dataclasses.replace(PEAKS_ONLY, onset_threshold=0.3, leftover_notes=True, leftover_threshold=0.6),
        coarse={"onset_threshold": (0.3, 0.7)},
        secondary={"leftover_notes": (True, False)},
    )
    assert best.settings.onset_threshold == pytest.approx(0.5)
    assert best.settings.leftover_notes is False
    assert best.objective == pytest.approx(1.0)


def test_sources_weigh_equally_whatever_their_file_counts():
    perfect = threshold_maps()
    missed = threshold_maps()
    missed.onset[:] = 0.0  # no onset peaks: with inferred and leftover notes off, nothing decodes
    items = [perfect.item("synthetic-val", str(i)) for i in range(3)] + [missed.item("trios")]
    trial = tuning.evaluate(items, dataclasses.replace(PEAKS_ONLY, onset_threshold=0.5, frame_threshold=0.4))
    assert trial.source_f == pytest.approx({"synthetic-val": 1.0, "trios": 0.0})
    assert trial.objective == pytest.approx(0.5)


def test_note_and_frame_objective_prefers_the_frame_threshold_that_keeps_note_lengths():
    # Each note's frame map stays at 0.6 for its first 12 frames and 0.35 for 12 more, which the
    # reference holds too: frame threshold 0.3 keeps the whole length, 0.5 halves it. Onsets, and
    # so note F, are the same either way: only the note+frame objective tells them apart.
    maps = Maps()
    for i in range(4):
        maps.add(30 + i, 20 + 80 * i, 2 * NOTE_FRAMES, 0.6, 0.35, real=True)
        maps.frame[30 + i, 20 + 80 * i : 20 + 80 * i + NOTE_FRAMES] = 0.6
    candidates = tuning.grid(PEAKS_ONLY, {"onset_threshold": (0.5,), "frame_threshold": (0.5, 0.3)})
    by_note = tuning.Search([maps.item()], objective="note")
    assert by_note.run(candidates).settings.frame_threshold == 0.5  # a tie: the first scored stays
    assert [trial.objective for trial in by_note.trials.values()] == pytest.approx([1.0, 1.0])
    by_both = tuning.Search([maps.item()], objective="note+frame")
    best = by_both.run(candidates)
    assert best.settings.frame_threshold == 0.3
    assert best.objective == pytest.approx(1.0)
    assert by_both.trials[candidates[0]].objective < 0.9
    with pytest.raises(ValueError, match="objective must be one of"):
        tuning.Search([maps.item()], objective="frame")


def test_dense_rule_keeps_a_chords_fading_note_and_leaves_a_lone_tail_out():
    # A 4-note chord (reference: all full length) whose lowest note fades to 0.25 halfway, and a
    # lone note followed by a 0.25 reverb tail that the reference does not hold. No single frame
    # threshold gets both right; the dense-frame rule, swept from settings with it off, does.
    maps = Maps()
    for row in range(30, 34):
        maps.add(row, 20, 2 * NOTE_FRAMES, 0.6, 0.6, real=True)
    maps.frame[30, 20 + NOTE_FRAMES : 20 + 2 * NOTE_FRAMES] = 0.25
    maps.add(60, 120, NOTE_FRAMES, 0.6, 0.6, real=True)
    maps.frame[60, 120 + NOTE_FRAMES : 120 + 2 * NOTE_FRAMES] = 0.25
    base = dataclasses.replace(PEAKS_ONLY, onset_threshold=0.5, frame_threshold=0.4)
    for frame_threshold in (0.2, 0.4):  # the tail kept, or the fading note cut
        settings = dataclasses.replace(base, frame_threshold=frame_threshold)
        assert tuning.evaluate([maps.item()], settings, "note+frame").objective < 0.99
    search = tuning.Search([maps.item()], objective="note+frame")
    search.run([base])
    best = tuning.coordinate_descent(search, {"dense_polyphony": (0, 3, 8), "dense_frame_threshold": (0.2, 0.3)})
    assert best.settings.dense_polyphony == 3 and best.settings.dense_frame_threshold <= 0.25
    assert best.settings.frame_threshold == 0.4 and best.objective == pytest.approx(1.0)


def test_full_scores_reports_all_three_metrics_per_source():
    items = [threshold_maps().item("synthetic-val"), threshold_maps().item("trios")]
    scores = tuning.full_scores(items, dataclasses.replace(PEAKS_ONLY, onset_threshold=0.5, frame_threshold=0.4))
    assert list(scores) == ["synthetic-val", "trios"]
    for per_source in scores.values():
        assert per_source.note.f == pytest.approx(1.0)
        assert per_source.note_offset.f == pytest.approx(1.0)
        assert per_source.frame.f == pytest.approx(1.0)


def test_refine_space_halves_the_spacing_around_the_best():
    best = DecoderSettings(onset_threshold=0.2, frame_threshold=0.6, min_note_ms=90.0)
    tried = {"onset_threshold": [0.1, 0.2, 0.4], "frame_threshold": [0.2, 0.4, 0.6], "min_note_ms": [90.0]}
    assert tuning.refine_space(best, tried) == {
        "onset_threshold": [0.15, 0.2, 0.3],
        "frame_threshold": [0.5, 0.6],
        "min_note_ms": [90.0],
    }


def test_edge_settings_flags_a_best_value_only_reached_at_the_end_of_its_range():
    space = {"onset_threshold": (0.3, 0.5, 0.7), "frame_threshold": (0.2, 0.4, 0.6), "min_note_ms": (90.0,)}

    def edges(onset_values):
        search = tuning.Search([threshold_maps().item()])
        search.run(tuning.grid(PEAKS_ONLY, {**space, "onset_threshold": onset_values}))
        return tuning.edge_settings(search, space)

    assert edges((0.3, 0.5, 0.7)) == []
    assert edges((0.45, 0.5, 0.55)) == []  # all right: the first, 0.45, is kept, but 0.55 is as good
    assert edges((0.3, 0.4, 0.5)) == ["onset_threshold"]  # only 0.5 is right


def _dip_maps(gap: int, inner_dip: bool) -> Maps:
    """Notes each followed, after ``gap`` silent frames, by a tail without an onset (bridging the
    gap lengthens the note over unlabelled frames); ``inner_dip``: each note also has a one-frame
    dip that only bridging keeps whole."""
    maps = Maps()
    for i in range(4):
        start = 20 + 60 * i
        maps.add(30 + i, start, NOTE_FRAMES, 0.6, 0.5, real=True)
        maps.add(30 + i, start + NOTE_FRAMES + gap, 10, 0, 0.5, real=False)
        if inner_dip:
            maps.frame[30 + i, start + NOTE_FRAMES // 2] = 0.0
    return maps


def _dip_edges(maps: Maps, dips: tuple[int, ...]) -> tuple[set, list[str]]:
    """The best max_dip_frames values among ``dips`` (note+frame objective) and the edge flags."""
    search = tuning.Search([maps.item()], objective="note+frame")
    search.run(tuning.grid(PEAKS_ONLY, {"max_dip_frames": dips, "min_note_ms": (90.0,)}))
    best = {t.settings.max_dip_frames for t in search.trials.values() if t.objective == search.best().objective}
    return best, tuning.edge_settings(search, ["max_dip_frames"])


def test_edge_settings_leaves_out_a_best_value_at_the_limit_the_setting_allows():
    assert _dip_edges(_dip_maps(gap=1, inner_dip=False), (0, 1, 3)) == ({0}, [])  # no fewer than 0 dip frames
    # best at 1: flagged when 0 (allowed) was not tried, not when it was
    assert _dip_edges(_dip_maps(gap=2, inner_dip=True), (1, 2, 3)) == ({1}, ["max_dip_frames"])
    assert _dip_edges(_dip_maps(gap=2, inner_dip=True), (0, 1, 2, 3)) == ({1}, [])


def test_grid_skips_invalid_combinations():
    settings = tuning.grid(DecoderSettings(), {"onset_threshold": (0.5, 1.5), "max_dip_frames": (0, 3)})
    assert [(s.onset_threshold, s.max_dip_frames) for s in settings] == [(0.5, 0), (0.5, 3)]


class CountingSession:
    """Stands in for AgnosticSession: maps derived from the audio, calls counted."""

    def __init__(self):
        self.calls = 0

    def activations(self, audio):
        self.calls += 1
        onset = np.full((N_PITCHES, 7), audio[0], np.float32)
        return onset, onset * 0.5


def test_activations_are_computed_once_then_read_from_the_cache(tmp_path):
    recording = tuning.Recording("trios", "piece", lambda: np.full(100, 0.25, np.float32), [Note(0.0, 1.0, 60)])
    session = CountingSession()
    first = tuning.cached_item(recording, session, tmp_path)
    second = tuning.cached_item(recording, session, tmp_path)
    assert session.calls == 1
    assert len(list((tmp_path / "trios").glob("piece-*.npz"))) == 1
    np.testing.assert_array_equal(second.onset, first.onset)
    np.testing.assert_array_equal(second.frame, np.full((N_PITCHES, 7), 0.125, np.float32))
    assert second.reference == recording.reference and second.source == "trios"


def test_other_audio_under_the_same_name_is_not_read_from_the_cache(tmp_path):
    """val and val-sampled both hold an example 000000: each gets its own maps."""
    session = CountingSession()
    first = tuning.cached_item(
        tuning.Recording("synthetic-val", "000000", lambda: np.full(100, 0.25, np.float32), []), session, tmp_path)
    other = tuning.cached_item(
        tuning.Recording("synthetic-val", "000000", lambda: np.full(100, 0.75, np.float32), []), session, tmp_path)
    assert session.calls == 2
    assert first.onset[0, 0] == 0.25 and other.onset[0, 0] == 0.75
    assert len(list((tmp_path / "synthetic-val").glob("000000-*.npz"))) == 2


def test_model_fingerprint_covers_both_onnx_files(tmp_path):
    network, energy = tmp_path / "m.onnx", tmp_path / "m.energy.onnx"
    network.write_bytes(b"network")
    energy.write_bytes(b"energy")
    before = tuning.model_fingerprint(network)
    energy.write_bytes(b"energy v2")
    assert tuning.model_fingerprint(network) != before


def test_recordings_merge_all_parts_of_each_mix(tmp_path):
    (tmp_path / "examples").mkdir()
    records = []
    for index in range(2):
        name = f"examples/{index:06d}"
        mix_and_stems = np.stack([np.full(300, 0.1 * (index + 1)), np.full(300, -0.5), np.full(300, 0.5)], axis=1)
        soundfile.write(str(tmp_path / f"{name}.flac"), mix_and_stems, SAMPLE_RATE, subtype="PCM_16")
        np.savez(
            tmp_path / f"{name}.npz",
            note_part=np.array([0, 1]), note_onset=np.array([0.1, 0.2]), note_offset=np.array([0.5, 0.6]),
            note_pitch=np.array([60, 64 + index]), note_velocity=np.array([80, 90]),
        )
        records.append({"id": index, "file": name, "names": ["violin", "flute"]})
    (tmp_path / "manifest.json").write_text(json.dumps({"examples": records}))

    found = tuning.recordings(tmp_path, tuning.SYNTHETIC_SOURCE)
    assert [(r.source, r.name) for r in found] == [("synthetic-val", "000000"), ("synthetic-val", "000001")]
    assert sorted(found[1].reference, key=lambda n: n.pitch) == [Note(0.1, 0.5, 60, 80), Note(0.2, 0.6, 65, 90)]
    np.testing.assert_allclose(found[1].load_audio(), 0.2, atol=1e-4)  # channel 0, the mix


def test_a_frame_threshold_given_takes_the_dense_threshold_with_it(tmp_path, monkeypatch):
    tuned = DecoderSettings(frame_threshold=0.2, dense_polyphony=3, dense_frame_threshold=0.15)
    tuned.to_json(tmp_path / "decoder.json")
    monkeypatch.setattr(transcription, "TUNED_DECODER_PATH", tmp_path / "decoder.json")
    raised = transcription.decoder_settings(frame_threshold=0.4)
    assert (raised.frame_threshold, raised.dense_polyphony) == (0.4, 3)
    assert raised.dense_frame_threshold == pytest.approx(0.3)
    assert transcription.decoder_settings(onset_threshold=0.5).dense_frame_threshold == 0.15
    tuned_higher = DecoderSettings(frame_threshold=0.2, dense_polyphony=3, dense_frame_threshold=0.5)
    tuned_higher.to_json(tmp_path / "decoder.json")  # a ratio above 1 stays a valid threshold
    assert transcription.decoder_settings(frame_threshold=0.9).dense_frame_threshold == 1.0


def test_transcription_defaults_come_from_the_tuned_file_when_present(tmp_path, monkeypatch):
    tuned = DecoderSettings(onset_threshold=0.37, frame_threshold=0.21, min_note_ms=55.0, max_dip_frames=3)
    path = tmp_path / "decoder.json"
    tuned.to_json(path)
    assert transcription.package_decoder_settings(path) == tuned
    assert transcription.package_decoder_settings(tmp_path / "missing.json") == DecoderSettings()

    monkeypatch.setattr(transcription, "TUNED_DECODER_PATH", path)
    assert transcription.decoder_settings() == tuned
    assert transcription.decoder_settings(onset_threshold=0.6) == dataclasses.replace(tuned, onset_threshold=0.6)
    monkeypatch.setattr(transcription, "TUNED_DECODER_PATH", tmp_path / "missing.json")
    assert transcription.decoder_settings() == DecoderSettings()
    # the separation graph has its own file
    monkeypatch.setattr(transcription, "TUNED_SEPARATION_DECODER_PATH", path)
    assert transcription.decoder_settings(separation=True) == tuned
    assert transcription.package_decoder_settings(separation=True) == tuned
    assert transcription.decoder_settings() == DecoderSettings()
