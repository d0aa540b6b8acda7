import numpy as np
import pytest

from timbrescribe.constants import MIDI_MAX, MIDI_MIN
from timbrescribe.data.composer import ComposerConfig, compose
from timbrescribe.data.instruments import (
    FAMILIES,
    choose_programs,
    family_of,
    instrument_name,
    max_polyphony,
    pitch_range,
)


def _max_simultaneous(notes):
    events = sorted([(n.onset, 1) for n in notes] + [(n.offset, -1) for n in notes],
                    key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, change in events:
        level += change
        peak = max(peak, level)
    return peak


@pytest.fixture(scope="module")
def pieces():
    rng = np.random.default_rng(1234)
    return [compose(rng, choose_programs(rng, int(rng.integers(2, 5))), 8.0) for _ in range(300)]


def test_every_pitch_is_covered(pieces):
    seen = {n.pitch for piece in pieces for part in piece.parts for n in part.notes}
    assert seen == set(range(MIDI_MIN, MIDI_MAX + 1))


def test_parts_respect_program_range_time_and_metadata(pieces):
    for piece in pieces:
        assert piece.duration <= 8.0
        for part in piece.parts:
            low, high = pitch_range(part.program)
            assert part.family == family_of(part.program)
            assert part.name == instrument_name(part.program)
            for note in part.notes:
                assert low <= note.pitch <= high
                assert 0.0 <= note.onset < note.offset <= 8.0
                assert 1 <= note.velocity <= 127


def test_polyphony_limits_and_no_same_pitch_overlap(pieces):
    for piece in pieces:
        for part in piece.parts:
            assert _max_simultaneous(part.notes) <= max_polyphony(part.program)
            by_pitch = {}
            for note in part.notes:
                by_pitch.setdefault(note.pitch, []).append(note)
            for notes in by_pitch.values():
                notes.sort(key=lambda n: n.onset)
                assert all(a.offset <= b.onset for a, b in zip(notes, notes[1:]))


def test_monophonic_parts_never_overlap(pieces):
    mono = [part for piece in pieces for part in piece.parts if max_polyphony(part.program) == 1]
    assert len(mono) > 50
    for part in mono:
        assert all(a.offset <= b.onset for a, b in zip(part.notes, part.notes[1:]))


def test_chords_and_steps_occur(pieces):
    poly = [p for piece in pieces for p in piece.parts if max_polyphony(p.program) > 1]
    chord_onsets = sum(
        len(p.notes) - len({n.onset for n in p.notes}) for p in poly
    )
    assert chord_onsets > 100
    mono = [p for piece in pieces for p in piece.parts if max_polyphony(p.program) == 1]
    steps = np.concatenate([np.abs(np.diff([n.pitch for n in p.notes])) for p in mono])
    assert np.mean((steps >= 1) & (steps <= 5)) > 0.4


def test_duration_and_gap_statistics():
    config = ComposerConfig(rest_prob=0.0, tempo_scale_range=(1.0, 1.0), chord_prob=0.0,
                            shared_rhythm_prob=0.0)
    rng = np.random.default_rng(7)
    piano = 0
    durations, gaps = [], []
    for _ in range(40):
        notes = compose(rng, [piano], 20.0, config).parts[0].notes
        onsets = np.array([n.onset for n in notes])
        gaps += list(np.diff(onsets))
        durations += [n.offset - n.onset for n in notes[:-1]]
    gaps, durations = np.array(gaps), np.array(durations)
    assert gaps.min() >= config.gap_min - 1e-9
    assert gaps.max() <= config.gap_max + 1e-9
    assert abs(np.mean(gaps) - config.gap_mean) < 0.08
    assert durations.min() >= 0.05
    assert durations.max() <= config.duration_max + 1e-9
    # Polyphony trimming only shortens notes, so the mean can sit below the configured one.
    assert 0.2 < np.mean(durations) <= config.duration_mean + 0.1


def test_determinism_from_seed():
    programs = [40, 41, 0]
    a = compose(np.random.default_rng(99), programs, 6.0)
    b = compose(np.random.default_rng(99), programs, 6.0)
    c = compose(np.random.default_rng(100), programs, 6.0)
    assert [p.notes for p in a.parts] == [p.notes for p in b.parts]
    assert [p.notes for p in a.parts] != [p.notes for p in c.parts]


def test_config_caps_polyphony_and_low_octave_weights_shift_register():
    rng = np.random.default_rng(3)
    mono = ComposerConfig(max_polyphony=1)
    for _ in range(20):
        part = compose(rng, [0], 10.0, mono).parts[0]
        assert _max_simultaneous(part.notes) == 1
    low_heavy = ComposerConfig(octave_weights=(10, 10, 1, 0.1, 0.1, 0.1, 0.1), step_prob=0.0)
    parts = [compose(rng, [0], 10.0, low_heavy).parts[0] for _ in range(20)]
    pitches = [n.pitch for part in parts for n in part.notes]
    assert np.median(pitches) < 48


def _mean_sounding(notes) -> float:
    """Mean number of notes at once over the 20 ms steps where any sounds."""
    roll = np.zeros(int(max(n.offset for n in notes) * 50) + 1)
    for n in notes:
        roll[int(n.onset * 50) : int(n.offset * 50)] += 1
    return float(roll[roll > 0].mean())


def test_extra_polyphony_makes_keyboard_parts_denser_and_leaves_monophonic_ones():
    """The train-sampled-chords knobs: a piano part holds about twice as many notes at once
    (up to 4 + 4), a flute stays monophonic."""
    from timbrescribe.data.presets import PRESETS

    dense = PRESETS["train-sampled-chords"].composer
    plain, denser = [], []
    for seed in range(40):
        plain.append(_mean_sounding(compose(np.random.default_rng(seed), [0], 15.0).parts[0].notes))
        part = compose(np.random.default_rng(seed), [0], 15.0, dense).parts[0]
        assert _max_simultaneous(part.notes) <= 8
        denser.append(_mean_sounding(part.notes))
        assert _max_simultaneous(compose(np.random.default_rng(seed), [73], 8.0, dense).parts[0].notes) == 1
    assert 1.7 < np.mean(plain) < 2.4 and 3.6 < np.mean(denser) < 4.6


def test_rejects_bad_duration_and_every_family_composes():
    with pytest.raises(ValueError):
        compose(np.random.default_rng(0), [0], 0.0)
    rng = np.random.default_rng(11)
    for programs in FAMILIES.values():
        piece = compose(rng, list(programs[:2]), 5.0)
        assert all(part.notes for part in piece.parts)


def test_held_bass_holds_the_lowest_note_of_keyboard_events_and_leaves_monophonic_parts():
    """The train-sampled-held knob: in a chord the lowest note outlasts the others 2-5 times
    (unless a later event cuts one of them), many more notes last over 1 s, and a monophonic part composes
    exactly as without the knob (no random draw is spent on it)."""
    from timbrescribe.data.presets import PRESETS

    held = PRESETS["train-sampled-held"].composer
    assert held.held_bass_prob == 0.5
    always = ComposerConfig(held_bass_prob=1.0, chord_prob=1.0, tempo_scale_range=(1.0, 1.0))
    ratios = []
    for seed in range(30):
        notes = compose(np.random.default_rng(seed), [0], 15.0, always).parts[0].notes
        by_onset = {}
        for note in notes:
            by_onset.setdefault(note.onset, []).append(note)
        for chord in by_onset.values():
            if len(chord) > 1:
                low = min(chord, key=lambda n: n.pitch)
                others = [n.offset - n.onset for n in chord if n is not low]
                ratios.append((low.offset - low.onset) / max(others))
        flute = compose(np.random.default_rng(seed), [73], 8.0, held).parts[0].notes
        assert flute == compose(np.random.default_rng(seed), [73], 8.0).parts[0].notes
    ratios = np.array(ratios)
    assert len(ratios) > 200 and np.median(ratios) > 1.5 and np.mean(ratios > 1.0) > 0.6  # without the knob: never
    plain = [n.offset - n.onset for s in range(30) for n in compose(np.random.default_rng(s), [0], 15.0).parts[0].notes]
    longer = [n.offset - n.onset for s in range(30) for n in compose(np.random.default_rng(s), [0], 15.0, held).parts[0].notes]
    assert np.mean(np.array(longer) > 1.0) > 2 * np.mean(np.array(plain) > 1.0)


def test_held_chords_hold_every_chord_note_and_leave_monophonic_parts():
    """The train-sampled-sustained knob: a held chord's notes all last 2-5 times their drawn
    length (unless a later event or the polyphony cuts them), the chords without it do not, and a
    monophonic part composes exactly as without the knob."""
    from timbrescribe.data.presets import PRESETS

    sustained = PRESETS["train-sampled-sustained"].composer
    assert (sustained.held_chord_prob, sustained.held_bass_prob) == (0.5, 0.5)
    base = dict(tempo_scale_range=(1.0, 1.0))  # the default 0.3 chords: few cut by the polyphony
    always = ComposerConfig(held_chord_prob=1.0, **base)

    def chord_note_lengths(config):
        lengths = []
        for seed in range(30):
            by_onset = {}
            for note in compose(np.random.default_rng(seed), [0], 15.0, config).parts[0].notes:
                by_onset.setdefault(note.onset, []).append(note.offset - note.onset)
            lengths += [length for chord in by_onset.values() if len(chord) > 1 for length in chord]
        return np.array(lengths)

    held, plain = chord_note_lengths(always), chord_note_lengths(ComposerConfig(**base))
    assert len(held) > 200 and len(plain) > 200
    assert np.median(held) > 1.8 * np.median(plain)  # 2.0 measured
    assert np.mean(held > 1.0) > 5 * np.mean(plain > 1.0)  # 0.44 against 0.05
    for seed in range(10):
        flute = compose(np.random.default_rng(seed), [73], 8.0, sustained).parts[0].notes
        assert flute == compose(np.random.default_rng(seed), [73], 8.0).parts[0].notes
