"""A training-free separation baseline: hand-made timbre descriptors per note, read from the CQT,
clustered exactly like the learned embeddings (clustering.py). The learned timbre branch has to beat
it to earn its keep.

Per note, from the normalised log-power CQT over the note's frames (bin 3(p-24)+1 is pitch p,
harmonic h sits round(36 log2 h) bins above; the strongest of ±1 bin is taken to allow for detuning):
- relative harmonic levels L_h - L_1 for h = 2..8 (7 values; a harmonic above the top bin is missing),
- spectral slope: least-squares slope of L_h over log2 h,
- attack: L_1 over the first 3 frames minus L_1 over the whole note,
- decay: L_1 over the last third of the note minus L_1 over its first third.
Each descriptor is standardised over the notes of the file (missing values become the mean), and the
vector is L2-normalised. Notes come from the same note model and decoder as timbrescribe's.
Uses torch for the CQT (an evaluation tool, not part of the transcription runtime).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from timbrescribe.constants import BINS_PER_OCTAVE, BINS_PER_SEMITONE, MIDI_MIN, N_BINS, SAMPLE_RATE, time_to_frame
from timbrescribe.evaluation.systems import System
from timbrescribe.notes import Note, Track

HARMONICS = np.arange(1, 9)
HARMONIC_OFFSETS = np.round(BINS_PER_OCTAVE * np.log2(HARMONICS)).astype(int)
ATTACK_FRAMES = 3
N_DESCRIPTORS = len(HARMONICS) - 1 + 3


def note_descriptors(spectrum: np.ndarray, notes: list[Note]) -> np.ndarray:
    """(len(notes), N_DESCRIPTORS) raw descriptors (NaN where missing) from a (288, T) log CQT."""
    total = spectrum.shape[1]
    padded = np.pad(spectrum, ((1, 1), (0, 0)), constant_values=-np.inf)
    # best of bins b-1, b, b+1 (row b+1 of ``padded`` is bin b)
    widened = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    result = np.full((len(notes), N_DESCRIPTORS), np.nan)
    log_h = np.log2(HARMONICS)
    for i, note in enumerate(notes):
        start = min(max(time_to_frame(note.onset), 0), total - 1)
        end = min(max(time_to_frame(note.offset), start + 1), total)
        bins = BINS_PER_SEMITONE * (note.pitch - MIDI_MIN) + 1 + HARMONIC_OFFSETS
        inside = bins < N_BINS
        levels = np.full(len(HARMONICS), np.nan)
        levels[inside] = widened[bins[inside], start:end].mean(axis=1)
        result[i, : len(HARMONICS) - 1] = levels[1:] - levels[0]
        valid = np.isfinite(levels)
        if valid.sum() >= 2:
            result[i, len(HARMONICS) - 1] = np.polyfit(log_h[valid], levels[valid], 1)[0]
        fundamental = widened[bins[0], start:end]
        result[i, len(HARMONICS)] = fundamental[:ATTACK_FRAMES].mean() - fundamental.mean()
        third = max(1, len(fundamental) // 3)
        result[i, len(HARMONICS) + 1] = fundamental[-third:].mean() - fundamental[:third].mean()
    return result


def descriptor_vectors(spectrum: np.ndarray, notes: list[Note]) -> np.ndarray:
    """Standardised, unit-length descriptor vectors (len(notes), N_DESCRIPTORS)."""
    raw = note_descriptors(spectrum, notes)
    if len(notes) == 0:
        return raw
    mean = np.nanmean(np.where(np.isfinite(raw), raw, np.nan), axis=0)
    std = np.nanstd(np.where(np.isfinite(raw), raw, np.nan), axis=0)
    z = (raw - mean) / np.where(std > 1e-9, std, 1.0)
    z = np.where(np.isfinite(z), z, 0.0)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z / np.maximum(norms, 1e-12)


class DescriptorBaselineSystem(System):
    """Notes from the note model; tracks from clustering the notes' hand-made descriptors."""

    name = "descriptor-baseline"

    def __init__(self, threads: int = 1, model_path: str | Path | None = None):
        import torch

        from timbrescribe.frontend import Frontend
        from timbrescribe.inference import AgnosticSession

        torch.set_num_threads(threads)
        self._session = AgnosticSession(model_path=model_path, threads=threads)
        self._frontend = Frontend()

    def predict(self, audio: np.ndarray, sr: int, n_tracks: int | None = None) -> list[Track]:
        import torch

        from timbrescribe.audio import prepare_audio
        from timbrescribe.clustering import cluster_notes
        from timbrescribe.transcription import (
            package_cluster_settings, tracks_from_clustering, transcribe,
        )

        samples = prepare_audio(audio, sr)
        notes = transcribe(samples, SAMPLE_RATE, instruments=1, session=self._session).notes
        with torch.no_grad():
            spectrum = self._frontend(torch.from_numpy(samples)[None])[0].numpy()
        clustering = cluster_notes(
            descriptor_vectors(spectrum, notes), n_tracks, package_cluster_settings(), notes
        )
        return tracks_from_clustering(notes, clustering)
