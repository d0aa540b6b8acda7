"""The synthetic dataset engine: example i of a dataset is a pure function of (preset, seed, i).

music (composer or real score) -> performance -> per-part rendering (a soundfont with FluidSynth, or,
for the presets with a ``source_split``, a timbre source of that split: GM bank or sampled SFZ
instrument, data/sources.py) -> per-stem augmentation -> random gains, mix, noise, normalisation
-> files. Rendering runs in a process
pool, each example is written atomically, re-running skips finished examples, and the manifest
is rewritten from the finished examples (periodically while rendering, and at the end).

Files per example in ``<out>/examples/``:
- ``<id>.flac``: 16-bit, SAMPLE_RATE, channel 0 the mix, channels 1..P the stems (mix = sum of
  stems + noise);
- ``<id>.npz``: note arrays (part, onset, offset, pitch, velocity) and ``record``, the example's
  manifest entry as JSON; written last, so its presence marks a finished example;
- ``<id>.mid``: the performed parts as multi-track MIDI, for people.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.data.augment import augment_stem, mix_stems
from timbrescribe.data.instruments import SOUNDFONTS, choose_programs, family_of
from timbrescribe.data.presets import Preset
from timbrescribe.data.storage import EXAMPLES_DIR, MANIFEST, example_name
from timbrescribe.data.render import SilentStemError, drop_inaudible_notes, render_part
from timbrescribe.data.sources import TimbreSource, draw_source, prepare_part, registry
from timbrescribe.data.sources import render_part as render_source_part
from timbrescribe.data.types import Part, Piece
from timbrescribe.errors import UserError
from timbrescribe.notes import Note
from timbrescribe.outputs import atomic_path
from timbrescribe import quiet_imports

FORMAT_VERSION = 1
RELEASE_S = 0.75  # music stops this long before the example ends, leaving room for releases
MIN_NOTE_S = 0.03  # notes cut shorter than this by the example end are dropped
MAX_ATTEMPTS = 10  # redraws of an example whose parts came out silent
MANIFEST_EVERY = 25  # finished examples between manifest rewrites while rendering


@dataclass
class Example:
    """One rendered example: audio at SAMPLE_RATE and the parts that produced it."""

    index: int
    mix: np.ndarray  # (N,) float32
    stems: np.ndarray  # (P, N) float32, same scale as the mix
    parts: list[Part]  # performed notes (the labels) and controls
    soundfonts: list[str]  # soundfont (or timbre source) name per part
    source: str


def _compose_music(preset: Preset, rng: np.random.Generator, programs: list[int], music_s: float) -> Piece:
    """A Piece from a real score (share ``preset.score_fraction``) or from the random composer."""
    if rng.random() < preset.score_fraction:
        from timbrescribe.data.scores import score_piece

        return score_piece(rng, programs, music_s)
    from timbrescribe.data.composer import compose

    return compose(rng, programs, music_s, preset.composer)


def _fit_to_length(part: Part, duration: float) -> Part:
    """``part`` with notes cut at ``duration`` (notes left too short are dropped)."""
    notes = [
        Note(n.onset, min(n.offset, duration), n.pitch, n.velocity)
        for n in part.notes
        if min(n.offset, duration) - n.onset >= MIN_NOTE_S
    ]
    return replace(part, notes=notes, controls=[c for c in part.controls if c.time < duration])


def source_pool(preset: Preset) -> list[TimbreSource]:
    """The timbre sources a source-split preset draws from here (sources.available_sources)."""
    from timbrescribe.data.sources import available_sources

    if preset.source_split is None:
        return []
    return available_sources(preset.source_split)


def _draw_parts(preset: Preset, rng: np.random.Generator, duration: float) -> tuple[list[Part], list[str], str]:
    """(performed parts with notes, timbre source name per part, music source) for one attempt."""
    from timbrescribe.data.expression import perform

    n_parts = int(rng.choice(preset.part_counts, p=np.asarray(preset.part_weights) / sum(preset.part_weights)))
    pool = source_pool(preset)
    program_weights = None
    if preset.source_split is not None and preset.sampled_program_weight != 1.0:
        program_weights = {p: preset.sampled_program_weight for s in pool if s.is_sfz for p in s.programs or ()}
    programs = choose_programs(rng, n_parts, preset.same_family_prob, preset.family_weights, program_weights)
    piece = perform(_compose_music(preset, rng, programs, duration - RELEASE_S), rng)
    parts, fonts = [], []
    for part in piece.parts:
        if preset.source_split is None:  # the first presets: one of their soundfonts, uniformly
            font = str(rng.choice(preset.soundfonts))
            part = _fit_to_length(drop_inaudible_notes(part, SOUNDFONTS[font]), duration)
        else:
            source = draw_source(rng, pool, part.program)
            if source is None:  # no source of the split plays this program
                continue
            font = source.name
            part = _fit_to_length(prepare_part(part, source), duration)
        if not part.family:
            part = replace(part, family=family_of(part.program))
        if part.notes:
            parts.append(part)
            fonts.append(font)
    return parts, fonts, piece.source


def _render_dry(preset: Preset, part: Part, font: str, n_samples: int) -> np.ndarray:
    if preset.source_split is None:
        return render_part(part, SOUNDFONTS[font], n_samples=n_samples)
    return render_source_part(part, registry()[font], n_samples=n_samples)


def make_example(preset: Preset, seed: int, index: int) -> Example:
    """Render example ``index`` of the dataset (preset, seed): deterministic in its arguments
    (and, for a source-split preset, in the timbre sources installed: see the manifest)."""
    rng = np.random.default_rng([seed, index])
    duration = float(rng.uniform(*preset.example_s))
    n_samples = int(round(duration * SAMPLE_RATE))
    for _ in range(MAX_ATTEMPTS):
        parts, fonts, source = _draw_parts(preset, rng, duration)
        try:
            dry = [_render_dry(preset, p, f, n_samples) for p, f in zip(parts, fonts)]
        except SilentStemError:
            continue
        if not dry:
            continue
        wet = [augment_stem(stem, rng, preset.augment) for stem in dry]
        mix, stems = mix_stems(wet, rng, preset.augment)
        return Example(index, mix, stems, parts, fonts, source)
    raise RuntimeError(f"example {index} (seed {seed}): every draw came out silent")


def example_record(example: Example) -> dict:
    """The manifest entry of an example."""
    return {
        "id": example.index,
        "file": f"{EXAMPLES_DIR}/{example_name(example.index)}",
        "duration": example.mix.size / SAMPLE_RATE,
        "n_samples": int(example.mix.size),
        "programs": [p.program for p in example.parts],
        "families": [p.family for p in example.parts],
        "names": [p.name for p in example.parts],
        "n_notes": [len(p.notes) for p in example.parts],
        "soundfonts": example.soundfonts,
        "source": example.source,
    }


def parts_midi(parts: list[Part]):
    """pretty_midi object with one instrument per part (notes, CC and pitch-bend events)."""
    pretty_midi = quiet_imports.pretty_midi()

    midi = pretty_midi.PrettyMIDI()
    for part in parts:
        instrument = pretty_midi.Instrument(program=part.program, name=part.name)
        instrument.notes = [pretty_midi.Note(n.velocity, n.pitch, n.onset, n.offset) for n in part.notes]
        for c in part.controls:
            if c.kind == "cc":
                instrument.control_changes.append(pretty_midi.ControlChange(c.number, c.value, c.time))
            else:
                instrument.pitch_bends.append(pretty_midi.PitchBend(c.value, c.time))
        midi.instruments.append(instrument)
    return midi


def write_example(example: Example, examples_dir: Path) -> dict:
    """Write the example's files atomically (tmp + rename, npz last); returns its record."""
    import soundfile

    stem_path = examples_dir / example_name(example.index)
    channels = np.clip(np.vstack([example.mix[None, :], example.stems]), -1.0, 1.0).T
    record = example_record(example)
    notes = [(i, n) for i, part in enumerate(example.parts) for n in part.notes]

    def tmp(suffix: str) -> Path:
        return stem_path.with_name(f".tmp-{os.getpid()}-{stem_path.name}{suffix}")

    soundfile.write(tmp(".flac"), channels, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp(".flac"), stem_path.with_suffix(".flac"))
    parts_midi(example.parts).write(str(tmp(".mid")))
    os.replace(tmp(".mid"), stem_path.with_suffix(".mid"))
    with open(tmp(".npz"), "wb") as handle:
        np.savez(
            handle,
            note_part=np.array([i for i, _ in notes], np.int16),
            note_onset=np.array([n.onset for _, n in notes], np.float64),
            note_offset=np.array([n.offset for _, n in notes], np.float64),
            note_pitch=np.array([n.pitch for _, n in notes], np.int16),
            note_velocity=np.array([n.velocity for _, n in notes], np.int16),
            record=np.array(json.dumps(record)),
        )
    os.replace(tmp(".npz"), stem_path.with_suffix(".npz"))
    return record


def read_record(npz_path: Path) -> dict:
    """The manifest entry stored in an example's npz file."""
    with np.load(npz_path) as data:
        return json.loads(str(data["record"]))


def _render_task(task: tuple[Preset, int, int, str]) -> dict:
    preset, seed, index, examples_dir = task
    return write_example(make_example(preset, seed, index), Path(examples_dir))


def code_version() -> str:
    try:
        return f"timbrescribe {metadata.version('timbrescribe')}, data format {FORMAT_VERSION}"
    except metadata.PackageNotFoundError:
        return f"timbrescribe (not installed), data format {FORMAT_VERSION}"


def _write_manifest(out: Path, preset: Preset, seed: int, count: int, records: dict[int, dict]) -> dict:
    """Rewrite ``manifest.json`` atomically from the finished records; returns it."""
    examples = [records[i] for i in sorted(records)]
    manifest = {
        "preset": preset.name,
        "seed": seed,
        "count": len(examples),
        "requested": count,
        "complete": len(examples) == count,
        "code_version": code_version(),
        "sample_rate": SAMPLE_RATE,
        "audio_seconds": sum(r["duration"] for r in examples),
        "examples": examples,
    }
    if preset.source_split is not None:
        manifest["source_split"] = preset.source_split
        manifest["timbre_sources"] = [source.record() for source in source_pool(preset)]
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    return manifest


def _check_same_dataset(out: Path, preset: Preset, seed: int) -> None:
    path = out / MANIFEST
    if not path.exists():
        return
    old = json.loads(path.read_text())
    if (old.get("preset"), old.get("seed")) != (preset.name, seed):
        raise UserError(
            f"{out} holds preset {old.get('preset')!r} seed {old.get('seed')}, not {preset.name!r} "
            f"seed {seed}; choose another --out"
        )
    if preset.source_split is not None and old.get("count"):
        before = [s["name"] for s in old.get("timbre_sources", [])]
        now = [s.name for s in source_pool(preset)]
        if before != now:
            raise UserError(
                f"{out} was rendered with the timbre sources {before}, but {now} are installed "
                "now; install the same ones or choose another --out"
            )


def render_dataset(
    preset: Preset, out: str | Path, count: int, seed: int = 0, workers: int | None = None, progress: bool = True
) -> dict:
    """Render examples 0..count-1 of (preset, seed) into ``out`` (skipping finished ones) and
    return the manifest."""
    from tqdm import tqdm

    out = Path(out)
    if preset.source_split is not None and not source_pool(preset):
        raise UserError(
            f"no timbre source of the {preset.source_split} split is installed here "
            "(timbrescribe data sources; docs/data.md)"
        )
    examples_dir = out / EXAMPLES_DIR
    examples_dir.mkdir(parents=True, exist_ok=True)
    _check_same_dataset(out, preset, seed)
    records = {
        i: read_record(examples_dir / f"{example_name(i)}.npz")
        for i in range(count)
        if (examples_dir / f"{example_name(i)}.npz").exists()
    }
    _write_manifest(out, preset, seed, count, records)
    tasks = [(preset, seed, i, str(examples_dir)) for i in range(count) if i not in records]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    bar = tqdm(total=count, initial=len(records), unit="ex", desc=f"render {preset.name}", disable=not progress)
    if workers == 1:
        results = map(_render_task, tasks)
        pool = None
    else:
        import multiprocessing

        # Not "fork": a forked child of a process whose torch/OpenMP threads already ran can hang.
        pool = multiprocessing.get_context("forkserver").Pool(workers)
        results = pool.imap_unordered(_render_task, tasks)
    try:
        for done, record in enumerate(results, 1):
            records[record["id"]] = record
            bar.update(1)
            if done % MANIFEST_EVERY == 0:
                _write_manifest(out, preset, seed, count, records)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        for leftover in examples_dir.glob(".tmp-*"):
            leftover.unlink()
        manifest = _write_manifest(out, preset, seed, count, records)
    return manifest

