"""Render one Part (notes + control events, one GM program) to mono audio with FluidSynth, offline.

FluidSynth applies queued events at the start of its next internal 64-sample block, so every event
is placed on the nearest block boundary (timing error at most 32 samples = 1.5 ms, unbiased) and
audio is pulled in whole blocks between events. Reverb and chorus are off so that the stems are
dry; augmentation adds room sound later.
"""
from __future__ import annotations

import ctypes
import math
from pathlib import Path

import numpy as np

from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.data.types import Part

FLUID_BLOCK = 64  # FluidSynth's internal block size (FLUID_BUFSIZE), in samples
SYNTH_GAIN = 0.5  # float output never clips, so loudness is only a scale; the mixer normalises
SILENCE_PEAK = 1e-4  # a stem whose peak stays below this is treated as silent
DEFAULT_TAIL_S = 1.0  # audio kept after the last note-off for the release

# One synthesizer per soundfont and process: loading FluidR3 (148 MB) takes ~0.7 s.
_SYNTHS: dict[str, tuple[object, int]] = {}

# Event order at one instant: releases first (so a repeated key retriggers), then controls, then notes.
_NOTE_OFF, _CONTROL, _NOTE_ON = 0, 1, 2


class SilentStemError(RuntimeError):
    """The soundfont lacks the program or played it inaudibly; the caller should draw another."""


def _synth_for(soundfont: Path) -> tuple[object, int]:
    """The cached (Synth, soundfont id) for ``soundfont``, created on first use."""
    key = str(Path(soundfont).resolve())
    if key not in _SYNTHS:
        import fluidsynth

        synth = fluidsynth.Synth(
            gain=SYNTH_GAIN,
            samplerate=SAMPLE_RATE,
            channels=16,
            **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1},
        )
        sfid = synth.sfload(key)
        if sfid < 0:
            raise FileNotFoundError(f"FluidSynth could not load soundfont {key}")
        _SYNTHS[key] = (synth, sfid)
    return _SYNTHS[key]


def _write_float(synth, n_samples: int) -> np.ndarray:
    """Pull ``n_samples`` samples from the synth as mono float32 (mean of left and right)."""
    import fluidsynth

    left = np.zeros(n_samples, np.float32)
    right = np.zeros(n_samples, np.float32)
    status = fluidsynth._fl.fluid_synth_write_float(
        ctypes.c_void_p(synth.synth), ctypes.c_int(n_samples),
        left.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(0), ctypes.c_int(1),
        right.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(0), ctypes.c_int(1),
    )
    if status != 0:
        raise RuntimeError("fluid_synth_write_float failed")
    return 0.5 * (left + right)


def _block_sample(seconds: float) -> int:
    """Sample index of the FluidSynth block boundary nearest to ``seconds``."""
    return int(round(seconds * SAMPLE_RATE / FLUID_BLOCK)) * FLUID_BLOCK


def _events(part: Part) -> list[tuple[int, int, str, int, int]]:
    """(sample, order, kind, number, value) for every note and control event, in time order.

    A note that is still sounding when the same key starts again is released at that moment, so
    its late note-off cannot cut the new note short.
    """
    events = []
    last_by_pitch: dict[int, list] = {}
    for note in sorted(part.notes, key=lambda n: n.onset):
        start, end = _block_sample(note.onset), _block_sample(note.offset)
        previous = last_by_pitch.get(note.pitch)
        if previous is not None and previous[0] > start:
            previous[0] = start
        release = [max(end, start + FLUID_BLOCK)]
        last_by_pitch[note.pitch] = release
        events.append((start, _NOTE_ON, "on", note.pitch, int(note.velocity)))
        events.append((release, _NOTE_OFF, "off", note.pitch, 0))
    events = [(e[0][0], *e[1:]) if isinstance(e[0], list) else e for e in events]
    for control in part.controls:
        events.append((_block_sample(control.time), _CONTROL, control.kind, control.number, control.value))
    return sorted(events, key=lambda e: (e[0], e[1]))


def render_part(
    part: Part, soundfont: str | Path, n_samples: int | None = None, tail_s: float = DEFAULT_TAIL_S
) -> np.ndarray:
    """Dry mono float32 audio at SAMPLE_RATE of ``part`` played by its GM program in ``soundfont``.

    ``n_samples`` fixes the length (events past it are dropped); by default the audio ends
    ``tail_s`` after the last note-off. Raises SilentStemError when the soundfont has no preset
    for the program or the rendered notes are inaudible.
    """
    synth, sfid = _synth_for(Path(soundfont))
    synth.system_reset()
    if synth.program_select(0, sfid, 0, part.program) != 0:
        raise SilentStemError(f"{Path(soundfont).name} has no preset for GM program {part.program}")
    if n_samples is None:
        end = max((n.offset for n in part.notes), default=0.0)
        n_samples = int(math.ceil((end + tail_s) * SAMPLE_RATE))
    chunks, cursor = [], 0
    for sample, _, kind, number, value in _events(part):
        if sample >= n_samples:
            break
        if sample > cursor:
            chunks.append(_write_float(synth, sample - cursor))
            cursor = sample
        if kind == "on":
            synth.noteon(0, number, value)
        elif kind == "off":
            synth.noteoff(0, number)
        elif kind == "cc":
            synth.cc(0, number, value)
        elif kind == "pitchbend":
            synth.pitch_bend(0, value)
        else:
            raise ValueError(f"unknown control kind {kind!r}")
    if n_samples > cursor:
        chunks.append(_write_float(synth, n_samples - cursor))
    synth.system_reset()
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if part.notes and is_silent(audio):
        raise SilentStemError(f"GM program {part.program} is silent in {Path(soundfont).name}")
    return audio


def is_silent(audio: np.ndarray) -> bool:
    """True when the audio never rises above SILENCE_PEAK."""
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK
