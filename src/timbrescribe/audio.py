"""Audio input: any common file (wav, flac, ogg, mp3) -> mono float32 at the model's sample rate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from timbrescribe.constants import HOP, SAMPLE_RATE
from timbrescribe.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
# Shorter input than one hop gives no usable frame context; real recordings are far longer.
MIN_SAMPLES = HOP


class AudioError(UserError):
    """The audio cannot be used as it is (missing, unreadable, empty, too short, non-finite)."""


def load_audio(path: str | Path) -> np.ndarray:
    """Read an audio file, down-mix to mono and resample to SAMPLE_RATE with soxr (high quality)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        samples, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioError(f"{path}: cannot read as audio ({err})") from None
    try:
        return prepare_audio(samples, sr)
    except AudioError as err:
        raise AudioError(f"{path}: {err}") from None


def prepare_audio(samples: np.ndarray, sr: int) -> np.ndarray:
    """Check and convert in-memory audio: (N,) or (N, channels) at ``sr`` Hz -> mono float32 (N',)
    at SAMPLE_RATE."""
    samples = np.asarray(samples)
    if not (isinstance(sr, (int, np.integer)) and sr > 0):
        raise AudioError(f"sample rate must be a positive integer, got {sr!r}")
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise AudioError(f"audio is empty (shape {samples.shape})")
    if not np.issubdtype(samples.dtype, np.number):
        raise AudioError(f"audio samples must be numbers, got dtype {samples.dtype}")
    samples = samples.astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        raise AudioError("audio contains non-finite samples (NaN or infinity)")
    if samples.ndim == 2:
        # A view for one channel: a long mono file is not copied again.
        samples = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)
    mono = samples
    if sr != SAMPLE_RATE:
        mono = soxr.resample(mono, sr, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    if mono.shape[0] < MIN_SAMPLES:
        seconds = samples.shape[0] / sr
        raise AudioError(
            f"audio is too short ({seconds * 1000:.1f} ms); at least "
            f"{MIN_SAMPLES / SAMPLE_RATE * 1000:.1f} ms is needed"
        )
    return np.ascontiguousarray(mono)
