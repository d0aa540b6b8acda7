"""Scores of hand-made note lists whose precision, recall and F are worked out by hand."""
import numpy as np
import pytest

from timbrescribe.evaluation.metrics import (
    FRAME_PERIOD,
    PRF,
    Scores,
    frame_roll,
    frame_scores,
    mean_scores,
    note_scores,
    score_agnostic,
    score_notes,
    score_separated,
)
from timbrescribe.notes import Note, Track

REFERENCE = [Note(0.0, 0.5, 60), Note(1.0, 1.5, 62), Note(2.0, 2.5, 64), Note(3.0, 3.5, 65)]
ESTIMATE = [
    Note(0.02, 0.52, 60),  # onset 20 ms late, offset 20 ms late: a match with and without offsets
    Note(1.03, 2.0, 62),  # onset 30 ms late: a match; offset 500 ms late > max(50 ms, 0.2 * 0.5 s)
    Note(2.0, 2.5, 66),  # wrong pitch
]
PART_A = [Note(0.0, 0.4, 60), Note(0.5, 0.9, 64), Note(1.0, 1.6, 67)]
PART_B = [Note(0.0, 1.0, 48), Note(1.0, 2.0, 43)]


def assert_prf(actual: PRF, precision: float, recall: float, f: float) -> None:
    assert (actual.precision, actual.recall, actual.f) == pytest.approx((precision, recall, f))


def test_note_onset_scores_count_onset_and_pitch_matches():
    assert_prf(note_scores(REFERENCE, ESTIMATE, with_offsets=False), 2 / 3, 1 / 2, 4 / 7)


def test_note_offset_scores_also_need_the_offset():
    assert_prf(note_scores(REFERENCE, ESTIMATE, with_offsets=True), 1 / 3, 1 / 4, 2 / 7)


def test_onset_more_than_50_ms_away_does_not_match():
    assert note_scores([Note(1.0, 2.0, 60)], [Note(1.06, 2.0, 60)], with_offsets=False).f == 0.0
    assert note_scores([Note(1.0, 2.0, 60)], [Note(1.04, 2.0, 60)], with_offsets=False).f == 1.0


def test_frame_roll_uses_half_open_note_spans_on_the_grid():
    roll = frame_roll([Note(0.5 * FRAME_PERIOD, 2.5 * FRAME_PERIOD, 60)], n_frames=4)
    assert roll.shape == (128, 4)
    assert roll[60].tolist() == [False, True, True, False]
    assert roll.sum() == 2


def test_frame_scores_equal_mir_eval_multipitch_on_random_notes():
    import mir_eval

    rng = np.random.default_rng(3)
    reference = [Note(float(t), float(t + rng.uniform(0.005, 1.0)), int(rng.integers(24, 108)))
                 for t in np.sort(rng.uniform(0, 8, 120))]
    estimate = [Note(max(0.0, n.onset + rng.normal(0, 0.03)), n.offset + rng.uniform(0.0, 0.3),
                     n.pitch + int(rng.integers(-1, 2))) for n in reference[:100]]
    n_frames = int(np.ceil(max(n.offset for n in reference + estimate) / FRAME_PERIOD)) + 1
    times = np.arange(n_frames) * FRAME_PERIOD

    def hz_lists(notes):
        roll = frame_roll(notes, n_frames)
        return [440.0 * 2.0 ** ((np.flatnonzero(column) - 69) / 12.0) for column in roll.T]

    expected = mir_eval.multipitch.metrics(times, hz_lists(reference), times, hz_lists(estimate))
    ours = frame_scores(reference, estimate)
    assert 0.2 < ours.f < 0.9
    assert ours.precision == pytest.approx(expected[0], abs=1e-12)
    assert ours.recall == pytest.approx(expected[1], abs=1e-12)
    assert ours.f == pytest.approx(mir_eval.util.f_measure(expected[0], expected[1]), abs=1e-12)


def test_frame_scores_on_a_hand_made_case():
    # reference: MIDI 60 for frames 0..9; estimate: 60 and 61 for frames 0..4.
    reference = [Note(0.0, 10 * FRAME_PERIOD, 60)]
    estimate = [Note(0.0, 5 * FRAME_PERIOD, 60), Note(0.0, 5 * FRAME_PERIOD, 61)]
    # 5 true positives out of 10 reference and 10 estimated pitch-frames.
    assert_prf(frame_scores(reference, estimate), 0.5, 0.5, 0.5)
    # an estimate of 60 for frames 0..19 covers the reference and adds 10 false frames.
    assert_prf(frame_scores(reference, [Note(0.0, 20 * FRAME_PERIOD, 60)]), 0.5, 1.0, 2 / 3)


@pytest.mark.parametrize("reference, estimate", [([], ESTIMATE), (REFERENCE, []), ([], [])])
def test_empty_reference_or_estimate_scores_zero(reference, estimate):
    scores = score_notes(reference, estimate)
    for prf in (scores.frame, scores.note, scores.note_offset):
        assert_prf(prf, 0.0, 0.0, 0.0)


def test_notes_shorter_than_a_frame_give_frame_scores_of_zero():
    blip = [Note(0.1 * FRAME_PERIOD, 0.9 * FRAME_PERIOD, 60)]  # between two grid points
    scores = score_notes(blip, blip)
    assert_prf(scores.frame, 0.0, 0.0, 0.0)
    assert_prf(scores.note, 1.0, 1.0, 1.0)


def test_identical_notes_score_one_everywhere():
    scores = score_notes(REFERENCE, REFERENCE)
    for prf in (scores.frame, scores.note, scores.note_offset):
        assert_prf(prf, 1.0, 1.0, 1.0)


def test_agnostic_scores_ignore_how_notes_are_split_into_tracks():
    tracks = [Track("x", PART_A[:1] + PART_B), Track("y", PART_A[1:])]
    assert score_agnostic({"a": PART_A, "b": PART_B}, tracks).note.f == pytest.approx(1.0)


def test_separated_scoring_finds_swapped_tracks():
    result = score_separated({"a": PART_A, "b": PART_B}, [Track("x", PART_B), Track("y", PART_A)])
    assert [(p.part, p.track) for p in result.parts] == [("a", "y"), ("b", "x")]
    assert result.unmatched_tracks == []
    for prf in (result.mean.frame, result.mean.note, result.mean.note_offset):
        assert_prf(prf, 1.0, 1.0, 1.0)


def test_separated_scoring_leaves_an_extra_track_unmatched():
    tracks = [Track("junk", [Note(5.0, 6.0, 90)]), Track("x", PART_B), Track("y", PART_A)]
    result = score_separated({"a": PART_A, "b": PART_B}, tracks)
    assert result.unmatched_tracks == ["junk"]
    assert result.mean.note.f == pytest.approx(1.0)
    n = len(PART_A) + len(PART_B)  # the junk note is charged as a false positive over all notes
    assert_prf(result.all_notes, n / (n + 1), 1.0, 2 * n / (2 * n + 1))


def test_splitting_a_part_into_extra_tracks_lowers_the_all_notes_score():
    whole = score_separated({"a": PART_A, "b": PART_B}, [Track("x", PART_A), Track("y", PART_B)])
    split = score_separated({"a": PART_A, "b": PART_B},
                            [Track("x1", PART_A[:1]), Track("x2", PART_A[1:]), Track("y", PART_B)])
    assert_prf(whole.all_notes, 1.0, 1.0, 1.0)
    # part a is matched to x2 (2 of its 3 notes); the note in x1 is missed
    assert split.all_notes.recall == pytest.approx(1 - 1 / (len(PART_A) + len(PART_B)))
    assert split.all_notes.f < whole.all_notes.f


def test_separated_scoring_gives_a_part_without_track_zero():
    result = score_separated({"a": PART_A, "b": PART_B}, [Track("y", PART_A)])
    assert [(p.part, p.track) for p in result.parts] == [("a", "y"), ("b", None)]
    assert result.parts[1].scores.note.f == 0.0
    assert_prf(result.mean.note, 0.5, 0.5, 0.5)


def test_separated_scoring_with_no_tracks_scores_zero():
    result = score_separated({"a": PART_A}, [])
    assert result.parts[0].track is None
    assert result.mean.note.f == 0.0


def test_separated_matching_prefers_the_best_total_over_a_greedy_pick():
    # note F: a/both 0.8 (P 2/3, R 1), b/both 0.4 (P 1/3, R 1/2), a/half_a 2/3 (P 1, R 1/2), b/half_a 0.
    # Greedy (best pair first) takes a<-both, b<-half_a: 0.8 + 0. Best: a<-half_a, b<-both: 2/3 + 0.4.
    part_a, part_b = PART_A[:2], PART_B
    tracks = [Track("both", part_a + part_b[:1]), Track("half_a", part_a[:1])]
    result = score_separated({"a": part_a, "b": part_b}, tracks)
    assert [p.track for p in result.parts] == ["half_a", "both"]
    onset_fs = [p.scores.note.f for p in result.parts]
    assert onset_fs == pytest.approx([2 / 3, 0.4])


def test_mean_scores_average_each_number_separately():
    one = Scores(PRF(1.0, 0.5, 2 / 3), PRF(1.0, 1.0, 1.0), PRF(0.0, 0.0, 0.0))
    two = Scores(PRF(0.0, 0.5, 0.0), PRF(0.5, 0.5, 0.5), PRF(1.0, 1.0, 1.0))
    mean = mean_scores([one, two])
    assert_prf(mean.frame, 0.5, 0.5, 1 / 3)
    assert_prf(mean.note, 0.75, 0.75, 0.75)
    assert_prf(mean.note_offset, 0.5, 0.5, 0.5)
    assert mean_scores([]).note.f == 0.0
