"""Render one Part (notes + control events, one GM program) to mono audio with FluidSynth, offline.

FluidSynth applies queued events at the start of its next internal 64-sample block, so every event
is placed on the nearest block boundary (timing error at most 32 samples = 1.5 ms, unbiased) and
audio is pulled in whole blocks between events. Reverb and chorus are off so that the stems are
dry; augmentation adds room sound later. Each render uses a fresh synthesizer on a soundfont
loaded once per process, so the same Part always gives the same samples.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from timbrescribe.constants import MIDI_MAX, MIDI_MIN, SAMPLE_RATE
from timbrescribe.data.types import Part
from timbrescribe import quiet_imports

FLUID_BLOCK = 64  # FluidSynth's internal block size (FLUID_BUFSIZE), in samples
SYNTH_GAIN = 0.5  # float output never clips, so loudness is only a scale; the mixer normalises
SILENCE_PEAK = 1e-4  # a stem whose peak stays below this is treated as silent
AUDIBLE_PEAK = 1e-3  # a probe note (velocity 100, PROBE_SAMPLES long) must pass this to count
PROBE_SAMPLES = 2048
DEFAULT_TAIL_S = 1.0  # audio kept after the last note-off for the release
FLUID_WARN = 2  # FluidSynth log level of warnings

# Loaded soundfonts of this process: path -> (the synth that loaded it, fluid_sfont_t pointer).
# Loading FluidR3 (148 MB) takes ~1 s, MuseScore's sf3 several seconds, so each loads once.
_SOUNDFONTS: dict[str, tuple[object, int]] = {}

# Event order at one instant: releases first (so a repeated key retriggers), then controls, then notes.
_NOTE_OFF, _CONTROL, _NOTE_ON = 0, 1, 2


class SilentStemError(RuntimeError):
    """The soundfont lacks the program or played it inaudibly; the caller should draw another."""


def _library():
    """The FluidSynth C library (via pyfluidsynth) with the prototypes this module needs."""
    fluidsynth = quiet_imports.fluidsynth()

    lib = fluidsynth._fl
    if not getattr(lib, "_timbrescribe_ready", False):
        lib.fluid_synth_add_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.fluid_synth_add_sfont.restype = ctypes.c_int
        lib.fluid_synth_remove_sfont.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.fluid_synth_remove_sfont.restype = ctypes.c_int
        lib.fluid_synth_write_float.restype = ctypes.c_int
        # A synth created before its soundfont is added warns once per channel: not useful here.
        lib.fluid_set_log_function(FLUID_WARN, None, None)
        lib._timbrescribe_ready = True
    return lib


def _new_synth():
    fluidsynth = quiet_imports.fluidsynth()

    return fluidsynth.Synth(
        gain=SYNTH_GAIN, samplerate=SAMPLE_RATE, channels=16,
        **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1},
    )


def load_soundfont(soundfont: str | Path) -> int:
    """Pointer to the loaded fluid_sfont_t of ``soundfont`` (loaded once per process)."""
    key = str(Path(soundfont).resolve())
    if key not in _SOUNDFONTS:
        _library()
        fluidsynth = quiet_imports.fluidsynth()

        loader = _new_synth()
        sfid = loader.sfload(key)
        if sfid < 0:
            raise FileNotFoundError(f"FluidSynth could not load soundfont {key}")
        _SOUNDFONTS[key] = (loader, fluidsynth.fluid_synth_get_sfont_by_id(loader.synth, sfid))
    return _SOUNDFONTS[key][1]


@contextlib.contextmanager
def _fresh_synth(soundfont: str | Path, program: int):
    """A new synthesizer playing ``program`` of the shared ``soundfont`` on channel 0, or None
    when the soundfont has no such preset.

    A synth reused across renders is not deterministic: a voice slot that played before starts
    its next note slightly differently. A fresh synth costs ~2 ms; the soundfont is shared.
    """
    lib = _library()
    sfont = load_soundfont(soundfont)
    synth = _new_synth()
    sfid = lib.fluid_synth_add_sfont(synth.synth, sfont)
    try:
        yield synth if synth.program_select(0, sfid, 0, program) == 0 else None
    finally:
        lib.fluid_synth_remove_sfont(synth.synth, sfont)
        synth.delete()


def _write_float(synth, n_samples: int) -> np.ndarray:
    """Pull ``n_samples`` samples from the synth as mono float32 (mean of left and right)."""
    left = np.zeros(n_samples, np.float32)
    right = np.zeros(n_samples, np.float32)
    status = _library().fluid_synth_write_float(
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

    A note still sounding when the same key starts again is released at that moment, so its late
    note-off cannot cut the new note short; a note starting in the same block as its successor on
    the same key is dropped.
    """
    events = []
    next_start: dict[int, int] = {}
    for note in sorted(part.notes, key=lambda n: n.onset, reverse=True):
        start = _block_sample(note.onset)
        release = min(max(_block_sample(note.offset), start + FLUID_BLOCK), next_start.get(note.pitch, 1 << 62))
        next_start[note.pitch] = start
        if release > start:
            events.append((start, _NOTE_ON, "on", note.pitch, int(note.velocity)))
            events.append((release, _NOTE_OFF, "off", note.pitch, 0))
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
    if n_samples is None:
        end = max((n.offset for n in part.notes), default=0.0)
        n_samples = int(math.ceil((end + tail_s) * SAMPLE_RATE))
    with _fresh_synth(soundfont, part.program) as synth:
        if synth is None:
            raise SilentStemError(f"{Path(soundfont).name} has no preset for GM program {part.program}")
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
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if part.notes and is_silent(audio):
        raise SilentStemError(f"GM program {part.program} is silent in {Path(soundfont).name}")
    return audio


def is_silent(audio: np.ndarray) -> bool:
    """True when the audio never rises above SILENCE_PEAK."""
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK


@functools.lru_cache(maxsize=None)
def audible_pitches(soundfont: str, program: int) -> frozenset[int]:
    """Pitches MIDI_MIN..MIDI_MAX that the soundfont sounds for ``program`` (probed once per process).

    Some presets have no sample for part of the keyboard (FluidR3's contrabass stops at MIDI 58);
    notes there would be labels without sound.
    """
    audible = set()
    with _fresh_synth(soundfont, program) as synth:
        if synth is None:
            return frozenset()
        for pitch in range(MIDI_MIN, MIDI_MAX + 1):
            synth.noteon(0, pitch, 100)
            if float(np.max(np.abs(_write_float(synth, PROBE_SAMPLES)))) >= AUDIBLE_PEAK:
                audible.add(pitch)
            synth.all_sounds_off(0)
            _write_float(synth, PROBE_SAMPLES)  # let the killed voice fade out
    return frozenset(audible)


def drop_inaudible_notes(part: Part, soundfont: str | Path) -> Part:
    """``part`` without the notes its program cannot sound in ``soundfont``."""
    audible = audible_pitches(str(soundfont), part.program)
    return replace(part, notes=[n for n in part.notes if n.pitch in audible])
