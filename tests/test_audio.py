"""Audio loading: formats, down-mix, resampling, and a clear error for each kind of bad input."""
import numpy as np
import pytest
import soundfile

from timbrescribe.audio import STREAM_BLOCK_FRAMES, AudioError, load_audio, open_audio, prepare_audio
from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.errors import UserError


def _tone(sr, seconds=1.0, freq=440.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    mono = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def _peak_frequency(x, sr):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * sr / len(x)


@pytest.mark.parametrize("fmt,ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")])
def test_formats_load_as_mono_22050(tmp_path, fmt, ext):
    path = tmp_path / f"tone{ext}"
    soundfile.write(str(path), _tone(44100, channels=2), 44100, format=fmt)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # Lossy codecs add/trim a few ms of padding; the length must still be about one second.
    assert abs(len(audio) - SAMPLE_RATE) < 0.06 * SAMPLE_RATE
    assert abs(_peak_frequency(audio, SAMPLE_RATE) - 440.0) < 2.0


def test_resampling_keeps_pitch_and_level():
    audio = prepare_audio(_tone(48000, seconds=2.0, freq=1000.0), 48000)
    assert len(audio) == 2 * SAMPLE_RATE
    assert abs(_peak_frequency(audio, SAMPLE_RATE) - 1000.0) < 1.0
    middle = audio[SAMPLE_RATE // 2 : -SAMPLE_RATE // 2]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_downmix_averages_channels():
    left = _tone(SAMPLE_RATE)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    np.testing.assert_allclose(prepare_audio(stereo, SAMPLE_RATE), left / 2, atol=1e-7)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_corrupt_file(tmp_path):
    path = tmp_path / "fake.wav"
    path.write_text("this is not audio")
    with pytest.raises(AudioError, match="cannot read as audio"):
        load_audio(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.flac"
    soundfile.write(str(path), _tone(SAMPLE_RATE), SAMPLE_RATE)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(AudioError):
        load_audio(path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(str(path), np.zeros(0, np.float32), SAMPLE_RATE)
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)


def test_shorter_than_one_frame(tmp_path):
    path = tmp_path / "click.wav"
    soundfile.write(str(path), np.ones(100, np.float32) * 0.1, SAMPLE_RATE)
    with pytest.raises(AudioError, match="too short"):
        load_audio(path)


def test_non_finite_samples():
    samples = _tone(SAMPLE_RATE)
    samples[100] = np.nan
    with pytest.raises(AudioError, match="non-finite"):
        prepare_audio(samples, SAMPLE_RATE)


def test_bad_sample_rate_and_errors_are_user_errors():
    with pytest.raises(UserError, match="sample rate"):
        prepare_audio(_tone(SAMPLE_RATE), 0)


def test_silence_is_valid_audio():
    silence = prepare_audio(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert silence.shape == (SAMPLE_RATE,) and not silence.any()


def _music_file(path, sr, channels, seconds):
    """Noise plus a chirp, different in every channel."""
    rng = np.random.default_rng(sr + channels)
    t = np.arange(int(sr * seconds)) / sr
    chirp = np.sin(2 * np.pi * (200 + 300 * t) * t)
    channel = [0.4 * chirp * (c + 1) / channels + 0.05 * rng.standard_normal(len(t)) for c in range(channels)]
    samples = np.stack(channel, axis=1)
    soundfile.write(str(path), samples.astype(np.float32), sr)
    return path


@pytest.mark.parametrize(
    "sr,channels,name",
    [(22050, 1, "a.wav"), (22050, 2, "b.flac"), (44100, 2, "c.wav"), (48000, 6, "d.flac"),
     (11025, 1, "e.wav"), (31999, 2, "f.wav")],
)
def test_streamed_file_gives_the_samples_of_the_whole_file(tmp_path, sr, channels, name):
    path = _music_file(tmp_path / name, sr, channels, seconds=2.2 * STREAM_BLOCK_FRAMES / sr)
    whole = load_audio(path)
    stream = open_audio(path)
    blocks = list(stream.blocks())
    streamed = np.concatenate(blocks)
    assert len(stream) == len(streamed) == len(whole) and stream.sample_rate == sr
    assert streamed.dtype == np.float32 and len(blocks) >= 3
    if sr == SAMPLE_RATE:
        np.testing.assert_array_equal(streamed, whole)  # decoding and down-mix only: no rounding
    else:
        np.testing.assert_allclose(streamed, whole, atol=1e-5)  # one resampler run vs many


def test_stream_serves_overlapping_ranges_in_one_pass(tmp_path):
    stream = open_audio(_music_file(tmp_path / "x.wav", 44100, 2, seconds=10.0))
    whole = np.concatenate(list(stream.blocks()))
    n = len(whole)
    # Overlapping, touching, empty, skipping several blocks ahead, running past the end.
    bounds = [(0, 10), (0, 40000), (30000, 70000), (70000, 70000), (70000, 71000), (150000, 160000),
              (155000, n + 999)]
    for (start, end), samples in zip(bounds, stream.ranges(bounds)):
        np.testing.assert_array_equal(samples, whole[start:end])
    with pytest.raises(ValueError, match="forwards"):
        list(stream.ranges([(100, 200), (99, 300)]))


def test_stream_reads_the_file_in_blocks(tmp_path):
    path = _music_file(tmp_path / "long.wav", SAMPLE_RATE, 1, seconds=10)
    assert max(len(block) for block in open_audio(path).blocks()) == STREAM_BLOCK_FRAMES


def _truncated_file(path):
    soundfile.write(str(path), _tone(SAMPLE_RATE), SAMPLE_RATE, format="FLAC")
    path.write_bytes(path.read_bytes()[:60])


def _nan_file(path):
    samples = _tone(SAMPLE_RATE)
    samples[5000] = np.nan
    soundfile.write(str(path), samples, SAMPLE_RATE, subtype="FLOAT")


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda path: None, "no such file"),
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.write_text("this is not audio"), "cannot read as audio"),
        (_truncated_file, "cannot read as audio"),
        (lambda path: soundfile.write(str(path), np.zeros((0, 2), np.float32), SAMPLE_RATE), "empty"),
        (lambda path: soundfile.write(str(path), np.full(100, 0.1, np.float32), SAMPLE_RATE), "too short"),
        (lambda path: soundfile.write(str(path), np.full(200, 0.1, np.float32), 44100), "too short"),
        (_nan_file, "non-finite"),
        (lambda path: soundfile.write(str(path), np.full(4000, 3e6, np.float32), SAMPLE_RATE, subtype="FLOAT"),
         "samples reach 3e[+]06, far beyond full scale"),
    ],
    ids=["missing", "directory", "corrupt", "truncated", "empty", "short", "short-44k", "nan", "loud"],
)
def test_stream_rejects_what_load_audio_rejects_with_the_same_message(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as from_stream:
        open_audio(path)
    with pytest.raises(AudioError) as from_load:
        load_audio(path)
    assert str(from_stream.value) == str(from_load.value)
