import numpy as np
import pytest

from timbrescribe.constants import MIDI_MAX, MIDI_MIN
from timbrescribe.data.composer import compose
from timbrescribe.data.expression import (
    MAX_BEND_CENTS,
    ExpressionConfig,
    perform,
    separate_same_pitch,
)
from timbrescribe.data.instruments import choose_programs, max_polyphony
from timbrescribe.data.types import Part, Piece
from timbrescribe.notes import Note

ALL_ON = ExpressionConfig(vibrato_prob=1.0, bend_prob=1.0, swell_prob=1.0, legato_prob=1.0)


@pytest.fixture(scope="module")
def performed():
    rng = np.random.default_rng(21)
    pairs = []
    for _ in range(120):
        piece = compose(rng, choose_programs(rng, 3), 8.0)
        pairs.append((piece, perform(piece, rng, ALL_ON)))
    return pairs


def test_notes_stay_valid_and_same_pitch_notes_never_overlap(performed):
    for _, piece in performed:
        for part in piece.parts:
            last_offset = {}
            for note in sorted(part.notes, key=lambda n: n.onset):
                assert MIDI_MIN <= note.pitch <= MIDI_MAX
                assert note.offset - note.onset >= 0.05 - 1e-9
                assert note.onset >= 0.0
                assert 1 <= note.velocity <= 127
                if note.pitch in last_offset:
                    assert note.onset - last_offset[note.pitch] >= 0.03 - 1e-9
                last_offset[note.pitch] = note.offset


def test_controls_are_valid_and_bends_stay_within_30_cents(performed):
    kinds = set()
    for _, piece in performed:
        for part in piece.parts:
            times = [c.time for c in part.controls]
            assert times == sorted(times)
            for control in part.controls:
                kinds.add((control.kind, control.number))
                assert control.time >= 0.0
                if control.kind == "pitchbend":
                    assert abs(control.value / 8192 * 200) <= MAX_BEND_CENTS
                else:
                    assert 0 <= control.value <= 127
                    if control.number == 1:
                        assert control.value <= ALL_ON.vibrato_max_cc
    assert kinds == {("pitchbend", 0), ("cc", 1), ("cc", 11)}
    bends = [c.value for _, p in performed for part in p.parts for c in part.controls
             if c.kind == "pitchbend"]
    assert max(abs(v) for v in bends) > 0.5 * ALL_ON.bend_max_cents / 200 * 8192  # bends happen


def test_jitter_is_small_and_sub_frame(performed):
    shifts = []
    for written, played in performed:
        for before, after in zip(written.parts, played.parts):
            for old, new in zip(sorted(before.notes, key=lambda n: (n.onset, n.pitch)),
                                sorted(after.notes, key=lambda n: (n.onset, n.pitch))):
                if old.pitch == new.pitch:
                    shifts.append(new.onset - old.onset)
    shifts = np.abs(shifts)
    assert np.median(shifts) > 0.0005  # jitter is on
    assert np.percentile(shifts, 95) <= 0.0116  # below one frame (11.6 ms)


def test_legato_overlaps_only_in_monophonic_parts_and_only_across_pitches(performed):
    overlaps = 0
    for written, played in performed:
        for part in played.parts:
            if max_polyphony(part.program) != 1:
                continue
            notes = sorted(part.notes, key=lambda n: n.onset)
            for a, b in zip(notes, notes[1:]):
                if a.offset > b.onset + 0.02:  # more than the jitter could make
                    overlaps += 1
                    assert a.pitch != b.pitch
    assert overlaps > 20


def test_velocity_walk_changes_velocities(performed):
    changed = [
        old.velocity != new.velocity
        for written, played in performed
        for before, after in zip(written.parts, played.parts)
        for old, new in zip(before.notes, after.notes)
    ]
    assert np.mean(changed) > 0.5


def test_determinism_and_input_untouched():
    piece = compose(np.random.default_rng(4), [40, 0], 6.0)
    copy = [list(p.notes) for p in piece.parts]
    a = perform(piece, np.random.default_rng(8), ALL_ON)
    b = perform(piece, np.random.default_rng(8), ALL_ON)
    c = perform(piece, np.random.default_rng(9), ALL_ON)
    assert [(p.notes, p.controls) for p in a.parts] == [(p.notes, p.controls) for p in b.parts]
    assert [p.notes for p in a.parts] != [p.notes for p in c.parts]
    assert [list(p.notes) for p in piece.parts] == copy
    assert a.source == piece.source


def test_everything_off_keeps_notes():
    off = ExpressionConfig(velocity_walk_std=0.0, vibrato_prob=0.0, bend_prob=0.0,
                           swell_prob=0.0, legato_prob=0.0, jitter_std=0.0)
    piece = compose(np.random.default_rng(2), [41, 73], 6.0)
    played = perform(piece, np.random.default_rng(0), off)
    for before, after in zip(piece.parts, played.parts):
        assert after.controls == []
        assert sorted(after.notes, key=lambda n: (n.onset, n.pitch)) == sorted(
            before.notes, key=lambda n: (n.onset, n.pitch))


def test_separate_same_pitch_trims_or_drops():
    notes = [Note(0.0, 1.0, 60), Note(0.5, 1.5, 60), Note(0.52, 1.0, 64), Note(0.54, 0.9, 60)]
    kept = separate_same_pitch(notes, gap=0.03, min_duration=0.05)
    assert Note(0.0, 0.47, 60) in kept  # trimmed to leave the gap
    assert Note(0.54, 0.9, 60) not in kept  # would leave 0.5..0.51: dropped
    assert Note(0.52, 1.0, 64) in kept
    piece = Piece([Part([Note(0.0, 0.01, 60)], program=0)])
    short = perform(piece, np.random.default_rng(0), ExpressionConfig(jitter_std=0.0))
    assert short.parts[0].notes[0].offset == pytest.approx(0.05)
