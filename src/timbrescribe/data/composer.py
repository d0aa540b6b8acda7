"""Random composer: synthetic multi-part music that covers every pitch (DESIGN.md §6).

Each part gets a rhythm (truncated-normal onset gaps and durations, occasional rests, a per-part
tempo scale; sometimes another part's rhythm, as in homophonic music) and pitches: fresh pitches
drawn by octave weights over the instrument's range, melodic "nearest next pitch" steps, and
chords stacked from intervals (+4, +5, +7, +12) whose harmonics overlap. Optionally the lowest
note of a polyphonic part's event is held several times longer, as a keyboard's left hand holds a
bass note under the moving right hand.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timbrescribe.constants import MIDI_MIN
from timbrescribe.data.expression import MIN_NOTE_S
from timbrescribe.data.instruments import family_of, instrument_name, max_polyphony, pitch_range
from timbrescribe.data.types import Part, Piece
from timbrescribe.notes import Note


@dataclass
class ComposerConfig:
    """Knobs of the random composer; times in seconds."""

    # Weight of each octave C1..B7 (MIDI 24-35, 36-47, ..., 96-107) when drawing a fresh pitch.
    octave_weights: tuple[float, ...] = (1.0, 1.2, 1.5, 1.5, 1.5, 1.2, 1.0)
    step_prob: float = 0.6  # next pitch is a small step from the previous one
    max_step: int = 5  # largest melodic step in semitones (small steps are likelier)
    chord_prob: float = 0.3  # for polyphonic parts: an event is a chord
    chord_intervals: tuple[int, ...] = (4, 5, 7, 12)  # stacked above the lowest note
    max_polyphony: int | None = None  # cap on the instrument's own polyphony (None: no cap)
    extra_polyphony: int = 0  # added to every polyphonic instrument's polyphony (dense keyboard writing)
    held_bass_prob: float = 0.0  # for polyphonic parts: an event's lowest note is held longer
    held_chord_prob: float = 0.0  # for polyphonic parts: every note of a chord is held longer
    held_scale: tuple[float, float] = (2.0, 5.0)  # held notes last this many times their length
    duration_mean: float = 0.45
    duration_std: float = 0.35
    duration_min: float = 0.08
    duration_max: float = 3.0
    gap_mean: float = 0.35  # onset-to-onset gap within a part
    gap_std: float = 0.25
    gap_min: float = 0.06
    gap_max: float = 2.0
    rest_prob: float = 0.1  # after an event, add a rest
    rest_mean: float = 0.8
    rest_std: float = 0.5
    tempo_scale_range: tuple[float, float] = (0.6, 1.6)  # per-part factor on gaps and durations
    shared_rhythm_prob: float = 0.25  # a part reuses the first part's rhythm
    velocity_range: tuple[int, int] = (35, 120)
    velocity_std: float = 8.0  # spread of note velocities around a part's level


def truncated_normal(
    rng: np.random.Generator, mean: float, std: float, low: float, high: float
) -> float:
    """One draw of a normal distribution restricted to [low, high] (rejection, then clip)."""
    for _ in range(32):
        value = rng.normal(mean, std)
        if low <= value <= high:
            return float(value)
    return float(np.clip(mean, low, high))


def _rhythm(
    rng: np.random.Generator, config: ComposerConfig, duration_s: float
) -> list[tuple[float, float]]:
    """(onset, duration) of each event of one part, onsets strictly inside [0, duration_s)."""
    scale = rng.uniform(*config.tempo_scale_range)
    events = []
    t = rng.uniform(0.0, config.gap_mean * scale)
    while t < duration_s:
        length = scale * truncated_normal(
            rng, config.duration_mean, config.duration_std, config.duration_min, config.duration_max
        )
        events.append((t, length))
        t += scale * truncated_normal(
            rng, config.gap_mean, config.gap_std, config.gap_min, config.gap_max
        )
        if rng.random() < config.rest_prob:
            t += truncated_normal(rng, config.rest_mean, config.rest_std, 0.0, 4 * config.rest_mean)
    return events


def _fresh_pitch(rng: np.random.Generator, config: ComposerConfig, low: int, high: int) -> int:
    """A pitch of [low, high] drawn with the octave weights."""
    pitches = np.arange(low, high + 1)
    octaves = np.clip((pitches - MIDI_MIN) // 12, 0, len(config.octave_weights) - 1)
    weights = np.asarray(config.octave_weights, dtype=float)[octaves]
    return int(rng.choice(pitches, p=weights / weights.sum()))


def _step_pitch(
    rng: np.random.Generator, config: ComposerConfig, previous: int, low: int, high: int
) -> int:
    """A pitch near ``previous`` (1..max_step semitones, smaller likelier), reflected into range."""
    sizes = np.arange(1, config.max_step + 1)
    size = int(rng.choice(sizes, p=(1 / sizes) / (1 / sizes).sum()))
    pitch = previous + size * (1 if rng.random() < 0.5 else -1)
    if pitch < low or pitch > high:
        pitch = previous - (pitch - previous)
    return int(np.clip(pitch, low, high))


def _chord(
    rng: np.random.Generator, config: ComposerConfig, root: int, size: int, high: int
) -> list[int]:
    """``root`` plus up to ``size - 1`` notes stacked by the chord intervals, all <= high."""
    chord = [root]
    for _ in range(size - 1):
        above = chord[-1] + int(rng.choice(config.chord_intervals))
        if above > high:
            break
        chord.append(above)
    return chord


@dataclass
class _OpenNote:
    """A note being written; its offset may still be cut short."""

    onset: float
    offset: float
    pitch: int
    velocity: int


def _compose_part(
    rng: np.random.Generator,
    program: int,
    rhythm: list[tuple[float, float]],
    duration_s: float,
    config: ComposerConfig,
) -> Part:
    low, high = pitch_range(program)
    polyphony = max_polyphony(program)
    if polyphony > 1:
        polyphony += config.extra_polyphony
    if config.max_polyphony is not None:
        polyphony = max(1, min(polyphony, config.max_polyphony))
    level = rng.uniform(*config.velocity_range)
    sounding: list[_OpenNote] = []
    finished: list[_OpenNote] = []
    previous = None
    for index, (onset, length) in enumerate(rhythm):
        if previous is not None and rng.random() < config.step_prob:
            root = _step_pitch(rng, config, previous, low, high)
        else:
            root = _fresh_pitch(rng, config, low, high)
        previous = root
        size = 1
        if polyphony > 1 and rng.random() < config.chord_prob:
            size = int(rng.integers(2, polyphony + 1))
        chord = _chord(rng, config, root, size, high)
        offset = min(onset + length, duration_s)
        # Drawn only when the knobs are on, so that presets without them compose exactly as before.
        if len(chord) > 1 and config.held_chord_prob > 0 and rng.random() < config.held_chord_prob:
            offset = min(onset + length * rng.uniform(*config.held_scale), duration_s)
        bass_offset = offset
        if polyphony > 1 and config.held_bass_prob > 0 and rng.random() < config.held_bass_prob:
            bass_offset = max(offset, min(onset + length * rng.uniform(*config.held_scale), duration_s))
        if polyphony == 1 and index + 1 < len(rhythm):
            offset = min(offset, rhythm[index + 1][0])
        # Close notes that ended, share a pitch with the new chord, or exceed the polyphony.
        still = []
        for note in sorted(sounding, key=lambda n: n.offset):
            if note.offset <= onset or note.pitch in chord:
                note.offset = min(note.offset, onset)
                finished.append(note)
            else:
                still.append(note)
        while len(still) + len(chord) > polyphony:
            note = still.pop(0)  # the one ending first
            note.offset = onset
            finished.append(note)
        for pitch in chord:
            velocity = np.clip(rng.normal(level, config.velocity_std), 1, 127)
            end = bass_offset if pitch == chord[0] else offset
            still.append(_OpenNote(onset, end, pitch, int(round(velocity))))
        sounding = still
    notes = [
        Note(n.onset, n.offset, n.pitch, n.velocity)
        for n in finished + sounding
        if n.offset - n.onset >= MIN_NOTE_S
    ]
    notes.sort(key=lambda n: (n.onset, n.pitch))
    return Part(notes, name=instrument_name(program), program=program, family=family_of(program))


def compose(
    rng: np.random.Generator,
    programs: list[int],
    duration_s: float,
    config: ComposerConfig | None = None,
) -> Piece:
    """Random music of ``duration_s`` seconds: one Part per program, inside its pitch range."""
    config = config or ComposerConfig()
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    first_rhythm = _rhythm(rng, config, duration_s)
    parts = []
    for index, program in enumerate(programs):
        shared = index > 0 and rng.random() < config.shared_rhythm_prob
        rhythm = first_rhythm if index == 0 or shared else _rhythm(rng, config, duration_s)
        parts.append(_compose_part(rng, program, rhythm, duration_s, config))
    return Piece(parts, source="composer")
