"""Seeded audio augmentation and mixing: room reverb and EQ per stem, random part gains, additive
noise on the mix, peak normalisation.

Every effect here is zero-latency (pedalboard's Reverb keeps the dry path undelayed, the filters
are low-order IIR), so onsets stay where the labels put them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from timbrescribe.constants import SAMPLE_RATE


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation (a probability of 0 switches it off)."""

    reverb_prob: float = 0.7
    room_size: tuple[float, float] = (0.1, 0.9)
    damping: tuple[float, float] = (0.2, 0.8)
    wet_level: tuple[float, float] = (0.05, 0.35)
    shelf_prob: float = 0.7  # low and high shelf, each with a random gain
    low_shelf_hz: tuple[float, float] = (80.0, 400.0)
    high_shelf_hz: tuple[float, float] = (2000.0, 7000.0)
    shelf_gain_db: tuple[float, float] = (-8.0, 6.0)
    highpass_prob: float = 0.2
    highpass_hz: tuple[float, float] = (30.0, 120.0)
    lowpass_prob: float = 0.2
    lowpass_hz: tuple[float, float] = (3500.0, 9000.0)
    part_gain_db: tuple[float, float] = (-12.0, 0.0)
    noise_prob: float = 0.4
    noise_snr_db: tuple[float, float] = (20.0, 50.0)
    pink_noise_prob: float = 0.5  # otherwise white
    headroom_db: tuple[float, float] = (0.5, 6.0)  # mix peak ends this far below full scale


NO_AUGMENTATION = AugmentConfig(
    reverb_prob=0.0, shelf_prob=0.0, highpass_prob=0.0, lowpass_prob=0.0,
    part_gain_db=(0.0, 0.0), noise_prob=0.0, headroom_db=(1.0, 1.0),
)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def stem_effects(rng: np.random.Generator, config: AugmentConfig) -> list:
    """The random pedalboard plugins for one stem (possibly none)."""
    import pedalboard

    plugins = []
    if rng.random() < config.highpass_prob:
        plugins.append(pedalboard.HighpassFilter(_uniform(rng, config.highpass_hz)))
    if rng.random() < config.lowpass_prob:
        plugins.append(pedalboard.LowpassFilter(_uniform(rng, config.lowpass_hz)))
    if rng.random() < config.shelf_prob:
        plugins.append(pedalboard.LowShelfFilter(_uniform(rng, config.low_shelf_hz), _uniform(rng, config.shelf_gain_db)))
        plugins.append(pedalboard.HighShelfFilter(_uniform(rng, config.high_shelf_hz), _uniform(rng, config.shelf_gain_db)))
    if rng.random() < config.reverb_prob:
        plugins.append(pedalboard.Reverb(
            room_size=_uniform(rng, config.room_size), damping=_uniform(rng, config.damping),
            wet_level=_uniform(rng, config.wet_level), dry_level=1.0, width=1.0,
        ))
    return plugins


def augment_stem(audio: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One dry mono stem through random EQ/filters and room reverb; same length, float32."""
    plugins = stem_effects(rng, config)
    if not plugins:
        return audio.astype(np.float32)
    import pedalboard

    board = pedalboard.Pedalboard(plugins)
    return board(audio[None, :].astype(np.float32), SAMPLE_RATE)[0]


def coloured_noise(rng: np.random.Generator, n_samples: int, pink: bool) -> np.ndarray:
    """Unit-RMS white noise, or pink noise (power falling as 1/f) shaped in the frequency domain."""
    noise = rng.standard_normal(n_samples)
    if pink and n_samples > 1:
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n_samples)
        spectrum[1:] /= np.sqrt(freqs[1:] / freqs[1])
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=n_samples)
    rms = float(np.sqrt(np.mean(noise**2))) or 1.0
    return (noise / rms).astype(np.float32)


def mix_stems(
    stems: list[np.ndarray], rng: np.random.Generator, config: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(mix, scaled stems (P, N)): random gain per stem, sum, optional noise, peak normalisation.

    The same final scale applies to the stems, so the mix equals the stems' sum plus the noise.
    """
    gains = [10.0 ** (_uniform(rng, config.part_gain_db) / 20.0) for _ in stems]
    scaled = np.stack([g * s for g, s in zip(gains, stems)]).astype(np.float32)
    mix = scaled.sum(axis=0)
    if rng.random() < config.noise_prob:
        signal_rms = float(np.sqrt(np.mean(mix**2)))
        snr_db = _uniform(rng, config.noise_snr_db)
        pink = rng.random() < config.pink_noise_prob
        mix = mix + coloured_noise(rng, mix.size, pink) * signal_rms * 10.0 ** (-snr_db / 20.0)
    peak = float(np.max(np.abs(mix))) or 1.0
    scale = 10.0 ** (-_uniform(rng, config.headroom_db) / 20.0) / peak
    return (mix * scale).astype(np.float32), scaled * scale
