"""Dataset engine and `timbrescribe data render`: real FluidSynth, the smoke preset."""
import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile

from timbrescribe.cli import main
from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.data.engine import make_example, read_record, render_dataset
from timbrescribe.data.storage import EXAMPLES_DIR, MANIFEST
from timbrescribe.data.instruments import FAMILIES, SOUNDFONTS, TRAIN_SOUNDFONTS, VALIDATION_SOUNDFONT
from timbrescribe.data.presets import PRESETS, get_preset
from timbrescribe.errors import UserError

SMOKE = PRESETS["smoke"]


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    assert main(["data", "render", "--preset", "smoke", "--out", str(out), "--seed", "3", "--workers", "1"]) == 0
    return out


def test_render_writes_a_consistent_manifest(smoke_dir):
    manifest = json.loads((smoke_dir / MANIFEST).read_text())
    assert manifest["preset"] == "smoke" and manifest["seed"] == 3 and manifest["complete"]
    assert manifest["count"] == SMOKE.count_for_hours() == len(manifest["examples"])
    assert [r["id"] for r in manifest["examples"]] == list(range(manifest["count"]))
    assert "timbrescribe" in manifest["code_version"]
    assert manifest["audio_seconds"] == pytest.approx(sum(r["duration"] for r in manifest["examples"]))
    for record in manifest["examples"]:
        base = smoke_dir / record["file"]
        info = soundfile.info(str(base.with_suffix(".flac")))
        assert info.samplerate == SAMPLE_RATE and info.frames == record["n_samples"]
        assert info.channels == 1 + len(record["programs"])
        assert SMOKE.example_s[0] <= record["duration"] <= SMOKE.example_s[1]
        assert base.with_suffix(".mid").exists()
        assert read_record(base.with_suffix(".npz")) == record
        assert set(record["soundfonts"]) <= set(SMOKE.soundfonts)
        assert all(f in FAMILIES for f in record["families"])
        assert len(set(record["programs"])) == len(record["programs"])
        assert all(n > 0 for n in record["n_notes"])


def test_stems_sum_to_the_mix_up_to_noise(smoke_dir):
    for record in json.loads((smoke_dir / MANIFEST).read_text())["examples"]:
        audio, _ = soundfile.read(str(smoke_dir / (record["file"] + ".flac")), dtype="float32")
        mix, stems = audio[:, 0], audio[:, 1:]
        residual = mix - stems.sum(axis=1)
        assert np.sqrt(np.mean(residual**2)) < 0.12 * np.sqrt(np.mean(mix**2))  # SNR >= 20 dB
        assert 0.4 < np.abs(mix).max() <= 1.0


def test_midi_file_holds_the_parts(smoke_dir):
    import pretty_midi

    record = json.loads((smoke_dir / MANIFEST).read_text())["examples"][0]
    midi = pretty_midi.PrettyMIDI(str(smoke_dir / (record["file"] + ".mid")))
    assert [i.program for i in midi.instruments] == record["programs"]
    assert [len(i.notes) for i in midi.instruments] == record["n_notes"]


def test_rerun_resumes_without_rendering_again(smoke_dir):
    examples = smoke_dir / EXAMPLES_DIR
    before = {p.name: p.stat().st_mtime_ns for p in examples.iterdir()}
    victim = examples / "000001.npz"
    flac = examples / "000001.flac"
    old_audio = soundfile.read(str(flac))[0]
    victim.unlink()  # as if rendering had stopped before the example was finished
    assert main(["data", "render", "--preset", "smoke", "--out", str(smoke_dir), "--seed", "3", "--workers", "1"]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in examples.iterdir()}
    assert after.keys() == before.keys()
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"000001.npz", "000001.flac", "000001.mid"}
    np.testing.assert_array_equal(soundfile.read(str(flac))[0], old_audio)  # same seed, same audio
    assert not list(examples.glob(".tmp-*"))


def test_other_preset_or_seed_in_the_same_folder_is_refused(smoke_dir):
    with pytest.raises(UserError, match="choose another --out"):
        render_dataset(SMOKE, smoke_dir, 2, seed=4, progress=False)


def test_examples_are_deterministic_in_seed_and_index():
    a, b = make_example(SMOKE, 11, 2), make_example(SMOKE, 11, 2)
    np.testing.assert_array_equal(a.mix, b.mix)
    np.testing.assert_array_equal(a.stems, b.stems)
    assert [p.notes for p in a.parts] == [p.notes for p in b.parts]
    c = make_example(SMOKE, 12, 2)
    assert a.mix.shape != c.mix.shape or not np.array_equal(a.mix, c.mix)


def test_parallel_workers_render_the_same_files(tmp_path, smoke_dir):
    render_dataset(SMOKE, tmp_path, 4, seed=3, workers=2, progress=False)
    for index in range(4):
        name = f"{EXAMPLES_DIR}/{index:06d}.flac"
        np.testing.assert_array_equal(soundfile.read(str(tmp_path / name))[0], soundfile.read(str(smoke_dir / name))[0])


def test_validation_preset_uses_only_the_held_out_soundfont():
    assert PRESETS["val"].soundfonts == (VALIDATION_SOUNDFONT,)
    for name, preset in PRESETS.items():
        if name != "val":
            assert VALIDATION_SOUNDFONT not in preset.soundfonts
            assert set(preset.soundfonts) <= set(TRAIN_SOUNDFONTS)
    composed_val = replace(PRESETS["val"], score_fraction=0.0, example_s=(4.0, 4.0))
    for index in range(3):
        assert set(make_example(composed_val, 0, index).soundfonts) == {VALIDATION_SOUNDFONT}


def test_presets_cover_the_part_counts_and_the_music_sources():
    assert PRESETS["train-agnostic"].part_counts == (1, 2, 3, 4)
    assert PRESETS["train-mix"].part_counts == (2, 3, 4) and PRESETS["train-mix"].same_family_prob > 0
    for name in ("train-agnostic", "train-mix", "train-acoustic", "val"):
        assert 0 < PRESETS[name].score_fraction < 1
    assert all(name in SOUNDFONTS for p in PRESETS.values() for name in p.soundfonts)


def test_hours_set_the_example_count():
    preset = PRESETS["train-agnostic"]
    assert preset.count_for_hours(1.0) == round(3600 / preset.mean_example_s)
    assert preset.count_for_hours(1e-6) == 1


def test_command_prints_a_summary(tmp_path, capsys):
    assert main(["data", "render", "--preset", "smoke", "--out", str(tmp_path), "--hours", "0.001", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 examples of preset smoke (seed 0)" in out and "h of audio" in out and "wall time" in out


def test_unknown_preset_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="smoke, train-agnostic, train-mix, train-acoustic, val"):
        get_preset("nope")
    assert main(["data", "render", "--preset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_acoustic_preset_draws_its_parts_by_family_weight():
    composed = replace(PRESETS["train-acoustic"], score_fraction=0.0, example_s=(4.0, 4.0))
    weights = composed.family_weights
    families = [part.family for index in range(30) for part in make_example(composed, 0, index).parts]
    assert set(families) <= {name for name, weight in weights.items() if weight > 0}
    assert families.count("piano") > families.count("synth_lead") + families.count("synth_pad")
