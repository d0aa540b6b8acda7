"""Python API: transcribe a recording (file or in-memory array) into notes and tracks, one track per
instrument.

Runs on onnxruntime, numpy, scipy and scikit-learn; torch is never imported here.

    from timbrescribe import transcribe
    result = transcribe("quartet.wav")                  # number of instruments estimated
    result = transcribe("quartet.wav", instruments=4)   # or given
    result.write_midi("quartet.mid")

audio -> chunked network (onset, frame, embeddings of sounding cells) -> decoded notes -> one
pooled timbre vector per note -> clustered into tracks. ``instruments=1`` runs the lighter
note model alone and gives one track.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from timbrescribe import outputs
from timbrescribe.audio import AudioStream, open_audio, prepare_audio
from timbrescribe.clustering import ClusterSettings, Clustering, cluster_notes
from timbrescribe.constants import EMBEDDING_DIM, SAMPLE_RATE
from timbrescribe.decode import DecoderSettings, decode_notes, dense_ends
from timbrescribe.errors import UserError
from timbrescribe.inference import WEIGHTS_DIR, AgnosticSession
from timbrescribe.notes import Note, Track
from timbrescribe.options import open_session
from timbrescribe.pooling import CellStore

# Name of the single track the timbre-agnostic model produces.
AGNOSTIC_TRACK_NAME = "notes"
# Decoder settings tuned on validation data for each shipped graph (scripts/tune_thresholds.py):
# the note model's (agnostic.onnx, one track) and the separation model's (its own note branch).
TUNED_DECODER_PATH = WEIGHTS_DIR / "decoder.json"
TUNED_SEPARATION_DECODER_PATH = WEIGHTS_DIR / "separation.decoder.json"
# Clustering settings chosen on validation data for the shipped separation model
# (scripts/tune_separation.py).
TUNED_CLUSTERING_PATH = WEIGHTS_DIR / "clustering.json"
# Cells whose frame activation reaches this share of the decoder's frame threshold keep their
# embedding for pooling (notes bridge short dips below the threshold; weaker cells weigh little).
CELL_FLOOR_RATIO = 0.5
MAX_INSTRUMENTS = len(outputs.MELODIC_CHANNELS)  # one MIDI channel per pitched track


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
    instruments_estimated: bool = False  # True when the number of tracks was estimated

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


def tuned_decoder_path(separation: bool) -> Path:
    """The shipped decoder settings file of the separation graph (``separation``) or of the note graph."""
    return TUNED_SEPARATION_DECODER_PATH if separation else TUNED_DECODER_PATH


def package_decoder_settings(path: str | os.PathLike | None = None, *, separation: bool = False) -> DecoderSettings:
    """The tuned settings in ``path`` (default: the shipped file of the separation graph or of the
    note graph, tuned_decoder_path) if that file exists, else the DecoderSettings defaults."""
    path = Path(path) if path is not None else tuned_decoder_path(separation)
    return DecoderSettings.from_json(path) if path.is_file() else DecoderSettings()


def decoder_overrides(
    onset_threshold: float | None = None,
    frame_threshold: float | None = None,
    min_note_ms: float | None = None,
) -> dict[str, float]:
    """The given decoder values by DecoderSettings field (None: not given). Raises UserError for a
    threshold outside (0, 1) or a non-positive length."""
    for label, value in (("onset threshold", onset_threshold), ("frame threshold", frame_threshold)):
        if value is not None and not 0.0 < value < 1.0:
            raise UserError(f"{label} must lie strictly between 0 and 1, got {value}")
    if min_note_ms is not None and not (min_note_ms > 0 and math.isfinite(min_note_ms)):
        raise UserError(f"minimum note length must be a positive number of milliseconds, got {min_note_ms}")
    return {
        name: float(value)
        for name, value in (
            ("onset_threshold", onset_threshold),
            ("frame_threshold", frame_threshold),
            ("min_note_ms", min_note_ms),
        )
        if value is not None
    }


def decoder_settings(
    onset_threshold: float | None = None,
    frame_threshold: float | None = None,
    min_note_ms: float | None = None,
    *,
    separation: bool = False,
) -> DecoderSettings:
    """The package's decoder settings for the separation graph (``separation``) or the note graph,
    with the given values replacing theirs (None keeps the package value; decoder_overrides). A
    frame threshold given takes the dense-frame threshold with it, in proportion: in dense chords
    notes then last down to the same share of the new threshold as of the tuned one."""
    tuned = package_decoder_settings(separation=separation)
    overrides = decoder_overrides(onset_threshold, frame_threshold, min_note_ms)
    if "frame_threshold" in overrides and tuned.frame_threshold > 0:
        ratio = tuned.dense_frame_threshold / tuned.frame_threshold
        overrides["dense_frame_threshold"] = min(1.0, ratio * overrides["frame_threshold"])
    return dataclasses.replace(tuned, **overrides)


def package_cluster_settings(path: str | os.PathLike | None = None) -> ClusterSettings:
    """The tuned clustering settings in ``path`` (default: TUNED_CLUSTERING_PATH) if that file
    exists, else the ClusterSettings defaults."""
    path = Path(path) if path is not None else TUNED_CLUSTERING_PATH
    return ClusterSettings.from_json(path) if path.is_file() else ClusterSettings()


def parse_instruments(value: str | int) -> int | None:
    """The number of instruments from "auto" (None: estimate it) or a whole number 1..15;
    UserError for anything else."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        number = int(value)
        if isinstance(value, float) or isinstance(value, bool) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"instruments must be 'auto' or a whole number from 1 to {MAX_INSTRUMENTS}, got {value!r}") from None
    if not 1 <= number <= MAX_INSTRUMENTS:
        raise UserError(f"instruments must be 'auto' or a whole number from 1 to {MAX_INSTRUMENTS}, got {number}")
    return number


def tracks_from_clustering(notes: list[Note], clustering: Clustering) -> list[Track]:
    """One track per group, ordered by mean pitch from high to low and named "instrument 1..K";
    empty groups (more groups asked for than notes found) come last."""
    groups = [[note for note, label in zip(notes, clustering.labels) if label == g] for g in range(clustering.k)]
    confidences = [clustering.confidence[clustering.labels == g] for g in range(clustering.k)]
    order = sorted(range(clustering.k), key=lambda g: (not groups[g], -np.mean([n.pitch for n in groups[g]] or [0])))
    return [
        Track(f"instrument {rank}", groups[g], confidence=float(confidences[g].mean()) if groups[g] else None)
        for rank, g in enumerate(order, start=1)
    ]


@dataclass
class Analysis:
    """What the network and decoder give before clustering: the notes, one timbre vector per note
    (None without embeddings), and the activation maps."""

    notes: list[Note]
    vectors: np.ndarray | None
    onset: np.ndarray
    frame: np.ndarray


def analyse(
    samples: np.ndarray | AudioStream, session: AgnosticSession, settings: DecoderSettings, with_vectors: bool,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Run the chunked network over mono SAMPLE_RATE audio (an array, or a file streamed by
    audio.open_audio), decode notes and, ``with_vectors``, pool each note's timbre vector from the
    cells kept while the chunks passed. ``progress(done, total)`` follows the chunks. A separation
    graph's notes are decoded with the dense-frame rule off, the notes to cluster:
    decode.dense_ends applies it after clustering (decode.separated_notes)."""
    cells = CellStore(CELL_FLOOR_RATIO * settings.frame_threshold) if with_vectors else None
    onset, frame = session.activations(samples, progress=progress, cells=cells)
    notes = decode_notes(onset, frame, settings.without_dense_rule() if session.has_embeddings else settings)
    vectors = cells.pool(notes, EMBEDDING_DIM) if cells is not None else None
    return Analysis(notes, vectors, onset, frame)


def _model_input(audio: str | os.PathLike | np.ndarray, sr: int | None) -> np.ndarray | AudioStream:
    """Mono float32 samples at SAMPLE_RATE: a checked stream of a file path (never held whole), or
    an array made from an array and its rate."""
    if isinstance(audio, (str, os.PathLike)):
        if sr is not None:
            raise UserError("sr is only for audio arrays: an audio file carries its own sample rate")
        return open_audio(audio)
    if sr is None:
        raise UserError("an audio array needs its sample rate: transcribe(samples, sr=44100)")
    return prepare_audio(audio, sr)


def transcribe(
    audio: str | os.PathLike | np.ndarray,
    sr: int | None = None,
    *,
    instruments: str | int = "auto",
    onset_threshold: float | None = None,
    frame_threshold: float | None = None,
    min_note_ms: float | None = None,
    threads: int | None = None,
    model_path: str | os.PathLike | None = None,
    session: AgnosticSession | None = None,
    progress: Callable[[int, int], None] | None = None,
    decoder: DecoderSettings | None = None,
) -> Transcription:
    """Transcribe an audio file, or an array of samples (N,) or (N, channels) at ``sr`` Hz
    (1 kHz to 768 kHz), into one track per instrument.

    ``instruments``: "auto" estimates how many instruments play; a number 1..15 fixes it (1: one
    track from the note model alone). None thresholds keep the package's decoder settings tuned for
    the session's graph (note or separation model);
    ``decoder`` replaces those settings as a whole (e.g. the ones tuned for another model).
    ``threads`` (1 to 4 x the cores) and ``model_path`` configure a new inference session, whose
    model files are checked first; for many files create one with
    ``timbrescribe.options.open_session`` and pass it as ``session`` instead.
    ``progress(done, total)`` is called as the model's chunks pass (for a progress bar).
    """
    if session is not None and (threads is not None or model_path is not None):
        raise ValueError("pass either a session or threads/model_path for a new one, not both")
    k = parse_instruments(instruments)
    if decoder is not None and (onset_threshold, frame_threshold, min_note_ms) != (None, None, None):
        raise ValueError("pass either decoder settings or threshold overrides, not both")
    decoder_overrides(onset_threshold, frame_threshold, min_note_ms)  # bad values fail before loading
    if session is None:
        session = open_session(k, model_path, threads)
    elif k != 1 and not session.has_embeddings:
        raise UserError("this session's model gives no timbre embeddings: use a SeparationSession, or instruments=1")
    settings = decoder if decoder is not None else decoder_settings(
        onset_threshold, frame_threshold, min_note_ms, separation=session.has_embeddings)
    samples = _model_input(audio, sr)
    analysis = analyse(samples, session, settings, with_vectors=k != 1, progress=progress)
    notes = analysis.notes
    clustering = None
    if analysis.vectors is not None:
        clustering = cluster_notes(analysis.vectors, k, package_cluster_settings(), notes)
    if session.has_embeddings:  # the same notes in the same order, with the dense rule's ends
        notes = dense_ends(notes, analysis.frame, settings)
    if clustering is None:
        tracks = [Track(AGNOSTIC_TRACK_NAME, list(notes))]
    else:
        tracks = tracks_from_clustering(notes, clustering)
    return Transcription(
        notes=notes,
        tracks=tracks,
        onset=analysis.onset,
        frame=analysis.frame,
        duration_s=len(samples) / SAMPLE_RATE,
        instruments_estimated=k is None,
    )
