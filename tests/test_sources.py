"""The timbre-source registry: splits, licences, fallback to the Debian fonts, installing, and the
presets that draw from it (real FluidSynth and sfizz, on instruments the tests write)."""
import json
import re
import subprocess
from dataclasses import replace

import pytest

from sfz_instrument import write_sfz_instrument
from timbrescribe.data import sources
from timbrescribe.data.engine import make_example, render_dataset, source_pool
from timbrescribe.data.instruments import SOUNDFONTS, TRAIN_SOUNDFONTS, VALIDATION_SOUNDFONT
from timbrescribe.data.presets import PRESETS
from timbrescribe.errors import UserError

REGISTRY = sources.registry()
SPLIT_PRESETS = {"train-sampled": "train", "val-sampled": "validation", "test-sampled": "test"}
MTG = "sfzinstruments/MTG.SoloSax"
WERESAX = "sfzinstruments/karoryfer.weresax"


@pytest.fixture
def no_optional_sources(tmp_path, monkeypatch):
    """As on CI: an empty sources folder, only the Debian (and PyPI) fonts."""
    monkeypatch.setenv(sources.SOURCES_ENV, str(tmp_path / "sources"))
    return tmp_path / "sources"


@pytest.fixture
def two_sampled_saxes(tmp_path, monkeypatch):
    """Test-made SFZ instruments where the registry expects MTG's alto sax (train) and the
    weresax (validation)."""
    root = tmp_path / "sources"
    monkeypatch.setenv(sources.SOURCES_ENV, str(root))
    mtg = REGISTRY["mtg-alto-sax"]
    write_sfz_instrument(sources.repository_dir(MTG) / mtg.origin["path"], name=mtg.file)
    were = REGISTRY["weresax"]
    folder = sources.repository_dir(WERESAX) / were.origin["path"] / "Programs"
    write_sfz_instrument(folder, name="Sax.sfz", extra_global="bend_up=500 bend_down=-500")
    return root


def test_every_source_has_a_split_a_licence_and_an_origin():
    assert len(REGISTRY) >= 20
    for source in REGISTRY.values():
        assert source.split in (*sources.SPLITS, sources.EXCLUDED), source.name
        assert source.licence.strip(), source.name
        assert source.kind in ("sf2", "sf3", "sfz") and source.layout in ("bank", "per-program", "instrument")
        assert {"debian", "pypi", "repo"} & set(source.origin), source.name
        if "repo" in source.origin:
            assert re.fullmatch(r"[0-9a-f]{40}", sources.repositories()[source.origin["repo"]]["commit"])
        if source.is_sfz:
            assert source.programs and source.file.endswith(".sfz")


def test_no_group_or_file_is_in_two_splits():
    split_of_group: dict[str, set[str]] = {}
    split_of_place: dict[str, set[str]] = {}
    for source in REGISTRY.values():
        split_of_group.setdefault(source.group, set()).add(source.split)
        place = source.file if "debian" in source.origin else json.dumps(source.origin, sort_keys=True) + str(source.file)
        split_of_place.setdefault(place, set()).add(source.split)
    assert all(len(splits) == 1 for splits in split_of_group.values()), split_of_group
    assert all(len(splits) == 1 for splits in split_of_place.values())
    by_split = {split: {s.name for s in REGISTRY.values() if s.split == split} for split in sources.SPLITS}
    assert not (by_split["train"] & by_split["validation"]) and not (by_split["train"] & by_split["test"])
    assert all(by_split.values())  # every split has sources
    assert set(sources.group_splits()) >= {s.group for s in REGISTRY.values()}


def test_the_first_fonts_keep_their_roles_and_non_commercial_ones_are_excluded():
    assert REGISTRY[VALIDATION_SOUNDFONT].split == "validation"
    assert REGISTRY["fluidr3"].split == REGISTRY["musescore"].split == "train"
    for name in SOUNDFONTS:
        assert REGISTRY[name].split in ("train", "validation", sources.EXCLUDED)
        if "debian" in REGISTRY[name].origin:
            assert str(REGISTRY[name].location()) == str(SOUNDFONTS[name])
    for source in REGISTRY.values():
        if re.search(r"not commercial|non-commercial|personal use only", source.licence, re.I):
            assert source.split == sources.EXCLUDED, source.name
    assert set(TRAIN_SOUNDFONTS) - {"merlin"} <= {s.name for s in REGISTRY.values() if s.split == "train"}


def test_hashed_split_is_a_fixed_rule():
    assert sources.hashed_split("some-new-bank") == sources.hashed_split("some-new-bank")
    counts = {split: 0 for split in sources.SPLITS}
    for i in range(600):
        counts[sources.hashed_split(f"group-{i}")] += 1
    assert counts["train"] > counts["validation"] > counts["test"] > 0
    assert sources.split_of_group("weresax") == "validation"  # explicit entries win


def test_without_optional_sources_the_presets_fall_back_to_the_debian_fonts(no_optional_sources):
    for preset, split in SPLIT_PRESETS.items():
        pool = source_pool(PRESETS[preset])
        assert pool and all(s.split == split and ("debian" in s.origin or "pypi" in s.origin) for s in pool)
    assert [s.name for s in source_pool(PRESETS["val-sampled"])] == [VALIDATION_SOUNDFONT]
    assert {"fluidr3", "musescore"} <= {s.name for s in source_pool(PRESETS["train-sampled"])}
    quick = replace(PRESETS["train-sampled"], score_fraction=0.0, example_s=(3.0, 3.0))
    for index in range(3):
        example = make_example(quick, 0, index)
        assert {REGISTRY[name].split for name in example.soundfonts} == {"train"}


def test_validation_timbres_are_never_drawn_for_training(two_sampled_saxes):
    train_pool = {s.name for s in source_pool(PRESETS["train-sampled"])}
    val_pool = {s.name for s in source_pool(PRESETS["val-sampled"])}
    assert "mtg-alto-sax" in train_pool and "weresax" not in train_pool
    assert "weresax" in val_pool and not val_pool & train_pool
    reeds = dict(family_weights={"reed": 1.0}, part_counts=(1,), part_weights=(1.0,), score_fraction=0.0,
                 example_s=(3.0, 3.0), sampled_program_weight=50.0)
    used = {}
    for preset in ("train-sampled", "val-sampled"):
        recipe = replace(PRESETS[preset], **reeds)
        used[preset] = [name for index in range(3) for name in make_example(recipe, 5, index).soundfonts]
        assert {REGISTRY[name].split for name in used[preset]} == {SPLIT_PRESETS[preset]}
    assert "mtg-alto-sax" in used["train-sampled"] and "weresax" in used["val-sampled"]


def test_sampled_parts_carry_labels_that_sound(two_sampled_saxes):
    """A part drawn from an SFZ source: velocities on the instrument's layers, notes only on
    keys it sounds, no overlaps (monophonic), and a stem that is not silent."""
    import numpy as np

    recipe = replace(PRESETS["val-sampled"], family_weights={"reed": 1.0}, part_counts=(1,), part_weights=(1.0,),
                     score_fraction=0.0, example_s=(4.0, 4.0), sampled_program_weight=50.0)
    example = next(e for e in (make_example(recipe, 5, i) for i in range(6)) if e.soundfonts == ["weresax"])
    part = example.parts[0]
    assert part.program == 65 and part.notes
    assert all(49 <= n.pitch <= 77 for n in part.notes)
    assert all(a.offset <= b.onset + 1e-9 for a, b in zip(part.notes, part.notes[1:]))
    assert np.abs(example.stems[0]).max() > 0.05


def test_install_copies_the_pinned_files_and_records_the_commit(tmp_path, monkeypatch):
    origin = tmp_path / "mirror" / "sfzinstruments+karoryfer.weresax"
    write_sfz_instrument(origin / "Programs", name="Sax.sfz")
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "tones"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    dest = tmp_path / "sources"
    monkeypatch.setenv(sources.SOURCES_ENV, str(dest))
    with pytest.raises(UserError, match="pinned commit"):
        sources.install(tmp_path / "mirror", dest, log=lambda line: None)
    lines = []
    record = sources.install(tmp_path / "mirror", dest, any_commit=True, log=lines.append)
    assert record["repositories"][WERESAX]["commit"] == head
    assert json.loads((dest / sources.INSTALLED_FILE).read_text()) == record
    assert any("not found" in line for line in lines)  # the other repositories: skipped, said
    assert REGISTRY["weresax"].available() and REGISTRY["weresax"].record()["origin"]["commit"] == head
    assert (dest / "sfzinstruments+karoryfer.weresax" / "Programs" / "samples" / "tone_60_1.wav").is_file()


def test_manifest_lists_the_sources_and_a_changed_set_is_refused(no_optional_sources, tmp_path, monkeypatch):
    recipe = replace(PRESETS["val-sampled"], score_fraction=0.0, example_s=(3.0, 3.0))
    out = tmp_path / "val"
    manifest = render_dataset(recipe, out, 1, seed=0, workers=1, progress=False)
    assert manifest["source_split"] == "validation"
    assert [s["name"] for s in manifest["timbre_sources"]] == [VALIDATION_SOUNDFONT]
    assert manifest["timbre_sources"][0]["licence"] and manifest["timbre_sources"][0]["origin"]
    weresax = REGISTRY["weresax"]
    write_sfz_instrument(sources.repository_dir(WERESAX) / "Programs", name="Sax.sfz")
    assert weresax.available()
    with pytest.raises(UserError, match="timbre sources"):
        render_dataset(recipe, out, 2, seed=0, workers=1, progress=False)
    monkeypatch.setattr(sources, "available_sources", lambda split: [])
    with pytest.raises(UserError, match="no timbre source"):
        render_dataset(recipe, tmp_path / "empty", 1, seed=0, workers=1, progress=False)


def test_sampled_programs_can_be_favoured_within_their_family():
    import numpy as np

    from timbrescribe.data.instruments import choose_programs

    rng = np.random.default_rng(0)
    draws = [choose_programs(rng, 1, 0.0, {"reed": 1.0}, {65: 8.0})[0] for _ in range(3000)]
    assert 0.47 < np.mean([p == 65 for p in draws]) < 0.6  # 8 / (8 + 7 others)
    pairs = [choose_programs(rng, 2, 1.0, {"reed": 1.0, "piano": 1.0}, {65: 8.0}) for _ in range(200)]
    assert all(len(set(p)) == 2 for p in pairs)


def test_the_piano_preset_draws_the_grand_piano_five_times_as_often():
    """train-sampled-piano: with the sampled grands installed (program 0 favoured), a one-part
    draw is an acoustic grand about 1 time in 4, against about 1 in 20 in train-sampled."""
    import numpy as np

    from timbrescribe.data.instruments import choose_programs

    def grand_share(name: str) -> float:
        preset = PRESETS[name]
        rng = np.random.default_rng(1)
        weights = {0: preset.sampled_program_weight}
        draws = [choose_programs(rng, 1, 0.0, preset.family_weights, weights)[0] for _ in range(4000)]
        return float(np.mean([p == 0 for p in draws]))

    assert PRESETS["train-sampled-piano"].source_split == "train"
    assert 0.2 < grand_share("train-sampled-piano") < 0.3  # 12/26.2 of parts piano, 8/15 of those
    assert 0.03 < grand_share("train-sampled") < 0.06  # 4/18.2 piano, 2/9 of those


def test_soundfont_presets_are_read_from_the_file():
    presets = sources.soundfont_presets(str(SOUNDFONTS["fluidr3"]))
    assert {(0, program) for program in (0, 40, 73)} <= presets
    assert (0, 0) in sources.soundfont_presets(str(SOUNDFONTS["musescore"]))  # an sf3 file
