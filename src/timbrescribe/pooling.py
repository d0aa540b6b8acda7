"""Per-note timbre vectors from cell embeddings (DESIGN.md §5), numpy only.

A note's vector is the mean of the embeddings of the cells at its pitch over its frames, weighted
by the frame activation, then L2-normalised. Only cells that can belong to a note are needed, so
the chunked runtime keeps just the cells whose frame activation reaches a floor (CellStore):
memory grows with the number of sounding cells, never with pitches x frames x embedding size.
"""
from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence

import numpy as np

from timbrescribe.constants import MIDI_MIN, N_PITCHES
from timbrescribe.data.labels import note_frames
from timbrescribe.notes import Note

# Cells stored per segment (2 MiB for 12 dimensions) and pooled together at most (unless one pitch
# row holds more; about 110 bytes each at a time).
SEGMENT_CELLS = 1 << 16
POOL_BLOCK_CELLS = 1 << 16


def cell_dtype(dim: int) -> np.dtype:
    """One stored cell: its file frame, activation weight and embedding (32 bytes for 12 dims)."""
    return np.dtype([("frame", np.int32), ("weight", np.float32), ("embedding", np.float16, (dim,))])


class CellStore:
    """Sounding pitch-time cells of a file, added chunk by chunk in time order (cell_dtype records;
    a chunk's cells in row-major order, with where each pitch row's cells begin).

    The records fill segments that are anonymous memory maps, so that a dropped store hands its
    memory straight back to the system: as many small heap arrays it would stay with the process
    and add to the peak of what runs next (clustering)."""

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self._segments: list[np.ndarray] = []
        self._filled = 0  # records used in the last segment
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []  # (records, row starts) per chunk
        self._n_frames = 0

    def add(self, frame: np.ndarray, embedding: np.ndarray, first_frame: int) -> None:
        """Keep the cells of a chunk whose activation reaches the floor. ``frame`` (84, t) holds
        activations, ``embedding`` (d, 84, t) the cells' embeddings; the chunk starts at file
        frame ``first_frame``. Chunks must come in time order."""
        rows, cols = np.nonzero(frame >= self.floor)
        cells = self._reserve(len(rows), cell_dtype(embedding.shape[0]))
        cells["frame"] = cols + first_frame
        cells["weight"] = frame[rows, cols]
        cells["embedding"] = embedding[:, rows, cols].T
        self._chunks.append((cells, np.searchsorted(rows, np.arange(N_PITCHES + 1))))
        self._n_frames = max(self._n_frames, first_frame + frame.shape[1])

    @property
    def n_cells(self) -> int:
        return sum(len(cells) for cells, _ in self._chunks)

    @property
    def nbytes(self) -> int:
        return sum(cells.nbytes + row_starts.nbytes for cells, row_starts in self._chunks)

    def pool(self, notes: Sequence[Note], dim: int) -> np.ndarray:
        """(len(notes), dim) unit vectors, one per note; zero for a note with no stored cell.
        Works through blocks of pitch rows, so memory beyond the store stays bounded."""
        if not notes or not self._chunks:
            return np.zeros((len(notes), dim), np.float32)
        rows = np.array([n.pitch - MIDI_MIN for n in notes], np.int64)
        starts, ends = note_frames(np.array([n.onset for n in notes]), np.array([n.offset for n in notes]))
        span = max(self._n_frames, int(ends.max())) + 1  # row * span + frame orders cells by (row, frame)
        pooled = np.zeros((len(notes), dim))
        for first, last in self._row_blocks():
            keys, cells = self._cells_of_rows(first, last, span)
            mine = np.flatnonzero((rows >= first) & (rows < last))
            lo = np.searchsorted(keys, rows[mine] * span + starts[mine], side="left")
            hi = np.searchsorted(keys, rows[mine] * span + ends[mine], side="left")
            totals = np.zeros(len(cells) + 1)  # weighted sums of the cells before each index
            for d in range(dim):
                np.cumsum(cells["embedding"][:, d] * cells["weight"], dtype=np.float64, out=totals[1:])
                pooled[mine, d] = totals[hi] - totals[lo]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.where(norms > 0, pooled / np.maximum(norms, 1e-12), 0.0).astype(np.float32)

    def _reserve(self, n: int, dtype: np.dtype) -> np.ndarray:
        """``n`` unused records: the rest of the last segment, or the start of a new one."""
        if not self._segments or self._filled + n > len(self._segments[-1]):
            size = max(SEGMENT_CELLS, n)
            self._segments.append(np.frombuffer(mmap.mmap(-1, size * dtype.itemsize), dtype))
            self._filled = 0
        cells = self._segments[-1][self._filled : self._filled + n]
        self._filled += n
        return cells

    def _row_blocks(self) -> Iterator[tuple[int, int]]:
        """Consecutive row ranges [first, last) covering all rows, each holding at most
        POOL_BLOCK_CELLS cells or a single row."""
        counts = sum(np.diff(row_starts) for _, row_starts in self._chunks)
        first, held = 0, 0
        for row, count in enumerate(counts):
            if row > first and held + count > POOL_BLOCK_CELLS:
                yield first, row
                first, held = row, 0
            held += count
        yield first, N_PITCHES

    def _cells_of_rows(self, first: int, last: int, span: int) -> tuple[np.ndarray, np.ndarray]:
        """The cells of rows [first, last) in (row, frame) order, and their keys row * span + frame."""
        keys, parts = [], []
        for cells, row_starts in self._chunks:
            a, b = row_starts[first], row_starts[last]
            chunk_rows = np.repeat(np.arange(first, last), np.diff(row_starts[first : last + 1]))
            keys.append(chunk_rows * span + cells["frame"][a:b])
            parts.append(cells[a:b])
        all_keys = np.concatenate(keys)
        order = np.argsort(all_keys, kind="stable")
        return all_keys[order], np.concatenate(parts)[order]


def pool_dense(embedding: np.ndarray, weight: np.ndarray, notes: Sequence[Note]) -> np.ndarray:
    """Per-note unit vectors from whole-file arrays: embedding (d, 84, T), weight (84, T)."""
    store = CellStore(floor=np.finfo(np.float32).tiny)
    store.add(weight, embedding, 0)
    return store.pool(notes, embedding.shape[0])

