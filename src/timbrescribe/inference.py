"""Chunked onnxruntime inference of the exported models (numpy + onnxruntime only, no torch).

An exported model is two ONNX files (see export.py):
- ``<name>.onnx``: audio (1, n) + energy_moments (1, 3) -> onset, frame (1, 84, n_frames(n)) and,
  for the separation model, embedding (1, 12, 84, n_frames(n));
- ``<name>.energy.onnx``: audio (1, n) -> per-frame CQT energy (1, n_frames(n)), no network.

Pass 1 sums [count, Σ E, Σ E²] of the whole file chunk by chunk; pass 2 runs the network on
overlapping chunks with that file statistic and keeps the centre of each. Memory is bounded by the
chunk size, not the file length, and the result equals one whole-file run up to float rounding.
Embeddings never exist for the whole file: each chunk's sounding cells go to a CellStore
(pooling.py) and the rest is dropped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from timbrescribe.audio import AudioStream, check_sample_values
from timbrescribe.constants import FRAME_RATE, HOP, N_PITCHES, SAMPLE_RATE, n_frames
from timbrescribe.errors import UserError
from timbrescribe.pooling import CellStore

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL_PATH = WEIGHTS_DIR / "agnostic.onnx"
SEPARATION_MODEL_PATH = WEIGHTS_DIR / "separation.onnx"
EMBEDDING_OUTPUT = "embedding"
# Audio kept per chunk: onnxruntime's working memory grows with it, the context overhead shrinks.
# Note model: 6 s take about 35 MB (15 s: 90 MB) for 10 % more CPU time (context overhead 37 %).
# Separation model: 3 s take about 65 MB (15 s: 200 MB) for 45 % more CPU time. These sizes keep
# a 60-minute file inside its memory bound beside its whole-file onset and frame maps.
DEFAULT_CHUNK_SECONDS = 6.0
SEPARATION_CHUNK_SECONDS = 3.0
# Files up to this long are cut into SHORT_FILE_CHUNK_SECONDS chunks instead: their maps are small,
# so memory allows longer chunks, which spend less time on context (15 % instead of 37 % / 74 %).
# Longer files keep their whole-file maps as float16 (2 x 52 MB per 30 minutes instead of
# 2 x 104 MB): probabilities keep 3 significant digits, far finer than any threshold matters.
SHORT_FILE_SECONDS = 600.0
SHORT_FILE_CHUNK_SECONDS = 15.0

# Frames of context on each side of a chunk's kept centre. A frame depends on input up to 94
# frames away: the lowest CQT kernel spans ±138 samples at 1/128 of the rate (±69 frames), the
# 7 half-band stages add ±2032 samples (±8 frames), and the network's convolutions ±9 frames
# (±17 for a timbre branch at time stride 2).
CONTEXT_FRAMES = 96
# The parts of that reach, for graphs that need more (export.context_frames): the front end's
# 69 + 8 frames and the note branch's convolutions' 9.
FRONT_END_REACH_FRAMES = 77
NOTE_BRANCH_REACH_FRAMES = 9
# A network that reaches further in time (the "temporal" layouts' TimeContexts) states the
# context it needs under this key of its ONNX metadata (export.py); without it, CONTEXT_FRAMES.
CONTEXT_METADATA_KEY = "context_frames"
# Chunks keep a multiple of this many frames, so that with CONTEXT_FRAMES (a multiple too) every
# chunk starts on an even frame: a timbre branch at time stride 2 computes the file's even frames
# whichever chunk it runs in (model.TimbreBranch).
CHUNK_FRAME_MULTIPLE = 2


class ModelNotFoundError(UserError):
    """The ONNX model files are missing."""


def energy_model_path(model_path: str | Path) -> Path:
    """Path of the energy graph that belongs to the network graph at ``model_path``."""
    return Path(model_path).with_suffix(".energy.onnx")


# (first, end, keep_first, keep_end) frames of a chunk, see chunk_spans.
Span = tuple[int, int, int, int]


def chunk_frames(seconds: float) -> int:
    """Frames kept per chunk of ``seconds`` of audio: the nearest positive multiple of
    CHUNK_FRAME_MULTIPLE."""
    return CHUNK_FRAME_MULTIPLE * max(1, round(seconds * FRAME_RATE / CHUNK_FRAME_MULTIPLE))


def chunk_spans(total_frames: int, chunk_frames: int, context: int = CONTEXT_FRAMES) -> Iterator[Span]:
    """(first, end) frames computed and (keep_first, keep_end) frames kept, per chunk: the kept
    ranges tile [0, total_frames); each computed range adds up to ``context`` frames on both sides."""
    for keep_first in range(0, total_frames, chunk_frames):
        keep_end = min(total_frames, keep_first + chunk_frames)
        first = max(0, keep_first - context)
        end = min(total_frames, keep_end + context)
        yield first, end, keep_first, keep_end


class AgnosticSession:
    """onnxruntime sessions of an exported model. ``model_path`` defaults to the agnostic weights
    shipped in the package; ``threads`` sets onnxruntime's intra-op threads (None: its default).
    ``has_embeddings`` tells whether the model also gives timbre embeddings."""

    default_model_path = DEFAULT_MODEL_PATH
    chunk_seconds = DEFAULT_CHUNK_SECONDS  # default of activations()

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None) -> None:
        import onnxruntime

        network_path = Path(model_path) if model_path is not None else self.default_model_path
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
        self.output_names = [output.name for output in self.network.get_outputs()]
        missing = {"onset", "frame"} - set(self.output_names)
        if missing:
            raise UserError(f"{network_path}: not a timbrescribe model (outputs {self.output_names}, "
                            f"missing {sorted(missing)})")
        self.has_embeddings = EMBEDDING_OUTPUT in self.output_names
        metadata = self.network.get_modelmeta().custom_metadata_map
        self.context_frames = int(metadata.get(CONTEXT_METADATA_KEY, CONTEXT_FRAMES))
        self._shrink_arena = onnxruntime.RunOptions()
        self._shrink_arena.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def activations(
        self,
        audio: np.ndarray | AudioStream,
        chunk_seconds: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        cells: CellStore | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Onset and frame probabilities, each (84, n_frames(len(audio))), of mono 22050 Hz
        audio: an array, or an AudioStream (audio.open_audio) that is decoded once per pass and
        never held whole; both give the same maps. ``chunk_seconds``: audio kept from each chunk
        (None: SHORT_FILE_CHUNK_SECONDS up to SHORT_FILE_SECONDS of audio, the session's
        ``chunk_seconds`` for longer files). The maps are float32 up to SHORT_FILE_SECONDS of
        audio and float16 beyond (see there). ``progress(done, total)`` is called after
        every chunk of both passes. ``cells``: receives the embeddings of the sounding cells
        (separation models only)."""
        if cells is not None and not self.has_embeddings:
            raise ValueError("this model gives no embeddings")
        if not isinstance(audio, AudioStream):
            audio = _checked_audio(audio)
        short = len(audio) <= SHORT_FILE_SECONDS * SAMPLE_RATE
        if chunk_seconds is None:
            chunk_seconds = SHORT_FILE_CHUNK_SECONDS if short else self.chunk_seconds
        spans = list(chunk_spans(n_frames(len(audio)), chunk_frames(chunk_seconds), self.context_frames))

        def report(done: int) -> None:
            if progress is not None:
                progress(done, 2 * len(spans))

        moments = self._energy_moments(audio, spans, report)
        self._release_memory(self.energy, {})
        dtype = np.float32 if short else np.float16
        onset, frame = self._network_maps(audio, spans, moments, cells, dtype, lambda done: report(len(spans) + done))
        self._release_memory(self.network, {"energy_moments": moments})
        return onset, frame

    def _energy_moments(
        self, audio: np.ndarray | AudioStream, spans: list[Span], report: Callable[[int], None]
    ) -> np.ndarray:
        """Pass 1: [count, Σ E, Σ E²] of the per-frame energies of the whole file, (1, 3) float32."""
        moments = np.zeros(3, dtype=np.float64)
        for done, (span, chunk) in enumerate(zip(spans, _chunks(audio, spans)), start=1):
            (energy,) = self.energy.run(None, {"audio": chunk})
            kept = _kept(energy[0], span).astype(np.float64)
            moments += (kept.size, kept.sum(), np.square(kept).sum())
            report(done)
        return moments.astype(np.float32)[None]

    def _network_maps(
        self, audio: np.ndarray | AudioStream, spans: list[Span], moments: np.ndarray,
        cells: CellStore | None, dtype: type, report: Callable[[int], None],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pass 2: the onset and frame maps (``dtype``) of the whole file from the network, chunk
        by chunk; the sounding cells' embeddings go to ``cells``."""
        total_frames = spans[-1][3]
        onset = np.empty((N_PITCHES, total_frames), dtype=dtype)
        frame = np.empty((N_PITCHES, total_frames), dtype=dtype)
        wanted = ["onset", "frame"] + ([EMBEDDING_OUTPUT] if cells is not None else [])
        for done, (span, chunk) in enumerate(zip(spans, _chunks(audio, spans)), start=1):
            outputs = self.network.run(wanted, {"audio": chunk, "energy_moments": moments})
            onset[:, span[2] : span[3]] = _kept(outputs[0][0], span)
            frame[:, span[2] : span[3]] = _kept(outputs[1][0], span)
            if cells is not None:
                cells.add(_kept(outputs[1][0], span), _kept(outputs[2][0], span), span[2])
            report(done)
        return onset, frame

    def _release_memory(self, session, feed: dict[str, np.ndarray]) -> None:
        """Hand the working memory of ``session`` back to the system after a pass, so that what
        follows (the other pass; decoding, pooling, clustering) does not run beside it.
        onnxruntime shrinks its arena only at the end of a run, and only the regions no tensor
        occupies (the arrays a run returns are views into the arena): so this is an extra run on
        one hop of silence, made once the pass's own outputs are gone."""
        session.run(None, {"audio": np.zeros((1, HOP), np.float32), **feed}, self._shrink_arena)


class SeparationSession(AgnosticSession):
    """Sessions of the separation model (onset, frame and embedding); default: the shipped one."""

    default_model_path = SEPARATION_MODEL_PATH
    chunk_seconds = SEPARATION_CHUNK_SECONDS

    def __init__(self, model_path: str | Path | None = None, threads: int | None = None) -> None:
        super().__init__(model_path, threads)
        if not self.has_embeddings:
            raise UserError(f"{model_path}: this model gives no timbre embeddings; a separation model "
                            "(export_separation_onnx) is needed to split instruments")


def _checked_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise UserError(f"expected mono audio (one dimension), got shape {audio.shape}")
    if audio.size == 0:
        raise UserError("the audio is empty")
    check_sample_values(audio)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _chunks(audio: np.ndarray | AudioStream, spans: list[Span]) -> Iterator[np.ndarray]:
    """For each span, the (1, n) samples whose frames are exactly its computed frames [first, end)."""
    bounds = [(first * HOP, min(end * HOP, len(audio))) for first, end, _, _ in spans]
    if isinstance(audio, AudioStream):
        pieces = audio.ranges(bounds)
    else:
        pieces = (audio[start:end] for start, end in bounds)
    for (start, end), piece in zip(bounds, pieces):
        if len(piece) != end - start:  # a stream's file shrank after open_audio read it
            raise UserError(f"{audio.path}: the file changed while it was being read")
        yield piece[None]


def _kept(values: np.ndarray, span: Span) -> np.ndarray:
    """The kept frames (last axis) of a chunk's output."""
    first, _, keep_first, keep_end = span
    return values[..., keep_first - first : keep_end - first]
