"""Render one Part with an SFZ instrument (real recorded samples) through sfizz, offline.

Same contract as ``render.render_part``: dry mono float32 audio at SAMPLE_RATE of the part's notes
(with velocities), CC and pitch-bend events; SilentStemError when nothing sounds; inaudible notes
are found by a probe and dropped before rendering (``drop_inaudible_notes``).

Why a child process per render: sfizz keeps one random generator per process (it picks
round-robin samples, humanising LFOs and the like) and its sample files stream in from disk on
background threads. A part rendered in-process would depend on what the process rendered before
and on thread timing. So every render runs in a fresh Python process (``python -m
timbrescribe.data.sfz``) that loads the instrument with every sample in memory (the sfizz
``hint_ram_based`` control opcode, set by a small wrapper file written beside the instrument) and
renders with sample-accurate event times. The same Part on the same instrument always gives the
same samples, in any order and in any worker.

Levels: SFZ instruments are recorded and mapped at very different levels. Each instrument is
scaled once (per process) so that probe notes play as loud as FluidR3's preset of the same GM
program (the FluidSynth path's scale), and the mixer's random gains then work alike for both.

Velocity layers: a sampled instrument changes its sound between velocity layers. The composer's
velocities (mostly 35..120) are mapped so that every layer gets an equal share of that range
(``velocity_map``); the labels carry the velocities actually played.
"""
from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from timbrescribe.constants import MIDI_MAX, MIDI_MIN, SAMPLE_RATE
from timbrescribe.data.render import AUDIBLE_PEAK, DEFAULT_TAIL_S, PROBE_SAMPLES, SilentStemError, is_silent
from timbrescribe.data.types import Part
from timbrescribe.notes import Note
from timbrescribe.outputs import atomic_path

BLOCK = 256  # sfizz block size; events inside a block are sample-accurate (sfizz event delays)
DEFAULT_BEND_CENTS = 200.0  # sfizz's default bend_up / bend_down
VELOCITY_SPAN = (35, 120)  # composer velocities spread over the layers (ComposerConfig.velocity_range)
PROBE_VELOCITY = 100
LEVEL_PROBE_KEYS = 5  # keys across the range whose loudness sets the instrument's gain
REFERENCE_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
WRAPPER_PREFIX = ".timbrescribe-ram-"
_OFF, _CONTROL, _ON = 0, 1, 2  # event order at one sample (as render.py)


class SfzError(RuntimeError):
    """sfizz could not load the instrument or the render failed."""


@dataclass(frozen=True)
class SfzInstrument:
    """An SFZ instrument as the data engine plays it.

    ``bend_cents`` is the instrument's pitch-bend range (its bend_up opcode); the engine's bend
    values assume 200 cents and are rescaled. ``monophonic`` instruments cut a sounding note when
    the next one starts (``off_by`` groups), so overlapping labels are trimmed to what sounds.
    ``low``/``high`` bound the keys that are played (None: every key the instrument maps).
    ``program`` is the GM program it stands for: its level is matched to FluidR3's preset.
    """

    path: str
    program: int | None = None  # the GM program it stands for (sets its reference level)
    bend_cents: float = DEFAULT_BEND_CENTS
    monophonic: bool = False
    low: int | None = None
    high: int | None = None


# ---------------------------------------------------------------- parent side (engine workers)


def ram_wrapper(sfz_path: str | Path) -> Path:
    """A wrapper SFZ beside ``sfz_path`` that loads every sample into memory, then the instrument.

    It has to live in the instrument's folder: sfizz resolves includes and sample paths from the
    folder of the file it loads. Written once (atomically); later calls reuse it.
    """
    path = Path(sfz_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"SFZ instrument {path} not found")
    wrapper = path.with_name(f"{WRAPPER_PREFIX}{path.name}")
    text = f'<control>\nhint_ram_based=1\n#include "{path.name}"\n'
    if not wrapper.is_file() or wrapper.read_text() != text:
        with atomic_path(wrapper) as tmp:
            tmp.write_text(text)
    return wrapper


def _run_worker(request: dict) -> bytes:
    """Run one request in a fresh ``python -m timbrescribe.data.sfz`` process; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "timbrescribe.data.sfz"],
        input=json.dumps(request).encode(), capture_output=True, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SfzError(f"sfizz worker failed for {request.get('sfz')}: {message[-1] if message else proc.returncode}")
    return proc.stdout


def _render_events(sfz_path: str | Path, events: list[tuple[int, int, str, int, int]], n_samples: int) -> np.ndarray:
    request = {
        "mode": "render", "sfz": str(ram_wrapper(sfz_path)), "n_samples": int(n_samples),
        "events": [[int(s), kind, int(number), int(value)] for s, _, kind, number, value in events],
    }
    audio = np.frombuffer(_run_worker(request), dtype=np.float32)
    if audio.size != n_samples:
        raise SfzError(f"sfizz worker returned {audio.size} samples, expected {n_samples}")
    return audio.copy()


@functools.lru_cache(maxsize=None)
def instrument_info(sfz_path: str) -> dict:
    """``keys``: MIDI keys with a sampled attack region; ``layers``: velocity layers as (low, high).
    (Read without loading the samples into memory: nothing is rendered.)"""
    info = json.loads(_run_worker({"mode": "info", "sfz": str(Path(sfz_path).resolve())}))
    info["layers"] = [tuple(layer) for layer in info["layers"]]
    return info


def velocity_map(velocity: int, layers: list[tuple[int, int]]) -> int:
    """The velocity to play for an engine velocity, so that every layer gets an equal share of
    VELOCITY_SPAN (velocities outside it play the lowest or highest layer's edge)."""
    if len(layers) <= 1:
        return int(np.clip(velocity, 1, 127))
    low, high = VELOCITY_SPAN
    position = float(np.clip((velocity - low) / (high - low), 0.0, 1.0)) * len(layers)
    index = min(int(position), len(layers) - 1)
    lo, hi = layers[index]
    return int(np.clip(round(lo + (position - index) * (hi - lo)), max(lo, 1), hi))


LEVEL_NOTE_S = 0.5  # each level probe note sounds this long, then rests as long


def _probe_events(keys: list[int], velocity: int) -> list[tuple[int, int, str, int, int]]:
    """Each key alone for PROBE_SAMPLES, then every sound off for PROBE_SAMPLES."""
    events = []
    for i, key in enumerate(keys):
        start = 2 * i * PROBE_SAMPLES
        events.append((start, _ON, "on", key, velocity))
        events.append((start + PROBE_SAMPLES, _OFF, "alloff", 0, 0))
    return events


def _level_notes(keys: list[int], velocity: int, start: float = 0.0) -> list[Note]:
    return [Note(start + 2 * i * LEVEL_NOTE_S, start + (2 * i + 1) * LEVEL_NOTE_S, key, velocity)
            for i, key in enumerate(keys)]


def _note_rms(audio: np.ndarray, notes: list[Note]) -> np.ndarray:
    """RMS of each note's sounding span."""
    spans = [audio[int(n.onset * SAMPLE_RATE) : int(n.offset * SAMPLE_RATE)].astype(np.float64) for n in notes]
    return np.array([np.sqrt(np.mean(span**2)) if span.size else 0.0 for span in spans])


@functools.lru_cache(maxsize=None)
def _probe(instrument: SfzInstrument) -> tuple[frozenset[int], float]:
    """(audible keys inside MIDI_MIN..MIDI_MAX and the instrument's bounds, level gain).

    One render: every mapped key alone for PROBE_SAMPLES (audible when its peak reaches
    AUDIBLE_PEAK after the gain, as the FluidSynth path's probe), then LEVEL_PROBE_KEYS keys
    spread over the audible ones, LEVEL_NOTE_S each, compared with FluidR3's preset of the
    instrument's program playing the same notes (median RMS ratio; gain 1 without a program)."""
    info = instrument_info(instrument.path)
    low = max(MIDI_MIN, instrument.low if instrument.low is not None else MIDI_MIN)
    high = min(MIDI_MAX, instrument.high if instrument.high is not None else MIDI_MAX)
    keys = [k for k in info["keys"] if low <= k <= high]
    if not keys:
        return frozenset(), 1.0
    velocity = velocity_map(PROBE_VELOCITY, info["layers"])
    picks = [keys[int(round(x))] for x in np.linspace(0, len(keys) - 1, min(LEVEL_PROBE_KEYS, len(keys)))]
    level_start = 2 * len(keys) * PROBE_SAMPLES / SAMPLE_RATE + LEVEL_NOTE_S
    level_notes = _level_notes(sorted(set(picks)), velocity, level_start)
    events = _probe_events(keys, velocity) + [
        e for e in _events(Part(level_notes), 1.0) if e[2] in ("on", "off")
    ]
    n_samples = int(math.ceil((level_notes[-1].offset + LEVEL_NOTE_S) * SAMPLE_RATE))
    audio = _render_events(instrument.path, sorted(events, key=lambda e: (e[0], e[1])), n_samples)
    windows = audio[: 2 * len(keys) * PROBE_SAMPLES].reshape(len(keys), 2, PROBE_SAMPLES)[:, 0]
    peaks = np.abs(windows).max(axis=1)
    gain = _reference_gain(level_notes, _note_rms(audio, level_notes), instrument)
    audible = frozenset(k for k, peak in zip(keys, peaks) if peak * gain >= AUDIBLE_PEAK)
    return audible, gain


def _reference_gain(notes: list[Note], rms: np.ndarray, instrument: SfzInstrument) -> float:
    """Median over the probe notes of FluidR3's RMS / the instrument's RMS for the same notes
    (FluidR3 plays them at PROBE_VELOCITY); 1 without FluidR3 or a program."""
    if instrument.program is None or not REFERENCE_SOUNDFONT.is_file():
        return 1.0
    from timbrescribe.data.render import render_part as render_gm

    start = notes[0].onset
    reference_notes = [Note(n.onset - start, n.offset - start, n.pitch, PROBE_VELOCITY) for n in notes]
    try:
        reference = render_gm(Part(reference_notes, program=instrument.program), REFERENCE_SOUNDFONT)
    except SilentStemError:
        return 1.0
    reference_rms = _note_rms(reference, reference_notes)
    ratios = [r / o for r, o in zip(reference_rms, rms) if r > 0 and o > 0]
    return float(np.median(ratios)) if ratios else 1.0


def audible_keys(instrument: SfzInstrument) -> frozenset[int]:
    """Keys MIDI_MIN..MIDI_MAX the instrument sounds (probed once per process)."""
    return _probe(instrument)[0]


def level_gain(instrument: SfzInstrument) -> float:
    """Linear gain that brings the instrument to the FluidSynth path's level."""
    return _probe(instrument)[1]


def trim_overlaps(notes: list[Note]) -> list[Note]:
    """For a monophonic instrument: each note ends no later than the next note's onset."""
    notes = sorted(notes, key=lambda n: (n.onset, n.pitch))
    trimmed = []
    for i, note in enumerate(notes):
        offset = note.offset
        if i + 1 < len(notes) and notes[i + 1].onset < offset:
            offset = notes[i + 1].onset
        if offset > note.onset:
            trimmed.append(Note(note.onset, offset, note.pitch, note.velocity))
    return trimmed


def prepare_part(part: Part, instrument: SfzInstrument) -> Part:
    """``part`` as the instrument plays it: inaudible notes dropped, velocities spread over the
    velocity layers, and for a monophonic instrument overlaps trimmed. The result's notes are
    the labels."""
    audible = audible_keys(instrument)
    layers = instrument_info(instrument.path)["layers"]
    notes = [replace(n, velocity=velocity_map(n.velocity, layers)) for n in part.notes if n.pitch in audible]
    if instrument.monophonic:
        notes = trim_overlaps(notes)
    return replace(part, notes=notes)


def drop_inaudible_notes(part: Part, instrument: SfzInstrument) -> Part:
    """``part`` without the notes the instrument cannot sound."""
    audible = audible_keys(instrument)
    return replace(part, notes=[n for n in part.notes if n.pitch in audible])


def _events(part: Part, bend_scale: float) -> list[tuple[int, int, str, int, int]]:
    """(sample, order, kind, number, value) of every note and control event, in time order.

    As render._events, at exact samples: a note still sounding when its key starts again is
    released then; pitch bends are rescaled to the instrument's bend range.
    """
    events = []
    next_start: dict[int, int] = {}
    for note in sorted(part.notes, key=lambda n: n.onset, reverse=True):
        start = int(round(note.onset * SAMPLE_RATE))
        release = min(max(int(round(note.offset * SAMPLE_RATE)), start + 1), next_start.get(note.pitch, 1 << 62))
        next_start[note.pitch] = start
        if release > start:
            events.append((start, _ON, "on", note.pitch, int(np.clip(note.velocity, 1, 127))))
            events.append((release, _OFF, "off", note.pitch, 0))
    for control in part.controls:
        value = control.value
        if control.kind == "pitchbend":
            value = int(np.clip(round(value * bend_scale), -8192, 8191))
        elif control.kind != "cc":
            raise ValueError(f"unknown control kind {control.kind!r}")
        events.append((int(round(control.time * SAMPLE_RATE)), _CONTROL, control.kind, control.number, value))
    return sorted(events, key=lambda e: (e[0], e[1]))


def render_part(
    part: Part, instrument: SfzInstrument | str | Path, n_samples: int | None = None,
    tail_s: float = DEFAULT_TAIL_S, level: bool = True,
) -> np.ndarray:
    """Dry mono float32 audio at SAMPLE_RATE of ``part`` played by the SFZ ``instrument``.

    ``n_samples`` fixes the length (events past it are dropped); by default the audio ends
    ``tail_s`` after the last note-off. With ``level`` the audio is scaled to the FluidSynth
    path's level (``level_gain``). Raises SilentStemError when the notes are inaudible.
    """
    if not isinstance(instrument, SfzInstrument):
        instrument = SfzInstrument(str(instrument))
    if n_samples is None:
        end = max((n.offset for n in part.notes), default=0.0)
        n_samples = int(math.ceil((end + tail_s) * SAMPLE_RATE))
    events = [e for e in _events(part, DEFAULT_BEND_CENTS / instrument.bend_cents) if e[0] < n_samples]
    audio = _render_events(instrument.path, events, n_samples)
    if level:
        audio = (audio * level_gain(instrument)).astype(np.float32)
    if part.notes and is_silent(audio):
        raise SilentStemError(f"{Path(instrument.path).name} is silent for these notes")
    return audio


# ---------------------------------------------------------------- child side (one fresh process)


def _load(path: str):
    import pysfizz

    synth = pysfizz.Synth(sample_rate=SAMPLE_RATE, block_size=BLOCK)
    if not synth.load_sfz_file(path):
        raise SfzError(f"sfizz could not load {path} (no regions or unreadable)")
    return synth


def _info(synth) -> dict:
    core = synth._synth
    keys, edges = set(), {0, 128}
    for index in range(core.get_num_regions()):
        region = core.get_region_data(index)
        if region["trigger"] not in ("attack", "first", "legato") or str(region["sample_id"]).startswith("*"):
            continue
        keys.update(range(max(0, region["lokey"]), min(127, region["hikey"]) + 1))
        # sfizz keeps velocity ranges as [lovel, hivel + 1) / 127
        edges.add(int(round(region["lovel"] * 127)))
        end = int(round(region["hivel"] * 127))
        edges.add(128 if end >= 127 else end)
    edges = sorted(e for e in edges if 0 <= e <= 128)
    layers = [(lo, hi - 1) for lo, hi in zip(edges[:-1], edges[1:]) if hi - 1 >= max(lo, 1)]
    return {"keys": sorted(keys), "layers": [(max(lo, 1), hi) for lo, hi in layers]}


def _render(synth, events: list, n_samples: int) -> np.ndarray:
    core = synth._synth
    out = np.zeros(int(math.ceil(n_samples / BLOCK)) * BLOCK, np.float32)
    cursor = 0
    for block_start in range(0, out.size, BLOCK):
        while cursor < len(events) and events[cursor][0] < block_start + BLOCK:
            sample, kind, number, value = events[cursor]
            delay = max(0, sample - block_start)
            if kind == "on":
                core.note_on(delay, number, value)
            elif kind == "off":
                core.note_off(delay, number, 0)
            elif kind == "cc":
                core.cc(delay, number, value)
            elif kind == "pitchbend":
                core.pitch_wheel(delay, value)
            elif kind == "alloff":
                core.all_sound_off()
            cursor += 1
        left, right = core.render_block()
        out[block_start : block_start + BLOCK] = 0.5 * (np.asarray(left) + np.asarray(right))
    return out[:n_samples]


def _main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    # The reply goes to the original stdout; anything a library prints goes to stderr instead.
    reply = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    synth = _load(request["sfz"])
    if request["mode"] == "info":
        reply.write(json.dumps(_info(synth)).encode())
    elif request["mode"] == "render":
        audio = _render(synth, request["events"], int(request["n_samples"]))
        reply.write(audio.astype(np.float32).tobytes())
    else:
        raise SfzError(f"unknown mode {request['mode']!r}")
    reply.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
