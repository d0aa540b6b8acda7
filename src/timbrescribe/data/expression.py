"""Expressive performance of composed music: what a player adds to the written notes.

Velocity random walks, vibrato (CC1), small pitch bends, expression swells (CC11), legato
overlaps in monophonic parts and sub-frame onset jitter. The returned notes are the performed
ones, so labels made from them stay true. Limits that keep labels right:
- pitch bends stay within +-MAX_BEND_CENTS (bend range assumed 2 semitones: value = cents/200*8192);
- CC1 is capped (the SoundFont default modulator maps CC1 = 127 to 50 cents of vibrato);
- two notes of one pitch in one part never overlap and are >= same_pitch_gap apart, because the
  synthesiser would cut the first one;
- every note lasts >= min_duration and stays inside MIDI_MIN..MIDI_MAX.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from timbrescribe.constants import MIDI_MAX, MIDI_MIN
from timbrescribe.data.instruments import max_polyphony
from timbrescribe.data.types import ControlEvent, Part, Piece
from timbrescribe.notes import Note

MIN_NOTE_S = 0.05  # shortest note the data engine produces
SAME_PITCH_GAP_S = 0.03  # least silence between two notes of one pitch in one part
MAX_BEND_CENTS = 30.0
BEND_RANGE_CENTS = 200.0
MODULATION, EXPRESSION = 1, 11  # MIDI CC numbers


@dataclass
class ExpressionConfig:
    """Each effect has a probability per part (0 switches it off) and a size."""

    velocity_walk_std: float = 5.0  # velocity change per note; 0: off
    velocity_walk_pull: float = 0.15  # pull of the walk back to the written velocity
    vibrato_prob: float = 0.5
    vibrato_max_cc: int = 32  # CC1 ceiling: 32 -> about +-13 cents (measured in FluidSynth)
    vibrato_min_length: float = 0.3  # only notes at least this long get vibrato
    vibrato_delay: float = 0.15  # vibrato fades in over this time after the onset
    bend_prob: float = 0.3
    bend_max_cents: float = 15.0  # <= MAX_BEND_CENTS; some presets add their own vibrato
    bend_scoop_prob: float = 0.5  # a bent note glides back to its pitch
    bend_scoop_time: float = 0.08
    swell_prob: float = 0.4
    swell_min_cc: int = 60  # CC11 floor, keeps notes audible
    swell_rate: float = 8.0  # CC11 events per second
    swell_period: float = 2.0  # typical length of a swell in seconds
    legato_prob: float = 0.5  # per monophonic part; then per note with this probability
    legato_max_overlap: float = 0.06
    jitter_std: float = 0.004  # onset/offset jitter in seconds; 0: off
    jitter_max: float = 0.010
    same_pitch_gap: float = SAME_PITCH_GAP_S
    min_duration: float = MIN_NOTE_S


def _velocity_walk(rng, notes: list[Note], config: ExpressionConfig) -> list[Note]:
    """Velocities drift around the written ones as a mean-reverting random walk."""
    if config.velocity_walk_std <= 0:
        return notes
    drift, walked = 0.0, []
    for note in notes:
        drift += rng.normal(0.0, config.velocity_walk_std) - config.velocity_walk_pull * drift
        velocity = int(np.clip(round(note.velocity + drift), 1, 127))
        walked.append(replace(note, velocity=velocity))
    return walked


def _legato(rng, notes: list[Note], config: ExpressionConfig) -> list[Note]:
    """Monophonic line: some notes hold into the next one (never into a note of the same pitch)."""
    tied = list(notes)
    for i in range(len(tied) - 1):
        current, following = tied[i], tied[i + 1]
        if current.pitch == following.pitch or rng.random() >= config.legato_prob:
            continue
        if following.onset - current.offset > config.legato_max_overlap:
            continue  # a rest, not a legato join
        overlap = rng.uniform(0.0, config.legato_max_overlap)
        offset = min(following.onset + overlap, following.offset)
        tied[i] = replace(current, offset=max(current.offset, offset))
    return tied


def _jitter(rng, notes: list[Note], config: ExpressionConfig) -> list[Note]:
    """Shift onsets and offsets by a few milliseconds (truncated at +-jitter_max, onset >= 0)."""
    if config.jitter_std <= 0:
        return notes
    shifts = np.clip(
        rng.normal(0.0, config.jitter_std, size=(len(notes), 2)),
        -config.jitter_max, config.jitter_max,
    )
    moved = []
    for note, (d_on, d_off) in zip(notes, shifts):
        onset = max(0.0, note.onset + float(d_on))
        offset = max(note.offset + float(d_off), onset + config.min_duration)
        moved.append(replace(note, onset=onset, offset=offset))
    return moved


def separate_same_pitch(notes: list[Note], gap: float, min_duration: float) -> list[Note]:
    """Notes sorted by onset, each >= min_duration long, notes of one pitch >= gap apart.

    An earlier note is shortened to make room; if that would leave it too short, the later note
    is dropped instead.
    """
    last_of_pitch: dict[int, int] = {}
    kept: list[Note] = []
    for note in sorted(notes, key=lambda n: (n.onset, n.pitch)):
        if note.offset - note.onset < min_duration:
            note = replace(note, offset=note.onset + min_duration)
        index = last_of_pitch.get(note.pitch)
        if index is not None:
            earlier = kept[index]
            latest_offset = note.onset - gap
            if latest_offset - earlier.onset < min_duration:
                continue
            if earlier.offset > latest_offset:
                kept[index] = replace(earlier, offset=latest_offset)
        last_of_pitch[note.pitch] = len(kept)
        kept.append(note)
    return kept


def _bend_value(cents: float) -> int:
    cents = float(np.clip(cents, -MAX_BEND_CENTS, MAX_BEND_CENTS))
    return int(round(cents / BEND_RANGE_CENTS * 8192))


def _bends(rng, notes: list[Note], config: ExpressionConfig) -> list[ControlEvent]:
    """Per note a small detune at the onset, sometimes gliding back to 0 (a scoop)."""
    events = [ControlEvent(0.0, "pitchbend", 0, 0)]
    limit = min(config.bend_max_cents, MAX_BEND_CENTS)
    for note in notes:
        cents = float(rng.uniform(-limit, limit))
        events.append(ControlEvent(note.onset, "pitchbend", 0, _bend_value(cents)))
        if rng.random() < config.bend_scoop_prob:
            glide = min(config.bend_scoop_time, (note.offset - note.onset) / 2)
            for fraction in (0.5, 1.0):
                time = note.onset + fraction * glide
                value = _bend_value(cents * (1 - fraction))
                events.append(ControlEvent(time, "pitchbend", 0, value))
    return events


def _vibrato(rng, notes: list[Note], config: ExpressionConfig) -> list[ControlEvent]:
    """CC1 off at each onset, fading in to a per-note depth on long notes."""
    events = [ControlEvent(0.0, "cc", MODULATION, 0)]
    for note in notes:
        events.append(ControlEvent(note.onset, "cc", MODULATION, 0))
        if note.offset - note.onset < config.vibrato_min_length:
            continue
        depth = int(rng.integers(config.vibrato_max_cc // 3, config.vibrato_max_cc + 1))
        for fraction in (0.5, 1.0):
            time = note.onset + fraction * config.vibrato_delay
            events.append(ControlEvent(time, "cc", MODULATION, int(round(fraction * depth))))
    return events


def _swells(rng, end: float, config: ExpressionConfig) -> list[ControlEvent]:
    """CC11 as a smooth random curve between swell_min_cc and 127 (sum of slow sinusoids)."""
    times = np.arange(0.0, end, 1.0 / config.swell_rate)
    curve = np.zeros_like(times)
    for _ in range(3):
        period = config.swell_period * rng.uniform(0.5, 2.0)
        curve += np.sin(2 * np.pi * times / period + rng.uniform(0, 2 * np.pi))
    low = config.swell_min_cc
    values = low + (127 - low) * (curve - curve.min()) / max(np.ptp(curve), 1e-9)
    return [ControlEvent(float(t), "cc", EXPRESSION, int(round(v))) for t, v in zip(times, values)]


def _perform_part(rng, part: Part, config: ExpressionConfig) -> Part:
    notes = sorted(part.notes, key=lambda n: (n.onset, n.pitch))
    notes = [n for n in notes if MIDI_MIN <= n.pitch <= MIDI_MAX]
    notes = _velocity_walk(rng, notes, config)
    if _is_monophonic(part.program) and rng.random() < config.legato_prob:
        notes = _legato(rng, notes, config)
    notes = separate_same_pitch(
        _jitter(rng, notes, config), config.same_pitch_gap, config.min_duration
    )
    controls = list(part.controls)
    if notes and rng.random() < config.vibrato_prob:
        controls += _vibrato(rng, notes, config)
    if notes and rng.random() < config.bend_prob:
        controls += _bends(rng, notes, config)
    if notes and rng.random() < config.swell_prob:
        controls += _swells(rng, max(n.offset for n in notes), config)
    controls.sort(key=lambda c: c.time)
    return replace(part, notes=notes, controls=controls)


def _is_monophonic(program: int) -> bool:
    try:
        return max_polyphony(program) == 1
    except ValueError:  # a program the data engine does not choose itself
        return False


def perform(
    piece: Piece, rng: np.random.Generator, config: ExpressionConfig | None = None
) -> Piece:
    """A new Piece with performed notes and control events; ``piece`` is left unchanged."""
    config = config or ExpressionConfig()
    return Piece([_perform_part(rng, part, config) for part in piece.parts], source=piece.source)
