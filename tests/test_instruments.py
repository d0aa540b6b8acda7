import numpy as np
import pytest

from timbrescribe.constants import MIDI_MAX, MIDI_MIN
from timbrescribe.data.instruments import (
    FAMILIES,
    SOUNDFONTS,
    TRAIN_SOUNDFONTS,
    VALIDATION_SOUNDFONT,
    choose_programs,
    family_of,
    instrument_name,
    max_polyphony,
    pitch_range,
)

MELODIC_FAMILIES = {
    "piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth_lead", "synth_pad",
}


def test_every_melodic_family_is_represented_and_consistent():
    assert MELODIC_FAMILIES <= set(FAMILIES)
    assert "percussive" not in FAMILIES and "sound_effects" not in FAMILIES
    for family, programs in FAMILIES.items():
        assert programs, family
        assert all(family_of(p) == family for p in programs)
    assert 47 not in FAMILIES["strings"]  # timpani left out
    all_programs = [p for programs in FAMILIES.values() for p in programs]
    assert len(all_programs) == len(set(all_programs))


def test_family_of_known_programs():
    assert family_of(0) == "piano"
    assert family_of(40) == "strings"
    assert family_of(73) == "pipe"
    with pytest.raises(ValueError):
        family_of(128)


def test_ranges_are_valid_and_realistic():
    for programs in FAMILIES.values():
        for program in programs:
            low, high = pitch_range(program)
            assert MIDI_MIN <= low < high <= MIDI_MAX
            assert high - low >= 12
    assert pitch_range(40) == (55, 100)  # violin
    assert pitch_range(42) == (36, 76)  # cello
    assert pitch_range(73) == (60, 96)  # flute
    assert pitch_range(33) == (28, 67)  # bass
    assert pitch_range(0) == (MIDI_MIN, MIDI_MAX)  # piano, clipped
    ranges = [pitch_range(p) for programs in FAMILIES.values() for p in programs]
    covered = {pitch for low, high in ranges for pitch in range(low, high + 1)}
    assert covered == set(range(MIDI_MIN, MIDI_MAX + 1))
    with pytest.raises(ValueError):
        pitch_range(47)


def test_polyphony_by_family():
    assert max_polyphony(0) > 1
    assert max_polyphony(40) == 1  # solo violin
    assert max_polyphony(56) == 1  # trumpet
    assert max_polyphony(71) == 1  # clarinet


def test_names_are_file_safe():
    assert instrument_name(40) == "violin"
    assert instrument_name(80) == "lead_1_square"
    names = [instrument_name(p) for ps in FAMILIES.values() for p in ps]
    assert len(set(names)) == len(names)


def test_soundfonts_exist_and_one_is_held_out():
    assert all(path.is_file() for path in SOUNDFONTS.values())
    assert VALIDATION_SOUNDFONT in SOUNDFONTS
    assert VALIDATION_SOUNDFONT not in TRAIN_SOUNDFONTS
    assert {"fluidr3", "musescore"} <= set(TRAIN_SOUNDFONTS)
    assert set(TRAIN_SOUNDFONTS) | {VALIDATION_SOUNDFONT} == set(SOUNDFONTS)


def _has_same_family_pair(programs):
    families = [family_of(p) for p in programs]
    return len(set(families)) < len(families)


@pytest.mark.parametrize("n_parts", [2, 3, 4])
def test_choose_programs_distinct_and_same_family_rate(n_parts):
    rng = np.random.default_rng(n_parts)
    draws = [choose_programs(rng, n_parts, same_family_prob=0.3) for _ in range(2000)]
    for programs in draws:
        assert len(programs) == n_parts == len(set(programs))
        assert all(p in FAMILIES[family_of(p)] for p in programs)
    rate = np.mean([_has_same_family_pair(p) for p in draws])
    assert 0.26 < rate < 0.34
    assert not any(_has_same_family_pair(choose_programs(rng, n_parts, 0.0)) for _ in range(300))
    assert all(_has_same_family_pair(choose_programs(rng, n_parts, 1.0)) for _ in range(300))


def test_choose_programs_reaches_every_program_and_is_deterministic():
    rng = np.random.default_rng(0)
    seen = {p for _ in range(3000) for p in choose_programs(rng, 3)}
    assert seen == {p for ps in FAMILIES.values() for p in ps}
    first = choose_programs(np.random.default_rng(5), 4)
    assert first == choose_programs(np.random.default_rng(5), 4)
    with pytest.raises(ValueError):
        choose_programs(rng, 0)


def test_choose_programs_follows_family_weights():
    rng = np.random.default_rng(1)
    weights = {"piano": 6.0, "strings": 3.0, "reed": 1.0}
    draws = [choose_programs(rng, 1, 0.0, weights) for _ in range(3000)]
    share = {f: np.mean([family_of(p[0]) == f for p in draws]) for f in weights}
    assert set(share) == {family_of(p[0]) for p in draws}  # unnamed families never play
    assert 0.55 < share["piano"] < 0.65 and 0.25 < share["strings"] < 0.35
    pairs = [choose_programs(rng, 3, 1.0, weights) for _ in range(300)]
    assert all(len(set(p)) == 3 and _has_same_family_pair(p) for p in pairs)
    with pytest.raises(ValueError, match="1..2"):
        choose_programs(rng, 3, 0.0, {"piano": 1.0, "reed": 1.0})
    with pytest.raises(ValueError, match="unknown instrument families"):
        choose_programs(rng, 2, 0.0, {"lute": 1.0})
