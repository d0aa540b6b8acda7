"""Platt scaling of the onset head: which peaks count as true, the fit, and reliability."""
import numpy as np
import pytest

from timbrescribe import onset_calibration
from timbrescribe.constants import MIDI_MIN, frame_to_time
from timbrescribe.notes import Note


def _note(pitch: int, frame: int) -> Note:
    onset = frame_to_time(frame)
    return Note(onset, onset + 0.3, pitch)


def test_the_highest_peak_near_a_reference_onset_is_true_and_every_other_peak_false():
    onset = np.zeros((84, 200), np.float32)
    row = 60 - MIDI_MIN
    onset[row, 50] = 0.3  # 1 frame after the onset: the highest near it -> true
    onset[row, 48] = 0.2  # also within 50 ms, but lower -> false
    onset[row, 120] = 0.6  # no reference near -> false
    onset[row + 1, 49] = 0.5  # a semitone off -> false
    onset[row, 160] = 0.0005  # below the floor -> not a peak at all
    probabilities, labels = onset_calibration.labelled_peaks(onset, [_note(60, 49), _note(60, 160)])
    found = {round(float(p), 4): bool(y) for p, y in zip(probabilities, labels)}
    assert found == {0.3: True, 0.2: False, 0.6: False, 0.5: False}


def test_a_peak_beyond_50_ms_is_false():
    onset = np.zeros((84, 100), np.float32)
    onset[10, 40 + 5] = 0.9  # 5 frames = 58 ms late
    probabilities, labels = onset_calibration.labelled_peaks(onset, [_note(MIDI_MIN + 10, 40)])
    assert probabilities.tolist() == pytest.approx([0.9]) and labels.tolist() == [False]


def _maps_from_a_known_calibration(scale: float, shift: float, n: int, seed: int = 0):
    """Isolated peaks with logits z; each is a real onset with probability sigmoid(scale z + shift)."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(n // 40):
        onset = np.zeros((84, 40 * 20), np.float32)
        reference = []
        for k in range(40):
            z = rng.normal(0.0, 2.0)
            row, frame = rng.integers(0, 84), 20 * k + 10
            onset[row, frame] = 1 / (1 + np.exp(-z))
            if rng.random() < 1 / (1 + np.exp(-(scale * z + shift))):
                reference.append(_note(MIDI_MIN + int(row), frame))
        maps.append((onset, reference))
    return maps


def test_fit_recovers_a_known_calibration_and_lowers_the_calibration_error():
    maps = _maps_from_a_known_calibration(scale=1.5, shift=2.0, n=8000)
    calibration = onset_calibration.fit(maps)
    assert calibration.scale == pytest.approx(1.5, abs=0.15)
    assert calibration.shift == pytest.approx(2.0, abs=0.25)
    above_floor = sum(int((o >= onset_calibration.PEAK_FLOOR).sum()) for o, _ in maps)
    assert calibration.n_peaks == above_floor > 7500  # the floor drops only the faintest peaks
    peaks = [onset_calibration.labelled_peaks(o, r) for o, r in maps]
    raw = np.concatenate([p for p, _ in peaks])
    labels = np.concatenate([y for _, y in peaks])
    before = onset_calibration.expected_calibration_error(raw, labels)
    after = onset_calibration.expected_calibration_error(onset_calibration.calibrate(raw, calibration), labels)
    assert before > 0.1 and after < 0.03


def test_fit_needs_true_and_false_peaks():
    onset = np.zeros((84, 50), np.float32)
    onset[5, 10] = 0.4
    with pytest.raises(ValueError, match="both true and false"):
        onset_calibration.fit([(onset, [])])


def test_reliability_bins_count_every_peak_once():
    probabilities = np.array([0.01, 0.06, 0.15, 0.15, 0.95, 1.0])
    labels = np.array([False, False, True, False, True, True])
    rows = onset_calibration.reliability(probabilities, labels)
    assert sum(r["peaks"] for r in rows) == 6
    top = rows[-1]
    assert top["range"] == (0.9, 1.0) and top["peaks"] == 2 and top["true"] == 1.0
    assert [r for r in rows if r["range"] == (0.1, 0.2)][0]["true"] == 0.5
