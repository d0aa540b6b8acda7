"""Named recipes for synthetic datasets: which soundfonts, how many parts, where the music comes
from, how long each example is and how it is augmented."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from timbrescribe.data.augment import AugmentConfig
from timbrescribe.data.composer import ComposerConfig
from timbrescribe.data.instruments import TRAIN_SOUNDFONTS, VALIDATION_SOUNDFONT
from timbrescribe.errors import UserError

# Training soundfonts that load in about a second (MuseScore's sf3 decodes for several seconds).
QUICK_SOUNDFONTS = tuple(name for name in TRAIN_SOUNDFONTS if name != "musescore")

# Chamber-music families dominate; the rest keep a little weight for variety.
ACOUSTIC_FAMILY_WEIGHTS = {
    "piano": 4.0, "strings": 3.0, "reed": 3.0, "brass": 2.0, "pipe": 2.0, "guitar": 1.0,
    "bass": 0.5, "chromatic_percussion": 0.5, "organ": 0.5, "ensemble": 0.5, "ethnic": 0.3,
    "synth_lead": 0.2, "synth_pad": 0.2,
}


@dataclass(frozen=True)
class Preset:
    """One dataset recipe. ``part_counts[i]`` parts are drawn with weight ``part_weights[i]``."""

    name: str
    description: str
    soundfonts: tuple[str, ...]
    part_counts: tuple[int, ...]
    part_weights: tuple[float, ...]
    score_fraction: float  # share of examples whose music comes from real scores
    same_family_prob: float  # chance that a mixture holds two programs of one family
    example_s: tuple[float, float]  # example length range in seconds
    default_hours: float  # dataset size when --hours is not given
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    composer: ComposerConfig = field(default_factory=ComposerConfig)  # the random composer's knobs
    # how often each GM family plays a part (instruments.choose_programs); None = all alike
    family_weights: Mapping[str, float] | None = None
    # None: each part draws one of ``soundfonts`` (the first presets). A split ("train",
    # "validation", "test"): each part draws, by weight, one of the timbre sources of that split
    # installed here that plays its program (data/sources.py; ``soundfonts`` is then unused).
    source_split: str | None = None
    # within a family, programs that a sampled (SFZ) source of the split plays are drawn with
    # this weight against 1 for the others (source-split presets only)
    sampled_program_weight: float = 1.0

    @property
    def mean_example_s(self) -> float:
        return 0.5 * (self.example_s[0] + self.example_s[1])

    def count_for_hours(self, hours: float | None = None) -> int:
        """Number of examples that make about ``hours`` (default: default_hours) of audio, >= 1."""
        hours = self.default_hours if hours is None else hours
        return max(1, int(round(hours * 3600.0 / self.mean_example_s)))


TRAIN_MIX = Preset(
    name="train-mix",
    description="mixtures of 2-4 parts (same-family pairs included) for timbre separation",
    soundfonts=TRAIN_SOUNDFONTS,
    part_counts=(2, 3, 4),
    part_weights=(1.0, 1.0, 1.0),
    score_fraction=0.3,
    same_family_prob=0.4,
    example_s=(10.0, 20.0),
    default_hours=2.0,
)

VAL = Preset(
    name="val",
    description=f"held-out soundfont ({VALIDATION_SOUNDFONT}) only, 1-4 parts, composer and "
    "real scores",
    soundfonts=(VALIDATION_SOUNDFONT,),
    part_counts=(1, 2, 3, 4),
    part_weights=(1.0, 1.0, 1.0, 1.0),
    score_fraction=0.3,
    same_family_prob=0.25,
    example_s=(15.0, 15.0),
    default_hours=0.25,
)

# Rendered from the held-out timbre sources of one split: validation here, test below.
HELD_OUT_SAMPLED = replace(
    VAL,
    name="val-sampled",
    description="validation timbre sources only (held-out GM banks and SFZ instruments "
    "installed here), 1-4 parts",
    soundfonts=(),
    family_weights=ACOUSTIC_FAMILY_WEIGHTS,
    source_split="validation",
    sampled_program_weight=2.0,
)

# Every training timbre source installed here (GM banks and sampled SFZ instruments).
TRAIN_SAMPLED = replace(
    TRAIN_MIX,
    name="train-sampled",
    description="1-4 parts, mostly chamber-music families, every training timbre source "
    "installed (GM banks and sampled SFZ instruments; docs/data.md)",
    soundfonts=(),
    part_counts=(1, 2, 3, 4),
    part_weights=(0.2, 0.3, 0.3, 0.2),
    family_weights=ACOUSTIC_FAMILY_WEIGHTS,
    source_split="train",
    sampled_program_weight=2.0,
)

TRAIN_SAMPLED_PIANO = replace(
    TRAIN_SAMPLED,
    name="train-sampled-piano",
    description="train-sampled with the piano family three times as likely and sampled "
    "programs drawn 8:1 within their family: with the sampled grands installed, about one "
    "part in six is an acoustic grand, two thirds of them sampled (docs/data.md)",
    family_weights={**ACOUSTIC_FAMILY_WEIGHTS, "piano": 3 * ACOUSTIC_FAMILY_WEIGHTS["piano"]},
    sampled_program_weight=8.0,
)

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="smoke",
            description="a handful of 3-4 s examples, 1-3 parts, for tests (seconds to render)",
            soundfonts=QUICK_SOUNDFONTS,
            part_counts=(1, 2, 3),
            part_weights=(1.0, 1.0, 1.0),
            score_fraction=0.0,
            same_family_prob=0.25,
            example_s=(3.0, 4.0),
            default_hours=6 * 3.5 / 3600,
        ),
        Preset(
            name="train-agnostic",
            description="single-instrument clips and 2-4 part mixtures, composer and real scores, "
            "all training soundfonts",
            soundfonts=TRAIN_SOUNDFONTS,
            part_counts=(1, 2, 3, 4),
            part_weights=(0.3, 0.25, 0.25, 0.2),
            score_fraction=0.3,
            same_family_prob=0.25,
            example_s=(10.0, 20.0),
            default_hours=2.0,
        ),
        TRAIN_MIX,
        replace(
            TRAIN_MIX,
            name="train-acoustic",
            description="mixtures of 2-4 parts, mostly the acoustic instruments of chamber music "
            "(piano, strings, winds, brass, guitar), for timbre separation",
            family_weights=ACOUSTIC_FAMILY_WEIGHTS,
        ),
        VAL,
        TRAIN_SAMPLED,
        TRAIN_SAMPLED_PIANO,
        replace(
            TRAIN_SAMPLED_PIANO,
            name="train-sampled-chords",
            description="train-sampled-piano with denser writing for the polyphonic instruments "
            "(piano, guitar, organ, ...): composed parts play chords 0.7 of the time instead of 0.3 "
            "and hold up to 4 more notes at once (a composed piano part then holds 4.1 notes at "
            "once on average instead of 2.0; TRIOS's piano parts hold 2.1-5.3; docs/data.md)",
            composer=ComposerConfig(chord_prob=0.7, extra_polyphony=4),
        ),
        replace(
            TRAIN_SAMPLED_PIANO,
            name="train-sampled-held",
            description="train-sampled-piano whose composed polyphonic parts (piano, guitar, organ, "
            "...) hold the lowest note of half of their events 2-5 times longer, as a left hand "
            "holds a bass note (its acoustic grand parts' notes below C3 last 0.54 s at the median, "
            "a fifth of them over 1 s, against 0.48 s and a tenth in train-sampled-piano; docs/data.md)",
            composer=ComposerConfig(held_bass_prob=0.5),
        ),
        replace(
            TRAIN_SAMPLED_PIANO,
            name="train-sampled-sustained",
            description="train-sampled-held whose composed chords are also held: every note of "
            "half of the chords lasts 2-5 times its drawn length, as a pianist holds a chord "
            "under a moving line (TRIOS's brahms and lussier pianos hold 4.6-5.3 notes at once, "
            "their notes from C3 up last 0.55-0.69 s at the median; docs/data.md)",
            composer=ComposerConfig(held_bass_prob=0.5, held_chord_prob=0.5),
        ),
        HELD_OUT_SAMPLED,
        replace(
            HELD_OUT_SAMPLED,
            name="test-sampled",
            description="test timbre sources only (never trained or tuned on), 1-4 parts",
            source_split="test",
            sampled_program_weight=1.0,
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; UserError listing the presets otherwise."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]
