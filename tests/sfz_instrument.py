"""A tiny SFZ instrument made of harmonic tones, written by the tests themselves (CI has no
downloaded sampled instruments): three root keys, two velocity layers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 44100  # the samples' own rate: sfizz resamples to the engine's
ROOTS = (48, 60, 72)  # each covers root-6 .. root+5
LOW_KEY, HIGH_KEY = 42, 77
LAYERS = ((1, 63), (64, 127))
PARTIALS = {0: (1.0, 0.35, 0.2, 0.1), 1: (1.0, 0.6, 0.45, 0.3, 0.2)}  # per layer: soft, loud
LEVEL = {0: 0.25, 1: 0.7}


def tone(midi: int, seconds: float, layer: int) -> np.ndarray:
    """A harmonic tone (fundamental strongest) with a 5 ms fade-in, at SAMPLE_RATE."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    wave = sum(a * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, a in enumerate(PARTIALS[layer]))
    wave *= LEVEL[layer] / np.abs(wave).max()
    fade = min(t.size, int(0.005 * SAMPLE_RATE))
    wave[:fade] *= np.linspace(0.0, 1.0, fade)
    wave[-fade:] *= np.linspace(1.0, 0.0, fade)
    return wave.astype(np.float32)


def write_sfz_instrument(folder: Path, name: str = "tones.sfz", extra_global: str = "") -> Path:
    """Write samples/ and an .sfz file into ``folder``; returns the .sfz path."""
    samples = folder / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    lines = ["<control>", "default_path=samples/", "<global>", "ampeg_release=0.03", extra_global]
    for layer, (lovel, hivel) in enumerate(LAYERS):
        lines.append(f"<group> lovel={lovel} hivel={hivel}")
        for root in ROOTS:
            file = f"tone_{root}_{layer}.wav"
            soundfile.write(str(samples / file), tone(root, 3.0, layer), SAMPLE_RATE, subtype="FLOAT")
            lines.append(f"<region> sample={file} lokey={root - 6} hikey={root + 5} pitch_keycenter={root}")
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path
