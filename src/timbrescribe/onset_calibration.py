"""Calibration of the onset head on validation data (issue 7: a better-calibrated onset head).

The onset head is trained with a small focal alpha (DESIGN.md §4), which keeps false onsets rare
but squeezes its peaks far below 0.5: a peak of 0.2 may well be a sure onset, and the decoder's
onset threshold means little. Platt scaling fixes the meaning without touching the ranking: on
the validation recordings, every onset peak (a local maximum along time, as the decoder picks
them) is labelled true when it is the highest peak within 50 ms of a reference onset of its pitch
(mir_eval's tolerance), else false, and a logistic regression on the peak's logit gives
p = sigmoid(scale * logit + shift), the probability that a peak is a real onset. The model
applies (scale, shift) before its sigmoid (model.AgnosticModel), so the exported graph gives
calibrated onsets; the decoder's settings are then tuned again on them.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from timbrescribe.constants import MIDI_MIN, frame_to_time
from timbrescribe.decode import onset_peaks
from timbrescribe.notes import Note

ONSET_TOLERANCE_S = 0.05  # mir_eval's note-onset tolerance
# Peaks below this are left out of the fit: no decoder setting picks them (tuning's onset grid
# starts at 0.05), and a network's faint background ripples would outnumber the real onsets.
PEAK_FLOOR = 0.02
RELIABILITY_BINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


@dataclass(frozen=True)
class OnsetCalibration:
    """p = sigmoid(scale * logit + shift), and what it was fitted on."""

    scale: float
    shift: float
    n_peaks: int
    n_true: int


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def calibrate(probabilities: np.ndarray, calibration: OnsetCalibration) -> np.ndarray:
    """Trained onset probabilities mapped through the calibration (as the calibrated model does)."""
    return 1.0 / (1.0 + np.exp(-(calibration.scale * _logit(probabilities) + calibration.shift)))


def labelled_peaks(onset: np.ndarray, reference: Sequence[Note], floor: float = PEAK_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of the onset peaks of one map (84, T), picked as the decoder picks
    them (decode.onset_peaks) at ``floor``; a peak is true when it is the highest peak of
    its pitch within ONSET_TOLERANCE_S of a reference onset of that pitch."""
    onset = np.asarray(onset, dtype=np.float32)
    rows, frames = np.nonzero(onset_peaks(onset, floor))
    labels = np.zeros(len(rows), dtype=bool)
    times = frame_to_time(frames)
    for note in reference:
        row = note.pitch - MIDI_MIN
        near = np.flatnonzero((rows == row) & (np.abs(times - note.onset) <= ONSET_TOLERANCE_S))
        if near.size:
            labels[near[np.argmax(onset[row, frames[near]])]] = True
    return onset[rows, frames], labels


def fit(maps: Iterable[tuple[np.ndarray, Sequence[Note]]]) -> OnsetCalibration:
    """Platt scaling of onset peaks pooled over (onset map, reference notes) pairs."""
    from sklearn.linear_model import LogisticRegression

    pairs = [labelled_peaks(onset, reference) for onset, reference in maps]
    probabilities = np.concatenate([p for p, _ in pairs])
    labels = np.concatenate([y for _, y in pairs])
    if labels.all() or not labels.any():
        raise ValueError("onset calibration needs both true and false peaks")
    regression = LogisticRegression(C=1e6).fit(_logit(probabilities)[:, None], labels)
    return OnsetCalibration(float(regression.coef_[0, 0]), float(regression.intercept_[0]),
                            int(labels.size), int(labels.sum()))


def reliability(probabilities: np.ndarray, labels: np.ndarray,
                bins: Sequence[float] = RELIABILITY_BINS) -> list[dict]:
    """Per probability bin: its range, peaks in it, mean probability and fraction of true peaks
    (calibrated: the two agree)."""
    rows = []
    index = np.clip(np.digitize(probabilities, bins[1:-1]), 0, len(bins) - 2)
    for k in range(len(bins) - 1):
        chosen = index == k
        if chosen.any():
            rows.append({"range": (bins[k], bins[k + 1]), "peaks": int(chosen.sum()),
                         "mean_p": float(probabilities[chosen].mean()), "true": float(labels[chosen].mean())})
    return rows


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Peak-weighted mean |mean probability - fraction true| over the reliability bins."""
    rows = reliability(probabilities, labels)
    return sum(r["peaks"] * abs(r["mean_p"] - r["true"]) for r in rows) / max(len(labels), 1)
