"""Per-note timbre vectors pooled from sounding cells."""
import numpy as np

from timbrescribe import pooling
from timbrescribe.constants import MIDI_MIN, frame_to_time, time_to_frame
from timbrescribe.notes import Note
from timbrescribe.pooling import CellStore, pool_dense


def _note(row: int, start: int, end: int) -> Note:
    return Note(frame_to_time(start), frame_to_time(end), MIDI_MIN + row)


def test_pooled_vector_is_the_activation_weighted_mean_at_the_note_pitch():
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((12, 84, 100)).astype(np.float32)
    weight = rng.uniform(0, 1, (84, 100)).astype(np.float32)
    notes = [_note(30, 10, 25), _note(5, 0, 3), _note(83, 90, 100)]
    pooled = pool_dense(embedding, weight, notes)
    for vector, (row, start, end) in zip(pooled, [(30, 10, 25), (5, 0, 3), (83, 90, 100)]):
        expected = (embedding[:, row, start:end] * weight[row, start:end]).sum(axis=1)
        expected /= np.linalg.norm(expected)
        np.testing.assert_allclose(vector, expected, atol=2e-3)  # embeddings are kept as float16
        assert abs(np.linalg.norm(vector) - 1.0) < 1e-5


def test_chunks_give_the_same_vectors_as_one_pass_and_only_sounding_cells_are_kept():
    rng = np.random.default_rng(1)
    embedding = rng.standard_normal((12, 84, 300)).astype(np.float32)
    frame = np.where(rng.uniform(0, 1, (84, 300)) > 0.9, 0.8, 0.01).astype(np.float32)
    notes = [_note(r, s, s + 40) for r, s in [(3, 0), (40, 95), (70, 250), (12, 140)]]
    whole = CellStore(0.1)
    whole.add(frame, embedding, 0)
    chunked = CellStore(0.1)
    for first in range(0, 300, 100):
        chunked.add(frame[:, first : first + 100], embedding[..., first : first + 100], first)
    np.testing.assert_array_equal(whole.pool(notes, 12), chunked.pool(notes, 12))
    assert whole.n_cells == chunked.n_cells == int((frame >= 0.1).sum())
    assert whole.nbytes < embedding.nbytes / 5


def test_a_note_without_stored_cells_gets_a_zero_vector_and_no_notes_give_an_empty_array():
    store = CellStore(0.5)
    store.add(np.zeros((84, 50), np.float32), np.ones((12, 84, 50), np.float32), 0)
    assert not store.pool([_note(10, 0, 20)], 12).any()
    assert store.pool([], 12).shape == (0, 12)


def test_pooling_in_blocks_of_rows_matches_the_weighted_sums_and_cells_take_32_bytes(monkeypatch):
    rng = np.random.default_rng(2)
    embedding = rng.standard_normal((12, 84, 600)).astype(np.float32)
    frame = (rng.uniform(0, 1, (84, 600)) ** 2).astype(np.float32)
    rows, starts, lengths = rng.integers(0, 84, 300), rng.integers(0, 590, 300), rng.integers(1, 60, 300)
    notes = [_note(int(r), int(s), int(s + n)) for r, s, n in zip(rows, starts, lengths)]
    store = CellStore(0.2)
    chunks = range(0, 600, 70)
    for first in chunks:
        store.add(frame[:, first : first + 70], embedding[..., first : first + 70], first)
    one_block = store.pool(notes, 12)
    monkeypatch.setattr(pooling, "POOL_BLOCK_CELLS", 1000)  # about 3 of the 84 rows per block
    many_blocks = store.pool(notes, 12)

    stored = embedding.astype(np.float16).astype(np.float64) * np.where(frame >= 0.2, frame, 0)
    for vectors in (one_block, many_blocks):
        for vector, note in zip(vectors, notes):
            row, start = note.pitch - MIDI_MIN, time_to_frame(note.onset)
            end = max(time_to_frame(note.offset), start + 1)
            expected = stored[:, row, start:end].sum(axis=1)
            norm = np.linalg.norm(expected)
            np.testing.assert_allclose(vector, expected / norm if norm else 0.0, atol=1e-6)
    assert store.n_cells == int((frame >= 0.2).sum())
    assert store.nbytes <= 32 * store.n_cells + 700 * len(chunks)  # + where each chunk's rows begin
