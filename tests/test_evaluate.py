"""Dataset layout, prediction sources and `timbrescribe evaluate` end to end."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from timbrescribe.cli import main
from timbrescribe.errors import UserError
from timbrescribe.evaluation import harness, layout
from timbrescribe.evaluation.systems import MidiDirectorySystem, System, make_system
from timbrescribe.notes import Note, Track
from timbrescribe.outputs import write_midi

TRIOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "trios"
VIOLIN = [Note(0.0, 0.5, 76), Note(0.5, 1.0, 74), Note(1.0, 1.5, 72), Note(1.5, 2.0, 71)]
CELLO = [Note(0.0, 1.0, 48), Note(1.0, 2.0, 43)]
KICK = [Note(0.0, 0.1, 36), Note(1.0, 1.1, 36)]


def write_piece(root: Path, name: str, with_meta: bool = True) -> Path:
    """A two-part piece (violin, cello) plus an unscored kick part; stem lengths differ."""
    piece = root / name
    (piece / "stems").mkdir(parents=True)
    soundfile.write(piece / "mix.wav", np.zeros(44100, dtype=np.float32), 44100)
    soundfile.write(piece / "stems" / "violin.wav", np.full(22050, 0.25, dtype=np.float32), 22050)
    soundfile.write(piece / "stems" / "cello.wav", np.full(11025, 0.5, dtype=np.float32), 22050)
    write_midi([Track("violin", VIOLIN)], piece / "violin.mid")
    write_midi([Track("cello", CELLO)], piece / "cello.mid")
    write_midi([Track("kick", KICK, is_drum=True)], piece / "kick.mid")
    write_midi([Track("violin", VIOLIN), Track("cello", CELLO)], piece / "all.mid")
    if with_meta:
        (piece / "meta.json").write_text(json.dumps({"pitched_instruments": ["violin", "cello"]}))
    return piece


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    write_piece(root, "duet")
    (root / "notes").mkdir()  # a folder with neither mix.wav nor .mid files is not a piece
    return root


def test_layout_reads_scored_parts_from_meta_json(dataset: Path):
    (piece,) = layout.read_dataset(dataset)
    assert piece.name == "duet"
    assert list(piece.parts) == ["violin", "cello"]
    assert [(n.pitch, n.onset, n.offset) for n in piece.parts["cello"]] == [
        (48, pytest.approx(0.0), pytest.approx(1.0, abs=2e-3)),
        (43, pytest.approx(1.0, abs=2e-3), pytest.approx(2.0, abs=2e-3)),
    ]
    assert sorted(piece.stem_paths) == ["cello", "violin"]


def test_layout_without_meta_takes_every_part_but_all_mid(tmp_path: Path):
    write_piece(tmp_path, "duet", with_meta=False)
    (piece,) = layout.read_dataset(tmp_path)
    assert sorted(piece.parts) == ["cello", "kick", "violin"]


def test_submixes_sum_the_stems_of_every_combination(dataset: Path):
    excerpts = layout.excerpts(layout.read_dataset(dataset), submixes=True)
    assert [(e.name, e.group) for e in excerpts] == [("duet", "mix"), ("duet__cello+violin", "submix-2")]
    assert layout.excerpts(layout.read_dataset(dataset)) == excerpts[:1]
    audio = excerpts[1].load_audio()
    assert audio.shape == (22050,)  # padded to the longer stem
    assert audio[:11000] == pytest.approx(0.75, abs=1e-3)
    assert audio[11100:] == pytest.approx(0.25, abs=1e-3)


def test_layout_errors_name_the_problem(tmp_path: Path):
    with pytest.raises(UserError, match="no such dataset directory"):
        layout.read_dataset(tmp_path / "missing")
    with pytest.raises(UserError, match="no pieces"):
        layout.read_dataset(tmp_path)
    (write_piece(tmp_path, "solo") / "mix.wav").unlink()
    with pytest.raises(UserError, match="no mix.wav"):
        layout.read_dataset(tmp_path)


@pytest.mark.skipif(not TRIOS.is_dir(), reason="the TRIOS dev set is not next to the repository")
def test_layout_of_the_trios_dev_set():
    pieces = {piece.name: piece for piece in layout.read_dataset(TRIOS)}
    assert sorted(pieces) == ["brahms", "lussier", "mozart", "take_five"]
    assert sorted(pieces["take_five"].parts) == ["piano", "saxophone"]
    assert len(pieces["brahms"].parts["horn"]) == 42
    assert len(layout.excerpts(list(pieces.values()), submixes=True)) == 4 + 3 * 4 + 1


def test_midi_directory_ignores_drum_tracks(tmp_path: Path):
    write_midi([Track("lead", VIOLIN), Track("drums", KICK, is_drum=True)], tmp_path / "duet.mid")
    tracks = MidiDirectorySystem(tmp_path).read("duet")
    assert [t.name for t in tracks] == ["lead"]
    with pytest.raises(UserError, match="no prediction"):
        MidiDirectorySystem(tmp_path).check_complete(["duet", "trio"])


def evaluate_json(dataset: Path, predictions: Path, out: Path, *extra: str) -> dict:
    code = main(["evaluate", str(dataset), "--predictions", str(predictions), "--json", str(out), *extra])
    assert code == 0
    return json.loads(out.read_text())


def test_evaluate_predictions_equal_to_references_score_one(dataset: Path, tmp_path: Path, capsys):
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    # tracks in the opposite order and with other names: matching must still pair them up
    write_midi([Track("t1", CELLO), Track("t2", VIOLIN)], predictions / "duet.mid")
    write_midi([Track("t1", CELLO), Track("t2", VIOLIN)], predictions / "duet__cello+violin.mid")
    report = evaluate_json(dataset, predictions, tmp_path / "out.json", "--submixes")
    assert sorted(report["summary"]) == ["mix", "submix-2"]
    for group in report["summary"].values():
        for metric in ("frame", "note", "note_offset"):
            assert group["agnostic"][metric]["f"] == pytest.approx(1.0)
            assert group["separated"][metric]["f"] == pytest.approx(1.0)
    duet = report["excerpts"][0]
    pairs = [(p["part"], p["track"]) for p in duet["separated"]["parts"]]
    assert pairs == [("violin", "t2"), ("cello", "t1")]
    assert duet["rtf"] is None
    assert report["settings"]["submixes"] is True
    table = capsys.readouterr().out
    assert "duet__cello+violin" in table and "MEAN mix (1)" in table


def test_evaluate_one_track_with_half_the_violin(dataset: Path, tmp_path: Path):
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    write_midi([Track("only", VIOLIN[:2])], predictions / "duet.mid")
    report = evaluate_json(dataset, predictions, tmp_path / "out.json")
    duet = report["excerpts"][0]
    # agnostic: 2 of 6 reference notes, both estimates right -> P 1, R 1/3, F 1/2
    assert duet["agnostic"]["note"] == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f": 0.5})
    # separated: violin P 1, R 1/2, F 2/3; cello unmatched 0 -> mean F 1/3
    assert duet["separated"]["mean"]["note"]["f"] == pytest.approx(1 / 3)
    assert duet["separated"]["parts"][1] == {
        "part": "cello",
        "track": None,
        "scores": {m: {"precision": 0.0, "recall": 0.0, "f": 0.0} for m in ("frame", "note", "note_offset")},
    }


def test_evaluate_with_a_missing_prediction_exits_2(dataset: Path, tmp_path: Path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(dataset), "--predictions", str(tmp_path / "empty")]) == 2
    assert "duet.mid" in capsys.readouterr().err


def test_evaluate_with_an_unknown_system_exits_2(dataset: Path, capsys):
    assert main(["evaluate", str(dataset), "--system", "nope"]) == 2
    assert "known systems: basic-pitch" in capsys.readouterr().err


class ConstantSystem(System):
    """Predicts the violin part, then the cello part if asked for two tracks, whatever it hears."""

    name = "constant"

    def predict(self, audio: np.ndarray, sr: int, n_tracks: int | None = None) -> list[Track]:
        assert audio.dtype == np.float32 and sr == 22050
        return [Track("violin?", VIOLIN), Track("cello?", CELLO)][: n_tracks or 1]


def test_harness_times_audio_systems(dataset: Path):
    excerpts = layout.excerpts(layout.read_dataset(dataset))
    results = harness.evaluate(ConstantSystem(), excerpts, progress=False)
    (result,) = results
    assert result.audio_seconds == pytest.approx(1.0)  # the 44.1 kHz mix resampled to 22050 Hz
    assert result.rtf is not None and result.rtf > 0
    assert result.separated.mean.note.f == pytest.approx(0.5)
    assert harness.summarize(results)["mix"]["rtf"] == pytest.approx(result.rtf)


def test_harness_passes_oracle_k_to_audio_systems(dataset: Path):
    excerpts = layout.excerpts(layout.read_dataset(dataset))
    (result,) = harness.evaluate(ConstantSystem(), excerpts, oracle_k=True, progress=False)
    assert result.n_tracks == 2 and result.k_exact
    assert result.separated.mean.note.f == pytest.approx(1.0)
    assert harness.summarize([result])["mix"]["k_exact"] == 1.0
    (guessed,) = harness.evaluate(ConstantSystem(), excerpts, oracle_k=False, progress=False)
    assert guessed.n_tracks == 1 and not guessed.k_exact  # the duet estimated as a solo
    assert harness.summarize([guessed])["mix"]["k_exact"] == 0.0
    assert "1/2" in harness.format_table([guessed]) and "0%" in harness.format_table([guessed])


def test_separating_systems_split_a_duet_of_distinct_timbres(tmp_path: Path):
    """A real two-instrument clip (a rendered example of the held-out soundfont) through the shipped
    separation model and the descriptor baseline, both with the true K: every note is assigned and
    each system returns two named tracks."""
    from timbrescribe.audio import load_audio

    example = Path(__file__).resolve().parents[1] / "src" / "timbrescribe" / "examples" / "example.flac"
    audio = load_audio(example)
    for name in ("timbrescribe", "descriptor-baseline"):
        tracks = make_system(name, threads=1).predict(audio, 22050, n_tracks=3)
        assert [t.name for t in tracks] == ["instrument 1", "instrument 2", "instrument 3"]
        assert sum(len(t.notes) for t in tracks) > 30


def test_descriptors_are_finite_unit_vectors_and_read_harmonic_levels():
    from timbrescribe.evaluation.descriptor_baseline import N_DESCRIPTORS, descriptor_vectors, note_descriptors
    from timbrescribe.notes import Note

    spectrum = np.full((288, 200), -20.0)
    base = 3 * (48 - 24) + 1  # C3
    spectrum[base, 10:100] = 0.0  # fundamental only: every harmonic 20 below it
    spectrum[base + 36, 110:190] = 0.0  # C4 with a strong octave: its h=2 lies at bin base+72
    spectrum[base + 72, 110:190] = -2.0
    notes = [Note(10 / 86.1328125, 100 / 86.1328125, 48), Note(110 / 86.1328125, 190 / 86.1328125, 60)]
    raw = note_descriptors(spectrum, notes)
    assert raw.shape == (2, N_DESCRIPTORS)
    assert raw[0, 0] == pytest.approx(-20.0) and raw[1, 0] == pytest.approx(-2.0)
    vectors = descriptor_vectors(spectrum, notes)
    assert np.all(np.isfinite(vectors)) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert descriptor_vectors(spectrum, []).shape == (0, N_DESCRIPTORS)


@pytest.mark.slow
def test_basic_pitch_transcribes_a_harmonic_a4():
    pytest.importorskip("basic_pitch")
    system = make_system("basic-pitch", threads=1)
    t = np.arange(2 * 44100) / 44100
    tone = sum(0.3 / h * np.sin(2 * np.pi * 440 * h * t) for h in (1, 2, 3))
    (track,) = system.predict(tone.astype(np.float32), 44100)
    assert 69 in {note.pitch for note in track.notes}
    assert min(note.onset for note in track.notes) < 0.1


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    assert main(["data", "render", "--preset", "smoke", "--out", str(out), "--seed", "4", "--workers", "1"]) == 0
    return out


def test_layout_reads_a_rendered_dataset_example_by_example(rendered: Path):
    records = json.loads((rendered / "manifest.json").read_text())["examples"]
    pieces = layout.read_dataset(rendered)
    assert [piece.name for piece in pieces] == [f"{r['id']:06d}" for r in records]
    for piece, record in zip(pieces, records):
        assert [len(notes) for notes in piece.parts.values()] == record["n_notes"]
        assert len(set(piece.parts)) == len(record["names"])  # a repeated instrument gets its own name
        stored = np.load(rendered / f"{record['file']}.npz")
        onsets = sorted(n.onset for notes in piece.parts.values() for n in notes)
        assert onsets == pytest.approx(sorted(stored["note_onset"]))


def test_rendered_mix_and_stems_are_the_channels_of_the_flac(rendered: Path):
    piece = next(p for p in layout.read_dataset(rendered) if len(p.parts) >= 2)
    channels, sr = soundfile.read(piece.mix_path, dtype="float32", always_2d=True)
    assert sr == 22050
    full, *submixes = layout.excerpts([piece], submixes=True)
    np.testing.assert_array_equal(full.load_audio(), channels[:, 0])
    first_two = next(e for e in submixes if set(e.part_names) == set(list(piece.parts)[:2]))
    np.testing.assert_allclose(first_two.load_audio(), channels[:, 1] + channels[:, 2], atol=1e-6)


def test_layout_names_repeated_instruments_apart():
    assert layout._unique_names(["violin", "cello", "violin", "violin"]) == ["violin", "cello", "violin-2", "violin-3"]


def test_model_paths_reach_only_systems_that_load_models(tmp_path: Path):
    with pytest.raises(UserError, match="takes no model path"):
        make_system("basic-pitch", threads=1, model_path=tmp_path / "agnostic.onnx")
    with pytest.raises(UserError, match="model file not found"):
        make_system("timbrescribe", threads=1, model_path=tmp_path / "agnostic.onnx")
