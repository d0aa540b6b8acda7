"""Python API transcribe() and the ``timbrescribe transcribe`` command on the shipped separation model
(with thresholds that make it find notes even where it should not, so the tests check plumbing and
the decode path exactly)."""
from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pretty_midi
import pytest
import soundfile

from timbrescribe.audio import load_audio
from timbrescribe.cli import main
from timbrescribe.constants import SAMPLE_RATE, n_frames
from timbrescribe import transcription
from timbrescribe.decode import DecoderSettings, decode_notes, separated_notes
from timbrescribe.errors import UserError
from timbrescribe.inference import DEFAULT_MODEL_PATH, SEPARATION_MODEL_PATH, AgnosticSession, SeparationSession
from timbrescribe.outputs import sorted_notes
from timbrescribe.transcription import Transcription, decoder_settings, package_decoder_settings, transcribe

FILE_RATE = 44100  # not the model's rate, so loading resamples


def _harmonic_tones(sr: int) -> np.ndarray:
    """Two seconds: A3 alone, then a C#4 + E4 dyad; five decaying harmonics each."""
    t = np.arange(2 * sr) / sr
    audio = np.zeros_like(t)
    for pitch, start, end in ((57, 0.1, 0.9), (61, 1.0, 1.8), (64, 1.0, 1.8)):
        frequency = 440.0 * 2.0 ** ((pitch - 69) / 12)
        envelope = np.where((t >= start) & (t < end), np.exp(-2.0 * (t - start)), 0.0)
        for harmonic in range(1, 6):
            audio += envelope * np.sin(2 * np.pi * frequency * harmonic * t) / harmonic
    return (0.3 * audio / np.abs(audio).max()).astype(np.float32)


@pytest.fixture(scope="module")
def model_path():
    """The separation model shipped in the package (tests/test_shipped_model.py checks it)."""
    return SEPARATION_MODEL_PATH


@pytest.fixture(scope="module")
def wav_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tones.wav"
    soundfile.write(path, _harmonic_tones(FILE_RATE), FILE_RATE)
    return path


@pytest.fixture(scope="module")
def session(model_path):
    return SeparationSession(model_path=model_path, threads=1)


@pytest.fixture(scope="module")
def thresholds(session, wav_path) -> dict:
    """Thresholds that make the untrained model's maps give some notes (so comparisons bite)."""
    onset, frame = session.activations(load_audio(wav_path))
    return {
        "onset_threshold": float(np.clip(np.quantile(onset, 0.95), 0.01, 0.99)),
        "frame_threshold": float(np.clip(np.quantile(frame, 0.5), 0.01, 0.99)),
        "min_note_ms": 30.0,
    }


def test_notes_are_the_decoder_output_on_the_session_activations(session, wav_path, thresholds):
    result = transcribe(wav_path, session=session, **thresholds)
    samples = load_audio(wav_path)
    onset, frame = session.activations(samples)
    settings = decoder_settings(**thresholds, separation=True)
    expected = separated_notes(onset, frame, settings)
    assert len(expected) > 0
    assert expected != decode_notes(onset, frame, settings.without_dense_rule())  # the rule extends some
    assert isinstance(result, Transcription)
    assert result.notes == expected
    assert sorted_notes([n for t in result.tracks for n in t.notes]) == sorted_notes(expected)
    assert result.onset.shape == result.frame.shape == (84, n_frames(len(samples)))
    np.testing.assert_array_equal(result.frame, frame)
    assert result.duration_s == pytest.approx(2.0, abs=1e-3)
    assert result.sample_rate == SAMPLE_RATE


def test_array_input_gives_the_same_notes_as_the_file(session, wav_path, thresholds):
    from_file = transcribe(wav_path, session=session, **thresholds)
    samples, rate = soundfile.read(wav_path, dtype="float32")
    from_array = transcribe(np.stack([samples, samples], axis=1), rate, session=session, **thresholds)
    assert from_array.notes == from_file.notes


def test_default_settings_are_the_shipped_tuned_settings(session, wav_path):
    result = transcribe(wav_path, session=session)
    assert result.notes == separated_notes(result.onset, result.frame, package_decoder_settings(separation=True))


def test_each_graph_decodes_with_the_settings_tuned_for_it(session, wav_path, thresholds, tmp_path, monkeypatch):
    separation_settings = dataclasses.replace(DecoderSettings(), **thresholds)
    note_settings = dataclasses.replace(separation_settings, onset_threshold=0.999, infer_onsets=False)
    monkeypatch.setattr(transcription, "TUNED_SEPARATION_DECODER_PATH", tmp_path / "separation.decoder.json")
    monkeypatch.setattr(transcription, "TUNED_DECODER_PATH", tmp_path / "decoder.json")
    separation_settings.to_json(tmp_path / "separation.decoder.json")
    note_settings.to_json(tmp_path / "decoder.json")
    separated = transcribe(wav_path, session=session, instruments=1)
    assert separated.notes == separated_notes(separated.onset, separated.frame, separation_settings)
    assert separated.notes != separated_notes(separated.onset, separated.frame, note_settings)
    one_track = transcribe(wav_path, session=AgnosticSession(DEFAULT_MODEL_PATH, threads=1), instruments=1)
    assert one_track.notes == decode_notes(one_track.onset, one_track.frame, note_settings)


def test_decoder_settings_given_whole_replace_the_package_settings(session, wav_path, thresholds):
    # e.g. the settings tuned for another model (scripts/bench_agnostic.py --previous-decoder)
    settings = dataclasses.replace(package_decoder_settings(separation=True), **thresholds, infer_onsets=False)
    result = transcribe(wav_path, session=session, instruments=1, decoder=settings)
    expected = separated_notes(result.onset, result.frame, settings)  # a separation graph, even for one track
    assert len(expected) > 0 and result.notes == expected
    assert expected != separated_notes(result.onset, result.frame, package_decoder_settings(separation=True))
    with pytest.raises(ValueError, match="not both"):
        transcribe(wav_path, session=session, decoder=settings, onset_threshold=0.5)


def test_input_mistakes_are_user_errors(session, wav_path):
    samples = _harmonic_tones(SAMPLE_RATE)
    with pytest.raises(UserError, match="sample rate"):
        transcribe(samples, session=session)
    with pytest.raises(UserError, match="sr is only for audio arrays"):
        transcribe(wav_path, 44100, session=session)
    with pytest.raises(ValueError, match="not both"):
        transcribe(wav_path, session=session, threads=2)


@pytest.mark.parametrize(
    "option, value",
    [("onset_threshold", 0.0), ("onset_threshold", 1.0), ("frame_threshold", -0.2),
     ("frame_threshold", float("nan")), ("min_note_ms", 0.0), ("min_note_ms", float("inf"))],
)
def test_out_of_range_settings_are_rejected(session, wav_path, option, value):
    with pytest.raises(UserError, match="must"):
        transcribe(wav_path, session=session, **{option: value})


def _cli_threshold_args(thresholds: dict) -> list[str]:
    return [
        "--onset-threshold", str(thresholds["onset_threshold"]),
        "--frame-threshold", str(thresholds["frame_threshold"]),
        "--min-note-ms", str(thresholds["min_note_ms"]),
    ]


def test_cli_writes_every_format_with_the_same_notes(tmp_path, model_path, wav_path, thresholds, capsys):
    out = tmp_path / "out" / "nested"
    status = main(
        ["transcribe", str(wav_path), "-o", str(out), "--format", "midi,json,csv", "--plot",
         "--threads", "1", "--model", str(model_path), *_cli_threshold_args(thresholds)]
    )
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "tones.csv", "tones.json", "tones.mid", "tones.png", "tones.timbrescribe"]
    midi_notes = [n for i in pretty_midi.PrettyMIDI(str(out / "tones.mid")).instruments for n in i.notes]
    json_notes = [n for track in json.loads((out / "tones.json").read_text())["tracks"] for n in track["notes"]]
    with open(out / "tones.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(midi_notes) == len(json_notes) == len(csv_rows) > 0
    assert (out / "tones.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = capsys.readouterr().out
    assert f"{len(json_notes)} notes" in summary and "2.0 s of audio" in summary


def test_cli_directory_input_continues_after_a_bad_file(tmp_path, model_path, wav_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.wav").write_bytes(wav_path.read_bytes())
    (folder / "bad.wav").write_text("this is not audio\n")
    (folder / "notes.txt").write_text("not an audio extension: ignored\n")
    out = tmp_path / "out"
    status = main(["transcribe", str(folder), "-o", str(out), "--format", "json", "--model", str(model_path)])
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.json", "good.timbrescribe"]
    errors = capsys.readouterr().err
    assert "bad.wav: failed: cannot read as audio" in errors
    assert "1 of 2 files failed" in errors


def _assert_usage_error(argv: list[str], capsys, message: str) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_input_fails_before_any_output(tmp_path, model_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "missing.wav"
    _assert_usage_error(["transcribe", str(missing), "-o", str(out), "--model", str(model_path)], capsys,
                        f"{missing}: no such file or directory")
    assert not out.exists()


@pytest.mark.parametrize(
    "options, message",
    [(["--onset-threshold", "1.5"], "onset threshold must lie strictly between 0 and 1"),
     (["--frame-threshold", "0"], "frame threshold must lie strictly between 0 and 1"),
     (["--min-note-ms", "-5"], "minimum note length must be a positive"),
     (["--format", "midi,mp3"], "--format: expected"),
     (["--threads", "0"], "threads must be a whole number from 1 to"),
     (["--model", "missing.onnx"], "model file not found: missing.onnx"),
     (["--instruments", "0"], "instruments must be 'auto' or a whole number from 1 to 15, got 0"),
     (["-k", "two"], "instruments must be 'auto' or a whole number from 1 to 15, got 'two'"),
     (["-k", "16"], "got 16"),
     (["--model", str(DEFAULT_MODEL_PATH)], "gives no timbre embeddings")],
)
def test_cli_bad_option_values(tmp_path, model_path, wav_path, capsys, options, message):
    out = tmp_path / "out"
    _assert_usage_error(["transcribe", str(wav_path), "-o", str(out), "--model", str(model_path), *options],
                        capsys, message)
    assert not out.exists()


def test_cli_inputs_with_the_same_name_clash(tmp_path, model_path, wav_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    soundfile.write(tmp_path / "a" / "x.wav", _harmonic_tones(SAMPLE_RATE), SAMPLE_RATE)
    soundfile.write(tmp_path / "b" / "x.flac", _harmonic_tones(SAMPLE_RATE), SAMPLE_RATE)
    out = tmp_path / "out"
    _assert_usage_error(["transcribe", str(tmp_path / "a"), str(tmp_path / "b" / "x.flac"), "-o", str(out),
                         "--model", str(model_path)], capsys, "would both write results named 'x'")
    assert not out.exists()


def test_cli_subprocess_and_api_run_without_torch(tmp_path, model_path, wav_path):
    script = textwrap.dedent(
        """
        import sys
        import timbrescribe.transcription as api
        assert "torch" not in sys.modules, "importing the API imported torch"
        result = api.transcribe(sys.argv[1], model_path=sys.argv[2])
        assert "torch" not in sys.modules, "transcribing imported torch"
        print(len(result.notes))
        """
    )
    api = subprocess.run([sys.executable, "-c", script, str(wav_path), str(model_path)],
                         capture_output=True, text=True, timeout=120)
    assert api.returncode == 0, api.stderr

    out = tmp_path / "out"
    cli = subprocess.run(
        [sys.executable, "-c", "import sys, timbrescribe.cli as c; s = c.main(); "
         "assert 'torch' not in sys.modules, 'the command imported torch'; sys.exit(s)",
         "transcribe", str(wav_path), "-o", str(out), "--model", str(model_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    midi = pretty_midi.PrettyMIDI(str(out / "tones.mid"))
    assert sum(len(instrument.notes) for instrument in midi.instruments) == int(api.stdout)


def test_shipped_model_hears_the_tones(session, wav_path):
    """A3 at 0.1 s, then C#4 and E4 together at 1.0 s (default, tuned decoder settings)."""
    notes = transcribe(wav_path, session=session).notes
    for pitch, onset in ((57, 0.1), (61, 1.0), (64, 1.0)):
        assert any(n.pitch == pitch and abs(n.onset - onset) < 0.05 for n in notes), (pitch, notes)
    assert all(n.pitch in (57, 61, 64) for n in notes if n.offset - n.onset > 0.2), notes


def test_one_instrument_runs_the_note_model_alone_and_gives_one_track(wav_path):
    result = transcribe(wav_path, instruments=1)
    assert [t.name for t in result.tracks] == ["notes"] and result.tracks[0].notes == result.notes
    assert result.tracks[0].confidence is None and not result.instruments_estimated
    with pytest.raises(UserError, match="no timbre embeddings"):
        transcribe(wav_path, session=AgnosticSession(threads=1))
    assert len(transcribe(wav_path, session=AgnosticSession(threads=1), instruments=1).notes) == len(result.notes)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_given_k_gives_k_tracks_named_and_ordered_by_pitch(session, wav_path, k):
    result = transcribe(wav_path, session=session, instruments=k)
    assert [t.name for t in result.tracks] == [f"instrument {i}" for i in range(1, k + 1)]
    assert sorted_notes([n for t in result.tracks for n in t.notes]) == sorted_notes(result.notes)
    filled = [t for t in result.tracks if t.notes]
    means = [np.mean([n.pitch for n in t.notes]) for t in filled]
    assert means == sorted(means, reverse=True) and filled == result.tracks[: len(filled)]
    assert all(0 < t.confidence <= 1 for t in filled) and not result.instruments_estimated
    if k > len(result.notes):  # fewer notes than instruments: the rest are empty tracks
        assert len(filled) == len(result.notes)


def test_estimated_k_is_flagged_and_silence_gives_one_empty_track(session):
    silent = transcribe(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, session=session)
    assert silent.instruments_estimated and [(t.name, t.notes) for t in silent.tracks] == [("instrument 1", [])]


@pytest.mark.parametrize("value, expected", [("auto", None), ("AUTO", None), (3, 3), ("3", 3), (1, 1), ("15", 15)])
def test_instruments_values(value, expected):
    from timbrescribe.transcription import parse_instruments

    assert parse_instruments(value) == expected


@pytest.mark.parametrize("value", [0, -1, 16, "0", "2.5", 2.0, True, None, "many", ""])
def test_bad_instruments_values_are_user_errors(session, wav_path, value):
    with pytest.raises(UserError, match="instruments must be 'auto' or a whole number"):
        transcribe(wav_path, session=session, instruments=value)
