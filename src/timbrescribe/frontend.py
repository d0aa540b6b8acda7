"""The fixed signal front end (DESIGN.md §2): octave-wise CQT, energy normalisation, harmonic stacking.

Every op here exports to ONNX: real-valued convolutions, static zero padding and slicing only.

CQT layout: 288 bins, low to high frequency, bin j at FMIN * 2**(j/36) Hz, so bin 3k+1 sits on
MIDI 24+k. Frame k is centred on sample k*HOP; an input of N samples gives n_frames(N) frames.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from timbrescribe.constants import (
    BINS_PER_OCTAVE,
    FMIN,
    HARMONIC_SHIFTS,
    HOP,
    N_BINS,
    N_OCTAVES,
    N_STACKED_BINS,
    RELATIVE_LOG_FLOOR,
    SAMPLE_RATE,
)

Q = 1.0 / (2.0 ** (1.0 / BINS_PER_OCTAVE) - 1.0)  # ≈ 51.4

# The longest kernel (lowest bin of an octave) is Q*fs/f ≈ 276.2 samples; all kernels share this
# odd length, centred, so one conv1d applies the whole octave.
KERNEL_LENGTH = 2 * int(math.ceil(Q * SAMPLE_RATE / (FMIN * 2.0 ** (N_OCTAVES - 1))) // 2) + 1
KERNEL_HALF = KERNEL_LENGTH // 2

HALFBAND_TAPS = 33
HALFBAND_HALF = HALFBAND_TAPS // 2
# The top kernel (≈0.365 fs) with its Blackman-Harris main lobe (±4 bins of fs/L) reaches 0.394 fs;
# after halving the rate that is 0.197 of the old rate, and aliases from above 0.303 would land on it.
HALFBAND_EDGES = (0.197, 0.303)

# Samples of zeros added at each end of the input before the decimation chain. Each 33-tap
# filtering stage widens the support of the signal by 16 samples of its own rate: 16*(2**7-1)=2032
# input samples after 7 stages. The left pad is a multiple of 2**7, so sample 0 stays on the grid
# of every octave; the right pad adds room for the rounding up of odd lengths.
_DECIMATION = 2 ** (N_OCTAVES - 1)
CHAIN_PAD_LEFT = 2048
CHAIN_PAD_RIGHT = 2048 + _DECIMATION

# Guard of the energy statistic: s = max(std_t E, ENERGY_FLOOR_RATIO * mean_t E, ENERGY_FLOOR).
# The relative floor bounds the boost of near-stationary clips (steady tones, DC, a single frame);
# the absolute floor keeps digital silence finite (E = 0 -> output log(RELATIVE_LOG_FLOOR)).
ENERGY_FLOOR_RATIO = 0.1
ENERGY_FLOOR = 1e-9


def blackman_harris(positions: np.ndarray) -> np.ndarray:
    """4-term Blackman-Harris window evaluated at positions in [0, 1] (0.5 is the centre)."""
    a = (0.35875, 0.48829, 0.14128, 0.01168)
    x = 2.0 * np.pi * positions
    return a[0] - a[1] * np.cos(x) + a[2] * np.cos(2 * x) - a[3] * np.cos(3 * x)


def cqt_kernel(frequency: float, sample_rate: float, length: int) -> np.ndarray:
    """Complex CQT kernel for one bin: Blackman-Harris of Q periods times a complex exponential,
    normalised by the window sum, centred in an odd array of ``length`` samples."""
    support = Q * sample_rate / frequency
    n = np.arange(length) - length // 2
    inside = np.abs(n) < support / 2
    window = np.where(inside, blackman_harris(n / support + 0.5), 0.0)
    window /= window.sum()
    return window * np.exp(2j * np.pi * frequency / sample_rate * n)


def bin_frequencies() -> np.ndarray:
    """Centre frequency in Hz of each of the 288 CQT bins, low to high."""
    return FMIN * 2.0 ** (np.arange(N_BINS) / BINS_PER_OCTAVE)


def top_octave_kernels() -> np.ndarray:
    """(72, 1, KERNEL_LENGTH) float32 conv weights: 36 real parts then 36 imaginary parts."""
    freqs = bin_frequencies()[-BINS_PER_OCTAVE:]
    kernels = np.stack([cqt_kernel(f, SAMPLE_RATE, KERNEL_LENGTH) for f in freqs])
    return np.concatenate([kernels.real, kernels.imag])[:, None, :].astype(np.float32)


def halfband_filter() -> np.ndarray:
    """33-tap zero-phase half-band low-pass (equiripple, ≈-60 dB stop band), unit DC gain."""
    taps = scipy.signal.remez(HALFBAND_TAPS, [0, *HALFBAND_EDGES, 0.5], [1, 0], fs=1)
    offsets = np.arange(HALFBAND_TAPS) - HALFBAND_HALF
    taps[(offsets % 2 == 0) & (offsets != 0)] = 0.0  # exact half-band zeros
    taps /= taps.sum()
    return taps.astype(np.float32)


class CQT(nn.Module):
    """Octave-wise constant-Q power spectrogram: (B, N) audio -> (B, 288, n_frames(N)) power."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernels", torch.from_numpy(top_octave_kernels()))
        self.register_buffer("lowpass", torch.from_numpy(halfband_filter()).view(1, 1, -1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # Always float32: under mixed-precision autocast the cascaded filters would lose ~1 %.
        with torch.autocast(device_type=audio.device.type, enabled=False):
            n_frames = (audio.shape[-1] - 1) // HOP + 1
            signal = F.pad(audio.float().unsqueeze(1), (CHAIN_PAD_LEFT, CHAIN_PAD_RIGHT))
            octaves = []  # high to low
            for octave in range(N_OCTAVES):
                if octave:
                    signal = F.conv1d(signal, self.lowpass, stride=2, padding=HALFBAND_HALF)
                octaves.append(self._octave_power(signal, octave, n_frames))
            return torch.cat(octaves[::-1], dim=1)

    def _octave_power(self, signal: torch.Tensor, octave: int, n_frames) -> torch.Tensor:
        """Power of the 36 bins of one octave from the signal decimated ``octave`` times."""
        stride = HOP >> octave
        # Window of frame k must be centred on the position of input sample k*HOP.
        start = (CHAIN_PAD_LEFT >> octave) - KERNEL_HALF
        if start > 0:
            signal = signal[..., start:]
        # The right pad guarantees at least n_frames windows; the surplus is cut off.
        signal = F.pad(signal, (max(0, -start), KERNEL_HALF + 1))
        response = F.conv1d(signal, self.kernels, stride=stride)[..., :n_frames]
        real, imag = response[:, :BINS_PER_OCTAVE], response[:, BINS_PER_OCTAVE:]
        return real * real + imag * imag


def frame_energy(power: torch.Tensor) -> torch.Tensor:
    """Per-frame energy (B, T): the CQT power summed over bins."""
    return power.sum(dim=1)


def energy_moments(energies: torch.Tensor) -> torch.Tensor:
    """(B, 3) sufficient statistics of per-frame energies: [count, sum, sum of squares]. Moments of
    consecutive chunks add up to the moments of the whole file."""
    count = torch.ones_like(energies).sum(dim=-1)
    return torch.stack([count, energies.sum(dim=-1), (energies * energies).sum(dim=-1)], dim=-1)


def log_scale_from_moments(moments: torch.Tensor) -> torch.Tensor:
    """(B,) log of the guarded energy spread s from (B, 3) moments (see ENERGY_FLOOR_RATIO)."""
    count, total, squares = moments.unbind(dim=-1)
    mean = total / count
    # The cancellation in E[x²]-E[x]² only matters when std << mean, where the floor takes over.
    std = (squares / count - mean * mean).clamp_min(0.0).sqrt()
    spread = torch.maximum(std, ENERGY_FLOOR_RATIO * mean).clamp_min(ENERGY_FLOOR)
    return spread.log()


def log_scale(energies: torch.Tensor) -> torch.Tensor:
    """(B,) log of the guarded std over time of per-frame energies (B, T)."""
    return log_scale_from_moments(energy_moments(energies))


def normalise_energy(power: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """log(P / s + RELATIVE_LOG_FLOOR) for power (B, F, T): the same for the same sound at any gain.
    ``scale`` is log(s) per item (B,), computed from ``power`` itself when None (pass the whole
    file's value when processing chunks)."""
    if scale is None:
        scale = log_scale(frame_energy(power))
    return torch.log(power * torch.exp(-scale)[:, None, None] + RELATIVE_LOG_FLOOR)


def harmonic_stack(spectrum: torch.Tensor, shifts: tuple[int, ...] = HARMONIC_SHIFTS) -> torch.Tensor:
    """(B, C, F, T) -> (B, C * len(shifts), 252, T). Channel block h holds bins b + shifts[h] for
    b = 0..251 (zero where out of range), so stacked bin b stays aligned with input bin b. On the
    288-bin CQT the 252 kept bins span MIDI 24..107 with bin 3k+1 on MIDI 24+k, centred for the
    stride-3 note heads; on a 252-bin hidden map the same shifts aggregate its harmonics at depth."""
    below = max(0, -min(shifts))
    above = max(0, N_STACKED_BINS + max(shifts) - spectrum.shape[2])
    padded = F.pad(spectrum, (0, 0, below, above))
    channels = [padded[:, :, below + s : below + s + N_STACKED_BINS] for s in shifts]
    return torch.cat(channels, dim=1)


class Frontend(nn.Module):
    """Audio (B, N) -> normalised log-power CQT (B, 288, T); ``log_scale`` (B,) overrides the
    per-clip statistic (use the whole file's when the audio is a chunk of it)."""

    def __init__(self) -> None:
        super().__init__()
        self.cqt = CQT()

    def forward(self, audio: torch.Tensor, log_scale: torch.Tensor | None = None) -> torch.Tensor:
        return normalise_energy(self.cqt(audio), log_scale)
