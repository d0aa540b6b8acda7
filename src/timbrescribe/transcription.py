"""Python API: transcribe a recording (file or in-memory array) into notes and tracks.

Runs on onnxruntime and numpy only; torch is never imported here.

    from timbrescribe import transcribe
    result = transcribe("quartet.wav")
    result.write_midi("quartet.mid")
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timbrescribe import outputs
from timbrescribe.audio import load_audio, prepare_audio
from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.decode import DecoderSettings, decode_notes
from timbrescribe.errors import UserError
from timbrescribe.inference import AgnosticSession
from timbrescribe.notes import Note, Track

# Name of the single track the timbre-agnostic model produces.
AGNOSTIC_TRACK_NAME = "notes"
# Decoder settings tuned on validation data for the shipped model (scripts/tune_thresholds.py).
TUNED_DECODER_PATH = Path(__file__).resolve().parent / "weights" / "decoder.json"


@dataclass
class Transcription:
    """What transcribe() found: all notes, the notes grouped into tracks, and the onset and frame
    probability maps (84 pitches from MIDI 24 x T frames) they were decoded from."""

    notes: list[Note]
    tracks: list[Track]
    onset: np.ndarray
    frame: np.ndarray
    duration_s: float
    sample_rate: int = SAMPLE_RATE  # rate of the audio the model analysed

    def write_midi(self, path: str | os.PathLike, tempo: float = 120.0) -> None:
        """Multi-track MIDI file, one instrument per track."""
        outputs.write_midi(self.tracks, path, tempo=tempo)

    def write_json(self, path: str | os.PathLike) -> None:
        """Notes per track as JSON (see timbrescribe.outputs for the keys)."""
        outputs.write_json(self.tracks, path)

    def write_csv(self, path: str | os.PathLike) -> None:
        """One CSV row per note: track, onset, offset, pitch, velocity."""
        outputs.write_csv(self.tracks, path)

    def write_plot(self, path: str | os.PathLike) -> None:
        """PNG piano roll of the tracks over the frame activations."""
        outputs.write_piano_roll_png(self.tracks, path, spectrogram=self.frame)


def package_decoder_settings(path: str | os.PathLike | None = None) -> DecoderSettings:
    """The tuned settings in ``path`` (default: the shipped TUNED_DECODER_PATH) if that file
    exists, else the DecoderSettings defaults."""
    path = Path(path) if path is not None else TUNED_DECODER_PATH
    return DecoderSettings.from_json(path) if path.is_file() else DecoderSettings()


def decoder_settings(
    onset_threshold: float | None = None,
    frame_threshold: float | None = None,
    min_note_ms: float | None = None,
) -> DecoderSettings:
    """The package's decoder settings with the given values replacing theirs (None keeps the
    package value). Raises UserError for a threshold outside (0, 1) or a non-positive length."""
    for label, value in (("onset threshold", onset_threshold), ("frame threshold", frame_threshold)):
        if value is not None and not 0.0 < value < 1.0:
            raise UserError(f"{label} must lie strictly between 0 and 1, got {value}")
    if min_note_ms is not None and not (min_note_ms > 0 and math.isfinite(min_note_ms)):
        raise UserError(f"minimum note length must be a positive number of milliseconds, got {min_note_ms}")
    overrides = {
        name: float(value)
        for name, value in (
            ("onset_threshold", onset_threshold),
            ("frame_threshold", frame_threshold),
            ("min_note_ms", min_note_ms),
        )
        if value is not None
    }
    return dataclasses.replace(package_decoder_settings(), **overrides)


def _model_input(audio: str | os.PathLike | np.ndarray, sr: int | None) -> np.ndarray:
    """Mono float32 samples at SAMPLE_RATE from a file path or from an array with its rate."""
    if isinstance(audio, (str, os.PathLike)):
        if sr is not None:
            raise UserError("sr is only for audio arrays: an audio file carries its own sample rate")
        return load_audio(audio)
    if sr is None:
        raise UserError("an audio array needs its sample rate: transcribe(samples, sr=44100)")
    return prepare_audio(audio, sr)


def transcribe(
    audio: str | os.PathLike | np.ndarray,
    sr: int | None = None,
    *,
    onset_threshold: float | None = None,
    frame_threshold: float | None = None,
    min_note_ms: float | None = None,
    threads: int | None = None,
    model_path: str | os.PathLike | None = None,
    session: AgnosticSession | None = None,
) -> Transcription:
    """Transcribe an audio file, or an array of samples (N,) or (N, channels) at ``sr`` Hz.

    None thresholds keep the package's tuned decoder settings. ``threads`` and ``model_path``
    configure a new inference session; for many files create one
    ``timbrescribe.inference.AgnosticSession`` and pass it as ``session`` instead.
    """
    if session is not None and (threads is not None or model_path is not None):
        raise ValueError("pass either a session or threads/model_path for a new one, not both")
    settings = decoder_settings(onset_threshold, frame_threshold, min_note_ms)
    samples = _model_input(audio, sr)
    if session is None:
        session = AgnosticSession(model_path=model_path, threads=threads)
    onset, frame = session.activations(samples)
    notes = decode_notes(onset, frame, settings)
    return Transcription(
        notes=notes,
        tracks=[Track(AGNOSTIC_TRACK_NAME, list(notes))],
        onset=onset,
        frame=frame,
        duration_s=len(samples) / SAMPLE_RATE,
    )
