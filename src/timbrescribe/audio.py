"""Audio input: any common file (wav, flac, ogg, mp3) -> mono float32 at the model's sample rate.

load_audio reads a file whole; open_audio streams it block by block (soundfile blocks, per-block
down-mix, soxr.ResampleStream), so that a long recording never sits in memory at once. Both give
the same samples: identical at the model's rate, within float rounding of the resampler elsewhere.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from timbrescribe.constants import HOP, SAMPLE_RATE
from timbrescribe.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# Shorter input than one hop gives no usable frame context; real recordings are far longer.
MIN_SAMPLES = HOP
# Input frames decoded per block when streaming (1.5 s at 44.1 kHz).
STREAM_BLOCK_FRAMES = 1 << 16
RESAMPLE_QUALITY = "HQ"
# Sample rates accepted for input (files and arrays), in Hz.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000
# Largest sample magnitude accepted: float files are full scale at ±1, and even integer-valued
# floats (±32768) are far below this; beyond it the spectrogram's power overflows float32.
MAX_SAMPLE_MAGNITUDE = 1e6
_READ_ERRORS = (soundfile.LibsndfileError, RuntimeError, ValueError)


class AudioError(UserError):
    """The audio cannot be used as it is (missing, unreadable, empty, too short, non-finite, too loud)."""


def load_audio(path: str | Path) -> np.ndarray:
    """Read an audio file, down-mix to mono and resample to SAMPLE_RATE with soxr (high quality)."""
    path = _checked_path(path)
    try:
        samples, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except _READ_ERRORS as err:
        raise AudioError(f"{path}: cannot read as audio ({err})") from None
    try:
        return _model_rate_mono(samples, sr)
    except AudioError as err:
        raise AudioError(f"{path}: {err}") from None


def prepare_audio(samples: np.ndarray, sr: int) -> np.ndarray:
    """Check and convert in-memory audio: (N,) or (N, channels) at ``sr`` Hz -> mono float32 (N',)
    at SAMPLE_RATE."""
    samples = np.asarray(samples)
    check_layout(samples.shape)
    return _model_rate_mono(samples, sr)


def check_sample_rate(sr: object) -> int:
    """``sr`` as an int, or AudioError unless it is a whole number of Hz in
    [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] (a bool is not a rate)."""
    if isinstance(sr, (bool, np.bool_)) or not isinstance(sr, (int, np.integer)) or not (
        MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE
    ):
        raise AudioError(
            f"sample rate must be a whole number of Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE}, got {sr!r}"
        )
    return int(sr)


def check_layout(shape: tuple[int, ...]) -> None:
    """AudioError unless an audio array of this shape is laid out as (n_samples,) or
    (n_samples, channels); a channels-first array (fewer rows than columns) is named as such."""
    expected = "audio arrays have shape (n_samples,) or (n_samples, channels)"
    if len(shape) not in (1, 2):
        raise AudioError(f"{expected}, got shape {shape}")
    if len(shape) == 2 and 0 < shape[0] < shape[1]:
        raise AudioError(
            f"{expected}; shape {shape} looks like (channels, n_samples): pass ({shape[1]}, {shape[0]}), "
            "e.g. samples.T"
        )


def _model_rate_mono(samples: np.ndarray, sr: int) -> np.ndarray:
    """(N,) or (N, channels) samples at ``sr`` Hz -> checked mono float32 (N',) at SAMPLE_RATE."""
    sr = check_sample_rate(sr)
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise AudioError(f"audio is empty (shape {samples.shape})")
    mono = _mono(samples)
    if sr != SAMPLE_RATE:
        mono = soxr.resample(mono, sr, SAMPLE_RATE, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)
    _check_length(len(mono), samples.shape[0], sr)
    return np.ascontiguousarray(mono)


class AudioStream:
    """An audio file served as mono float32 samples at SAMPLE_RATE without ever holding it whole.
    ``len()`` is the number of samples; every pass (``blocks``, ``ranges``) decodes the file again.
    Made by open_audio, which has already checked the whole file."""

    def __init__(self, path: Path, sample_rate: int, n_samples: int) -> None:
        self.path = path
        self.sample_rate = sample_rate  # of the file; the samples served are at SAMPLE_RATE
        self._n_samples = n_samples

    def __len__(self) -> int:
        return self._n_samples

    def blocks(self) -> Iterator[np.ndarray]:
        """The samples, in consecutive blocks of varying length."""
        return _mono_blocks(self.path)

    def ranges(self, bounds: Iterable[tuple[int, int]]) -> Iterator[np.ndarray]:
        """Samples [start, end) for each (start, end) in ``bounds`` (cut short at the end of the
        file), decoded in one pass that keeps only the blocks still needed; neither starts nor
        ends may decrease."""
        blocks = self.blocks()
        window, offset = np.zeros(0, np.float32), 0  # window holds samples [offset, offset + len)
        for start, end in bounds:
            if start < offset or end < start:
                raise ValueError(f"ranges must move forwards, got [{start}, {end}) after sample {offset}")
            parts, filled = [window], offset + len(window)
            while filled < end and (block := next(blocks, None)) is not None:
                parts.append(block)
                filled += len(block)
                while len(parts) > 1 and offset + len(parts[0]) <= start:  # wholly before the range
                    offset += len(parts.pop(0))
            window = np.concatenate(parts)[start - offset :]
            offset = start
            yield window[: end - start]


def open_audio(path: str | Path) -> AudioStream:
    """An audio file as an AudioStream, after one pass over it that finds every problem
    load_audio would report (missing, unreadable, empty, too short, non-finite samples)."""
    path = _checked_path(path)
    with _open_sound_file(path) as sound:
        sample_rate, frames, channels = sound.samplerate, sound.frames, sound.channels
    try:
        check_sample_rate(sample_rate)
        if frames == 0:
            raise AudioError(f"audio is empty (shape (0, {channels}))")
    except AudioError as err:
        raise AudioError(f"{path}: {err}") from None
    n_samples = sum(len(block) for block in _mono_blocks(path))
    try:
        _check_length(n_samples, frames, sample_rate)
    except AudioError as err:
        raise AudioError(f"{path}: {err}") from None
    return AudioStream(path, sample_rate, n_samples)


def _checked_path(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    return path


def _open_sound_file(path: Path) -> soundfile.SoundFile:
    try:
        return soundfile.SoundFile(str(path))
    except _READ_ERRORS as err:
        raise AudioError(f"{path}: cannot read as audio ({err})") from None


def _mono_blocks(path: Path) -> Iterator[np.ndarray]:
    """Checked mono float32 blocks of the file at SAMPLE_RATE, the resampler's tail last."""
    with _open_sound_file(path) as sound:
        resampler = None
        if sound.samplerate != SAMPLE_RATE:
            resampler = soxr.ResampleStream(sound.samplerate, SAMPLE_RATE, 1, dtype="float32",
                                            quality=RESAMPLE_QUALITY)
        while True:
            try:
                block = sound.read(STREAM_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except _READ_ERRORS as err:
                raise AudioError(f"{path}: cannot read as audio ({err})") from None
            if len(block) == 0:
                break
            try:
                mono = np.ascontiguousarray(_mono(block))
            except AudioError as err:
                raise AudioError(f"{path}: {err}") from None
            yield mono if resampler is None else resampler.resample_chunk(mono)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def check_sample_values(samples: np.ndarray) -> None:
    """AudioError unless every sample is finite and within ±MAX_SAMPLE_MAGNITUDE."""
    if not np.all(np.isfinite(samples)):
        raise AudioError("audio contains non-finite samples (NaN or infinity)")
    peak = float(np.max(np.abs(samples), initial=0.0))
    if peak > MAX_SAMPLE_MAGNITUDE:
        raise AudioError(f"audio samples reach {peak:.3g}, far beyond full scale (±1); the model "
                         f"takes samples up to ±{MAX_SAMPLE_MAGNITUDE:.0e} (is the file's scaling wrong?)")


def _mono(samples: np.ndarray) -> np.ndarray:
    """Numeric samples (N,) or (N, channels) checked (check_sample_values), as mono float32
    (channel mean)."""
    if not np.issubdtype(samples.dtype, np.number):
        raise AudioError(f"audio samples must be numbers, got dtype {samples.dtype}")
    samples = samples.astype(np.float32, copy=False)
    check_sample_values(samples)
    if samples.ndim == 2:
        # A view for one channel: a long mono file is not copied again.
        samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    return samples


def _check_length(n_samples: int, n_input: int, sr: int) -> None:
    """AudioError when ``n_samples`` at SAMPLE_RATE (from ``n_input`` at ``sr``) are too few."""
    if n_samples < MIN_SAMPLES:
        raise AudioError(
            f"audio is too short ({n_input / sr * 1000:.1f} ms); at least "
            f"{MIN_SAMPLES / SAMPLE_RATE * 1000:.1f} ms is needed"
        )
