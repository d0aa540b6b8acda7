"""Options checked the same way by the Python API and the command line: threads, sample rates,
array layouts; and the API's progress hook."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile

from timbrescribe.cli import main
from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.errors import UserError
from timbrescribe.options import usable_cores
from timbrescribe.transcription import transcribe


def _tone(seconds: float = 1.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    soundfile.write(path, _tone(), SAMPLE_RATE)
    return path


@pytest.mark.parametrize("threads", [0, -1, 4 * usable_cores() + 1, 1000])
def test_thread_counts_outside_1_to_4_x_cores_are_refused_alike_by_api_and_cli(tmp_path, song, capsys, threads):
    with pytest.raises(UserError) as from_api:
        transcribe(song, instruments=1, threads=threads)
    message = str(from_api.value)
    assert message == (f"threads must be a whole number from 1 to {4 * usable_cores()} "
                       f"(4 x the {usable_cores()} cores here), got {threads}")
    assert main(["transcribe", str(song), "-o", str(tmp_path / "out"), "-k", "1", "--threads", str(threads)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("threads", [True, 2.0, "2"])
def test_thread_counts_must_be_whole_numbers(song, threads):
    with pytest.raises(UserError, match="threads must be a whole number"):
        transcribe(song, instruments=1, threads=threads)


def test_thread_counts_in_range_are_used(song):
    assert len(transcribe(song, instruments=1, threads=4 * usable_cores()).notes) == len(
        transcribe(song, instruments=1, threads=1).notes)


@pytest.mark.parametrize("sr", [True, False, 44, 999, 768_001, 44100.0, "44100", None])
def test_sample_rates_outside_1k_to_768k_or_not_whole_are_refused(sr):
    with pytest.raises(UserError, match="sample rate|needs its sample rate"):
        transcribe(_tone(), sr, instruments=1)


@pytest.mark.parametrize("sr", [1000, 768_000, np.int64(44100)])
def test_sample_rates_at_the_limits_are_accepted(sr):
    result = transcribe(_tone(1.0, int(sr)), sr, instruments=1)
    assert result.duration_s == pytest.approx(1.0, abs=0.01)


def test_a_file_at_a_sample_rate_out_of_range_is_refused(tmp_path):
    path = tmp_path / "low.wav"
    soundfile.write(path, _tone(2.0, 500), 500)
    with pytest.raises(UserError, match=f"{path}: sample rate must be a whole number of Hz from 1000 to 768000, got 500"):
        transcribe(path, instruments=1)


def test_channels_first_array_is_named_with_the_shape_to_pass():
    stereo = np.stack([_tone(), _tone()])  # (2, n): channels first
    n = stereo.shape[1]
    with pytest.raises(UserError) as refused:
        transcribe(stereo, SAMPLE_RATE, instruments=1)
    assert str(refused.value) == (
        f"audio arrays have shape (n_samples,) or (n_samples, channels); shape (2, {n}) looks like "
        f"(channels, n_samples): pass ({n}, 2), e.g. samples.T")
    assert len(transcribe(stereo.T, SAMPLE_RATE, instruments=1).notes) == len(
        transcribe(_tone(), SAMPLE_RATE, instruments=1).notes)


@pytest.mark.parametrize("shape", [(), (2, 3, 4000), (1, 1, 1, 1)])
def test_arrays_of_other_dimensions_are_refused_with_the_expected_shape(shape):
    with pytest.raises(UserError, match=r"audio arrays have shape \(n_samples,\) or \(n_samples, channels\), got shape"):
        transcribe(np.zeros(shape, np.float32), SAMPLE_RATE, instruments=1)


def test_progress_hook_follows_the_chunks_to_the_end(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, _tone(40.0), SAMPLE_RATE)  # 15-second chunks: 3 per pass, 2 passes
    calls = []
    transcribe(path, instruments=1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(done, 6) for done in range(1, 7)]
