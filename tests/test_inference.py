"""ONNX export and chunked onnxruntime inference of the agnostic model.

Exporting takes 20-40 s on the shared CPUs, so the tests that need an exported model are slow.
"""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import soundfile
import soxr
import torch

from timbrescribe.audio import load_audio, open_audio
from timbrescribe.constants import HOP, N_PITCHES, SAMPLE_RATE, TIMBRE_TIME_STRIDES, n_frames
from timbrescribe.decode import DecoderSettings, decode_notes
from timbrescribe.errors import UserError
from timbrescribe.export import export_agnostic_onnx
from timbrescribe.inference import (
    CHUNK_FRAME_MULTIPLE,
    CONTEXT_FRAMES,
    AgnosticSession,
    ModelNotFoundError,
    SeparationSession,
    chunk_frames,
    chunk_spans,
    energy_model_path,
)
from timbrescribe.model import AgnosticModel
from timbrescribe.notes import Note
from timbrescribe.pooling import CellStore, pool_dense


def _music(seconds: float, seed: int = 7) -> np.ndarray:
    """Harmonic tones (5 decaying partials, attack and release) at random onsets, plus noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    audio = 0.003 * rng.standard_normal(n)
    for onset in np.sort(rng.uniform(0, seconds - 0.5, size=int(3 * seconds))):
        start, length = int(onset * SAMPLE_RATE), int(rng.uniform(0.15, 1.5) * SAMPLE_RATE)
        t = np.arange(min(length, n - start)) / SAMPLE_RATE
        freq = 440.0 * 2.0 ** ((rng.integers(28, 100) - 69) / 12)
        tone = sum(np.sin(2 * np.pi * h * freq * t) / h**1.5 for h in range(1, 6) if h * freq < 10000)
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-2.0 * t) * np.minimum((t[-1] - t) / 0.05, 1.0)
        audio[start : start + len(t)] += rng.uniform(0.05, 0.3) * envelope * tone
    return audio.astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(11)
    model = AgnosticModel()
    with torch.no_grad():  # a non-trivial BN state, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model.train()
    path = tmp_path_factory.mktemp("model") / "agnostic.onnx"
    paths = export_agnostic_onnx(model, path)
    assert model.training  # mode restored
    return model.eval(), paths


@pytest.fixture(scope="module")
def session(exported):
    return AgnosticSession(exported[1][0], threads=1)


@pytest.mark.slow
def test_export_writes_two_checked_graphs_and_no_leftovers(exported):
    network_path, energy_path = exported[1]
    assert energy_path == energy_model_path(network_path) == network_path.with_name("agnostic.energy.onnx")
    assert sorted(p.name for p in network_path.parent.iterdir()) == [
        "agnostic.card.json", "agnostic.energy.onnx", "agnostic.onnx"
    ]
    for path, inputs, outputs in (
        (network_path, ["audio", "energy_moments"], ["onset", "frame"]),
        (energy_path, ["audio"], ["energy"]),
    ):
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        assert [i.name for i in proto.graph.input] == inputs
        assert [o.name for o in proto.graph.output] == outputs


@pytest.mark.slow
def test_onnxruntime_matches_torch(exported, session):
    model = exported[0]
    audio = _music(8.0, seed=1)
    onset, frame = session.activations(audio)
    with torch.no_grad():
        torch_onset, torch_frame = model(torch.from_numpy(audio)[None])
    # Same float32 graph, different kernels and summation order: probabilities agree to ~1e-6.
    np.testing.assert_allclose(onset, torch_onset[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(frame, torch_frame[0].numpy(), atol=1e-5)


@pytest.mark.slow
def test_chunked_activations_equal_whole_file(session):
    audio = _music(60.0)
    whole_onset, whole_frame = session.activations(audio, chunk_seconds=120.0)
    assert whole_onset.shape == whole_frame.shape == (N_PITCHES, n_frames(len(audio)))
    assert whole_onset.dtype == whole_frame.dtype == np.float32
    for chunk_seconds in (1.5, 7.3, 25.0):
        onset, frame = session.activations(audio, chunk_seconds=chunk_seconds)
        # The context covers the whole receptive field, so only float rounding may differ.
        np.testing.assert_allclose(onset, whole_onset, atol=1e-5)
        np.testing.assert_allclose(frame, whole_frame, atol=1e-5)


@pytest.mark.slow
def test_file_statistic_is_used_for_every_chunk(session):
    # A quiet first half and a loud second half: with per-chunk statistics the quiet half would
    # be normalised up to the loud half's level and its activations would change.
    audio = _music(20.0, seed=3)
    audio[: len(audio) // 2] *= 0.05
    whole = session.activations(audio, chunk_seconds=60.0)[1]
    chunked = session.activations(audio, chunk_seconds=4.0)[1]
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 256, 257, 5000])
def test_short_inputs(session, n):
    onset, frame = session.activations(np.full(n, 0.1, dtype=np.float32))
    assert onset.shape == frame.shape == (N_PITCHES, n_frames(n))
    assert np.isfinite(onset).all() and np.isfinite(frame).all()


@pytest.mark.slow
def test_progress_reports_both_passes(session):
    calls = []
    audio = _music(6.0)[: 3 * 172 * HOP]  # 2 s chunks are 172 frames: exactly 3 chunks
    session.activations(audio, chunk_seconds=2.0, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 6) for k in range(1, 7)]


@pytest.mark.slow
def test_network_graph_accepts_a_batch(exported, session):
    audio = np.stack([_music(2.0, seed=s) for s in (1, 2)])
    moments = np.array([[100.0, 5.0, 1.0], [100.0, 50.0, 30.0]], dtype=np.float32)
    onset, frame = session.network.run(None, {"audio": audio, "energy_moments": moments})
    assert onset.shape == frame.shape == (2, N_PITCHES, n_frames(audio.shape[1]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "audio", [np.zeros((2, 100)), np.zeros(0), np.array([0.0, np.nan]), np.full(5000, 1e20)],
    ids=["stereo", "empty", "nan", "loud"],
)
def test_bad_audio_is_a_user_error(session, audio):
    with pytest.raises(UserError):
        session.activations(audio)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="model file not found: .*nothing.onnx"):
        AgnosticSession(tmp_path / "nothing.onnx")
    (tmp_path / "only.onnx").write_bytes(b"")  # the energy graph beside it is missing
    with pytest.raises(UserError, match="only.energy.onnx"):
        AgnosticSession(tmp_path / "only.onnx")


def test_chunks_start_on_frames_every_timbre_stride_computes():
    assert CONTEXT_FRAMES % CHUNK_FRAME_MULTIPLE == 0
    assert all(CHUNK_FRAME_MULTIPLE % stride == 0 for stride in TIMBRE_TIME_STRIDES)
    assert [chunk_frames(s) for s in (0.0, 0.01, 3.0, 6.0, 15.0)] == [2, 2, 258, 516, 1292]
    for seconds in (1.0, 2.5, 6.0, 15.0):
        assert all(first % CHUNK_FRAME_MULTIPLE == 0 for first, *_ in chunk_spans(100000, chunk_frames(seconds)))


def test_chunk_spans_tile_the_file_with_context():
    for total, size in ((1, 5), (10, 3), (1000, 250), (1001, 97)):
        spans = list(chunk_spans(total, size))
        assert [s[2] for s in spans] == list(range(0, total, size))
        assert spans[-1][3] == total
        for first, end, keep_first, keep_end in spans:
            assert first == max(0, keep_first - CONTEXT_FRAMES)
            assert end == min(total, keep_end + CONTEXT_FRAMES)


@pytest.mark.slow
def test_inference_runs_without_torch_and_in_bounded_memory(exported):
    # A 10-minute file in a fresh interpreter: torch is never imported and the peak RSS stays low.
    script = f"""
import sys
import numpy as np
from timbrescribe.inference import AgnosticSession
audio = np.random.default_rng(0).standard_normal(600 * 22050, dtype=np.float32)
audio *= 0.1
onset, frame = AgnosticSession({str(exported[1][0])!r}, threads=1).activations(audio)
assert onset.shape == (84, 51680), onset.shape
assert "torch" not in sys.modules
# VmHWM (peak RSS of this address space); ru_maxrss would include the forked pytest process.
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]) // 1024)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) < 400  # MB; measured ≈ 230 with 53 MB of it the audio


@pytest.mark.slow
def test_timbrescribe_notes_system_gives_one_track_of_the_transcribed_notes(exported):
    from timbrescribe.evaluation import harness
    from timbrescribe.evaluation.systems import make_system
    from timbrescribe.transcription import transcribe

    model_path = exported[1][0]
    system = make_system("timbrescribe-notes", threads=1, model_path=model_path)
    harness.warm_up(system)  # a second of near-silent noise
    audio = _music(6.0, seed=5)
    expected = transcribe(audio, SAMPLE_RATE, model_path=model_path, instruments=1).notes
    assert expected
    for n_tracks in (None, 1, 3):  # timbre-agnostic: always one track
        (track,) = system.predict(audio, SAMPLE_RATE, n_tracks=n_tracks)
        assert track.notes == expected
    with pytest.raises(UserError, match="no timbre embeddings"):
        make_system("timbrescribe", threads=1, model_path=model_path)


@pytest.mark.slow
@pytest.mark.parametrize("time_stride", TIMBRE_TIME_STRIDES)
def test_separation_export_matches_torch_and_chunking(tmp_path, time_stride):
    """The separation graph: its embeddings equal torch's, and pooled note vectors from a chunked
    run equal those of one pass over the file (at every timbre frame stride)."""
    from timbrescribe.export import export_separation_onnx
    from timbrescribe.inference import SeparationSession
    from timbrescribe.model import SeparationModel, TimbreBranch

    torch.manual_seed(3)
    model = SeparationModel(timbre=TimbreBranch(time_stride)).eval()
    network, _ = export_separation_onnx(model, tmp_path / "separation.onnx")
    session = SeparationSession(network, threads=1)
    audio = _music(8.0, seed=2)
    with torch.no_grad():
        onset, frame, embedding = model(torch.from_numpy(audio)[None])
    store = CellStore(0.0)
    ort_onset, ort_frame = session.activations(audio, chunk_seconds=100.0, cells=store)
    np.testing.assert_allclose(ort_frame, frame[0].numpy(), atol=1e-4)
    notes = [Note(0.5, 1.5, 60), Note(2.0, 7.0, 45), Note(3.0, 3.2, 90)]
    whole = pool_dense(embedding[0].numpy(), frame[0].numpy(), notes)
    np.testing.assert_allclose(store.pool(notes, 12), whole, atol=2e-3)
    chunked = CellStore(0.0)
    session.activations(audio, chunk_seconds=2.0, cells=chunked)
    np.testing.assert_allclose(chunked.pool(notes, 12), store.pool(notes, 12), atol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("layout, expected", [
    ("temporal", 126), ("light-temporal-onsets", 154), ("light-temporal-energy-onsets", 154),
    ("light-temporal-energy-onsets-sustain", 274), ("light-temporal-energy-onsets-neighbours", 154),
])
def test_a_temporal_layout_graph_states_its_longer_context_and_chunks_like_one_pass(layout, expected, tmp_path):
    from timbrescribe.export import card_path_for

    torch.manual_seed(4)
    model = AgnosticModel(layout).eval()
    contexts = model.note_branch.time_contexts()
    with torch.no_grad():  # a trained-like refinement instead of the zero start
        for context in contexts:
            context.out.weight.normal_(0.0, 0.5)
            for taps in (context.energy, context.neighbours):
                if taps is not None:
                    taps.weight.normal_(0.0, 0.5)
    network, _ = export_agnostic_onnx(model, tmp_path / "agnostic.onnx")
    session = AgnosticSession(network, threads=1)
    # the front end, the note branch's convolutions, the time contexts
    assert expected == 77 + 9 + sum(context.reach for context in contexts)
    assert session.context_frames == expected == json.loads(card_path_for(network).read_text())["context_frames"]
    assert expected % CHUNK_FRAME_MULTIPLE == 0
    audio = _music(12.0, seed=5)
    whole = session.activations(audio, chunk_seconds=100.0)
    with torch.no_grad():
        np.testing.assert_allclose(whole[1], model(torch.from_numpy(audio)[None])[1][0].numpy(), atol=1e-5)
    for maps, whole_map in zip(session.activations(audio, chunk_seconds=1.5), whole):
        np.testing.assert_allclose(maps, whole_map, atol=1e-5)


def test_a_streamed_file_gives_the_maps_and_cells_of_its_samples(tmp_path):
    # The shipped separation model (no export needed); a 44.1 kHz stereo file streamed in 1 s chunks.
    music = soxr.resample(_music(5.0, seed=9), SAMPLE_RATE, 44100)
    path = tmp_path / "music.wav"
    soundfile.write(str(path), np.stack([music, 0.5 * music[::-1]], axis=1), 44100)
    stream = open_audio(path)
    samples = np.concatenate(list(stream.blocks()))
    session = SeparationSession(threads=1)
    results = []
    for audio in (stream, samples):
        cells = CellStore(0.05)
        onset, frame = session.activations(audio, chunk_seconds=1.0, cells=cells)
        results.append((onset, frame, cells))
    (onset, frame, cells), (array_onset, array_frame, array_cells) = results
    assert onset.shape == (N_PITCHES, n_frames(len(stream)))
    np.testing.assert_array_equal(onset, array_onset)
    np.testing.assert_array_equal(frame, array_frame)
    assert cells.n_cells == array_cells.n_cells > 0
    notes = decode_notes(onset, frame, DecoderSettings(onset_threshold=0.1, frame_threshold=0.1))
    assert notes
    np.testing.assert_array_equal(cells.pool(notes, 12), array_cells.pool(notes, 12))
    # The whole-file load resamples in one run: the maps agree up to float rounding.
    loaded_onset, loaded_frame = session.activations(load_audio(path), chunk_seconds=1.0)
    np.testing.assert_allclose(onset, loaded_onset, atol=1e-5)
    np.testing.assert_allclose(frame, loaded_frame, atol=1e-5)


def test_a_file_cut_short_after_it_was_opened_is_a_user_error(tmp_path):
    path = tmp_path / "music.wav"
    soundfile.write(str(path), _music(3.0), SAMPLE_RATE)
    stream = open_audio(path)
    soundfile.write(str(path), _music(1.0), SAMPLE_RATE)
    with pytest.raises(UserError, match="changed while it was being read"):
        AgnosticSession(threads=1).activations(stream)


def test_long_files_keep_float16_maps_that_decode_to_the_same_notes(monkeypatch):
    import timbrescribe.inference as inference

    session = AgnosticSession(threads=1)  # the shipped model: real activations near thresholds
    audio = _music(40.0, seed=3)
    short_onset, short_frame = session.activations(audio, chunk_seconds=6.0)
    monkeypatch.setattr(inference, "SHORT_FILE_SECONDS", 30.0)
    onset, frame = session.activations(audio)  # "long": 6 s chunks, float16 maps
    assert short_onset.dtype == np.float32 and onset.dtype == frame.dtype == np.float16
    np.testing.assert_allclose(frame, short_frame, atol=5e-4)
    notes = decode_notes(short_onset, short_frame)
    assert len(notes) > 40
    # float16 keeps 11 significant bits: a frame value next to the threshold may end a note a frame
    # earlier or later, or, where that frame closes a bridged dip (DecoderSettings.max_dip_frames),
    # a dip's length earlier or later, and move its velocity by a step or two; but it never adds,
    # drops or moves a note.
    narrow = decode_notes(onset, frame)
    assert [(n.pitch, n.onset) for n in narrow] == [(n.pitch, n.onset) for n in notes]
    reach_s = (1 + DecoderSettings().max_dip_frames) * HOP / SAMPLE_RATE
    assert all(abs(a.offset - b.offset) <= reach_s + 1e-9 and abs(a.velocity - b.velocity) <= 2 for a, b in zip(narrow, notes))
    assert sum(a != b for a, b in zip(narrow, notes)) <= 2
