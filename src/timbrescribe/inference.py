"""Chunked onnxruntime inference of the agnostic note model (numpy + onnxruntime only, no torch).

The exported model is two ONNX files (see export.py):
- ``agnostic.onnx``: audio (1, n) + energy_moments (1, 3) -> onset, frame (1, 84, n_frames(n)).
- ``agnostic.energy.onnx``: audio (1, n) -> per-frame CQT energy (1, n_frames(n)), no network.

Pass 1 sums [count, Σ E, Σ E²] of the whole file chunk by chunk; pass 2 runs the network on
overlapping chunks with that file statistic and keeps the centre of each. Memory is bounded by the
chunk size, not the file length, and the result equals one whole-file run up to float rounding.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from timbrescribe.constants import FRAME_RATE, HOP, N_PITCHES, n_frames
from timbrescribe.errors import UserError

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "weights" / "agnostic.onnx"
DEFAULT_CHUNK_SECONDS = 15.0  # ≈ 230 MB peak RSS for a 10-minute file, 15 % context overhead

# Frames of context on each side of a chunk's kept centre. A frame depends on input up to 86
# frames away: the lowest CQT kernel spans ±138 samples at 1/128 of the rate (±69 frames), the
# 7 half-band stages add ±2032 samples (±8 frames), and the network's convolutions ±9 frames.
CONTEXT_FRAMES = 96


class ModelNotFoundError(UserError):
    """The ONNX model files are missing."""


def energy_model_path(model_path: str | Path) -> Path:
    """Path of the energy graph that belongs to the network graph at ``model_path``."""
    return Path(model_path).with_suffix(".energy.onnx")


def chunk_spans(total_frames: int, chunk_frames: int) -> Iterator[tuple[int, int, int, int]]:
    """(first, end) frames computed and (keep_first, keep_end) frames kept, per chunk: the kept
    ranges tile [0, total_frames); each computed range adds up to CONTEXT_FRAMES on both sides."""
    for keep_first in range(0, total_frames, chunk_frames):
        keep_end = min(total_frames, keep_first + chunk_frames)
        first = max(0, keep_first - CONTEXT_FRAMES)
        end = min(total_frames, keep_end + CONTEXT_FRAMES)
        yield first, end, keep_first, keep_end


class AgnosticSession:
    """onnxruntime sessions of the exported agnostic model. ``model_path`` defaults to the weights
    shipped in the package; ``threads`` sets onnxruntime's intra-op threads (None: its default)."""

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None) -> None:
        import onnxruntime

        network_path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
        for path in (network_path, energy_model_path(network_path)):
            if not path.is_file():
                raise ModelNotFoundError(
                    f"model file not found: {path} (export one with timbrescribe.export)"
                )
        options = onnxruntime.SessionOptions()
        # The default level, stated because it matters: ORT_ENABLE_ALL includes the NCHWc layout
        # transform, whose blocked convolutions ran the network 1.4x faster on one AVX-512 thread
        # than ORT_ENABLE_EXTENDED (CPU time 0.0094 vs 0.0130 x real time, random weights).
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Memory patterns pre-plan buffers per input shape; off, the peak RSS of a 10-minute file
        # (20 s chunks) fell from 378 to 275 MB at the same speed.
        options.enable_mem_pattern = False
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.network = onnxruntime.InferenceSession(str(network_path), options, providers=providers)
        self.energy = onnxruntime.InferenceSession(
            str(energy_model_path(network_path)), options, providers=providers
        )

    def activations(
        self,
        audio: np.ndarray,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Onset and frame probabilities, each (84, n_frames(len(audio))) float32, of mono
        22050 Hz audio. ``progress(done, total)`` is called after every chunk of both passes."""
        audio = _checked_audio(audio)
        total_frames = n_frames(len(audio))
        chunk_frames = max(1, int(round(chunk_seconds * FRAME_RATE)))
        spans = list(chunk_spans(total_frames, chunk_frames))
        steps = 2 * len(spans)

        moments = np.zeros(3, dtype=np.float64)
        for step, span in enumerate(spans, start=1):
            (energy,) = self.energy.run(None, {"audio": _chunk_audio(audio, span)})
            kept = _kept(energy[0], span).astype(np.float64)
            moments += (kept.size, kept.sum(), np.square(kept).sum())
            if progress is not None:
                progress(step, steps)

        feed_moments = moments.astype(np.float32)[None]
        onset = np.empty((N_PITCHES, total_frames), dtype=np.float32)
        frame = np.empty((N_PITCHES, total_frames), dtype=np.float32)
        for step, span in enumerate(spans, start=len(spans) + 1):
            chunk_onset, chunk_frame = self.network.run(
                None, {"audio": _chunk_audio(audio, span), "energy_moments": feed_moments}
            )
            onset[:, span[2] : span[3]] = _kept(chunk_onset[0], span)
            frame[:, span[2] : span[3]] = _kept(chunk_frame[0], span)
            if progress is not None:
                progress(step, steps)
        return onset, frame


def _checked_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise UserError(f"expected mono audio (one dimension), got shape {audio.shape}")
    if audio.size == 0:
        raise UserError("the audio is empty")
    if not np.all(np.isfinite(audio)):
        raise UserError("the audio contains NaN or infinite samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _chunk_audio(audio: np.ndarray, span: tuple[int, int, int, int]) -> np.ndarray:
    """(1, n) samples whose frames are exactly the span's computed frames [first, end)."""
    first, end = span[0], span[1]
    return audio[None, first * HOP : end * HOP]


def _kept(values: np.ndarray, span: tuple[int, int, int, int]) -> np.ndarray:
    """The kept frames (last axis) of a chunk's output."""
    first, _, keep_first, keep_end = span
    return values[..., keep_first - first : keep_end - first]
