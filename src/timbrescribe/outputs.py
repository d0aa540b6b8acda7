"""Writers for transcribed tracks: MIDI, JSON, CSV and a piano-roll picture.

Every writer is atomic: it writes to a hidden temporary file beside the target and moves it into
place only when complete, so a failure never leaves a half-written file behind. ``atomic_paths``
does the same for a set of files that belong together: all of them are replaced, or none.

Stable note fields (JSON keys and CSV columns): ``track`` (track name), ``onset`` and ``offset``
(seconds, rounded to microseconds), ``pitch`` (MIDI number), ``velocity`` (MIDI 1..127); the CSV
also has ``track_confidence`` and the JSON a ``confidence`` per track (empty / null when the track
was not found by clustering). In MIDI every track has its own channel, never the drum channel 10.
"""
from __future__ import annotations

import csv
import errno
import glob
import json
import os
import secrets
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from timbrescribe import quiet_imports
from timbrescribe.constants import FRAME_RATE, MIDI_MIN, N_PITCHES
from timbrescribe.notes import Note, Track

CSV_COLUMNS = ("track", "onset", "offset", "pitch", "velocity", "track_confidence")
JSON_FORMAT = "timbrescribe-notes"
JSON_VERSION = 2  # 2: per-track confidence
MIDI_RESOLUTION = 480  # ticks per quarter note: 1.04 ms per tick at 120 bpm
TIME_DECIMALS = 6
BACKGROUND_ALPHA = 0.6  # full activation shows mid-grey, so note colours stay readable over it
NOTE_ALPHA = 0.75


# Random bytes in a temporary file's name (as hex digits).
TOKEN_BYTES = 4
# Signals held while a set of files is moved into place (see atomic_paths).
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield one fresh temporary path in the directory of each of ``paths``. When the block
    succeeds, the temporary files replace their targets one after the other in a tight block
    during which SIGINT and SIGTERM are held (delivered once every file is in place), so a signal
    leaves either all the old files or all the new ones. When the block fails, the temporary files
    are removed and the targets are left as they were."""
    targets = [Path(path) for path in paths]
    temporaries = [target.with_name(f".{target.name}.{secrets.token_hex(TOKEN_BYTES)}.tmp") for target in targets]
    try:
        yield temporaries
        for target in targets:  # the one failure os.replace can meet after the first file is in
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a directory is in the way of an output", str(target))
        with _signals_held():
            for temporary, target in zip(temporaries, targets):
                os.replace(temporary, target)
    except BaseException:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        raise


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary files that atomic_paths made for ``path`` (or for one of those, when writers
    nest) and never moved into place nor removed: what a process killed outright (SIGKILL, a
    power cut) leaves behind."""
    target = Path(path)
    pattern = f".{glob.escape(target.name)}.{'[0-9a-f]' * (2 * TOKEN_BYTES)}.tmp"
    nested = f".{pattern}.{'[0-9a-f]' * (2 * TOKEN_BYTES)}.tmp"
    return sorted([*target.parent.glob(pattern), *target.parent.glob(nested)])


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """atomic_paths for one file: yield a temporary path that replaces ``path`` when the block
    succeeds and is removed when it fails."""
    with atomic_paths([path]) as (temporary,):
        yield temporary


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold HELD_SIGNALS during the block and then deliver the ones that came, to the handlers
    they had before. Only the main thread runs signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in HELD_SIGNALS}
    previous = {number: handler for number, handler in previous.items() if handler is not None}  # None: set in C
    arrived: list[int] = []
    try:
        for number in previous:
            signal.signal(number, lambda received, frame: arrived.append(received))
        yield
    finally:
        interrupted = _restore_handlers(previous)
        if interrupted is not None:
            raise interrupted
        for number in dict.fromkeys(arrived):
            signal.raise_signal(number)


def _restore_handlers(handlers: dict) -> BaseException | None:
    """Put ``handlers`` back. A handler already put back may raise (its signal came just then):
    the restoring still finishes, and the first such exception is returned."""
    interrupted = None
    while True:
        try:
            for number, handler in handlers.items():
                signal.signal(number, handler)
            return interrupted
        except BaseException as err:  # noqa: BLE001 - re-raised by the caller once all are back
            interrupted = interrupted or err


def sorted_notes(notes: list[Note]) -> list[Note]:
    """Notes in time order (ties by pitch), the order every writer uses."""
    return sorted(notes, key=lambda note: (note.onset, note.pitch, note.offset))


def _note_record(track: Track, note: Note) -> dict:
    return {
        "track": track.name,
        "onset": round(note.onset, TIME_DECIMALS),
        "offset": round(note.offset, TIME_DECIMALS),
        "pitch": int(note.pitch),
        "velocity": int(note.velocity),
    }


# MIDI channels (0-based) for pitched tracks, in order: every channel but 9 (the drum channel 10).
MELODIC_CHANNELS = tuple(channel for channel in range(16) if channel != 9)


def _confidence(track: Track) -> float | None:
    return None if track.confidence is None else round(float(track.confidence), 4)


def write_midi(tracks: list[Track], path: str | os.PathLike, tempo: float = 120.0) -> None:
    """Write a multi-track MIDI file: one instrument per track, with the track's name and program,
    each pitched track on its own channel (pretty_midi gives them MELODIC_CHANNELS in order)."""
    pretty_midi = quiet_imports.pretty_midi()

    if not tempo > 0:
        raise ValueError(f"tempo must be positive, got {tempo}")
    if sum(not track.is_drum for track in tracks) > len(MELODIC_CHANNELS):
        raise ValueError(f"MIDI has {len(MELODIC_CHANNELS)} channels for pitched tracks, got {len(tracks)} tracks")
    midi = pretty_midi.PrettyMIDI(resolution=MIDI_RESOLUTION, initial_tempo=float(tempo))
    for track in tracks:
        instrument = pretty_midi.Instrument(program=track.program, is_drum=track.is_drum, name=track.name)
        instrument.notes = [
            pretty_midi.Note(velocity=int(note.velocity), pitch=int(note.pitch), start=note.onset, end=note.offset)
            for note in sorted_notes(track.notes)
        ]
        midi.instruments.append(instrument)
    with atomic_path(path) as temporary:
        midi.write(str(temporary))


def write_json(tracks: list[Track], path: str | os.PathLike) -> None:
    """Write the tracks as JSON: ``{"format", "version", "tracks": [{"name", "program", "is_drum",
    "notes": [{"track", "onset", "offset", "pitch", "velocity"}, ...]}, ...]}``."""
    document = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "tracks": [
            {
                "name": track.name,
                "program": int(track.program),
                "is_drum": bool(track.is_drum),
                "confidence": _confidence(track),
                "notes": [_note_record(track, note) for note in sorted_notes(track.notes)],
            }
            for track in tracks
        ],
    }
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
            handle.write("\n")


def write_csv(tracks: list[Track], path: str | os.PathLike) -> None:
    """Write one row per note with the columns ``CSV_COLUMNS``, track by track, notes in time order."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for track in tracks:
                confidence = _confidence(track)
                writer.writerows(
                    {**_note_record(track, note), "track_confidence": "" if confidence is None else confidence}
                    for note in sorted_notes(track.notes)
                )


def write_piano_roll_png(
    tracks: list[Track], path: str | os.PathLike, spectrogram: np.ndarray | None = None
) -> None:
    """Draw the notes as a piano roll (one colour per track) and save it as PNG.

    ``spectrogram`` is an optional (84, T) background on the model's frame grid, one row per
    pitch from MIDI 24, values in [0, 1] (e.g. the frame activations), drawn in grey under the notes.
    """
    pretty_midi = quiet_imports.pretty_midi()
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    all_notes = [note for track in tracks for note in track.notes]
    duration = max((note.offset for note in all_notes), default=0.0)
    if spectrogram is not None:
        spectrogram = np.asarray(spectrogram)
        if spectrogram.ndim != 2 or spectrogram.shape[0] != N_PITCHES:
            raise ValueError(f"spectrogram must have shape ({N_PITCHES}, T), got {spectrogram.shape}")
        duration = max(duration, spectrogram.shape[1] / FRAME_RATE)
    duration = max(duration, 1.0)

    figure = Figure(figsize=(min(max(8.0, 4.0 + duration / 4.0), 30.0), 6.0), dpi=100)
    FigureCanvasAgg(figure)  # render with Agg explicitly: no display needed
    axes = figure.add_subplot()
    if spectrogram is not None:
        axes.imshow(
            spectrogram, origin="lower", aspect="auto", cmap="Greys", vmin=0.0, vmax=1.0,
            interpolation="nearest", alpha=BACKGROUND_ALPHA,
            extent=(0.0, spectrogram.shape[1] / FRAME_RATE, MIDI_MIN - 0.5, MIDI_MIN + N_PITCHES - 0.5),
        )
    palette = colormaps["tab10"]
    for index, track in enumerate(tracks):
        if not track.notes:
            continue
        axes.barh(
            [note.pitch for note in track.notes],
            [note.offset - note.onset for note in track.notes],
            left=[note.onset for note in track.notes],
            height=0.8, color=palette(index % palette.N), alpha=NOTE_ALPHA, edgecolor="black", linewidth=0.3,
            label=f"{track.name} ({len(track.notes)})",
        )
    if all_notes:
        low = min(note.pitch for note in all_notes) - 3
        high = max(note.pitch for note in all_notes) + 3
        axes.legend(loc="upper right", fontsize="small")
    else:
        low, high = MIDI_MIN, MIDI_MIN + N_PITCHES - 1
    axes.set_ylim(low - 0.5, high + 0.5)
    axes.set_xlim(0.0, duration)
    labelled_classes = (0,) if high - low > 24 else (0, 4, 7)  # C only, or C, E, G when zoomed in
    labelled = [pitch for pitch in range(low, high + 1) if pitch % 12 in labelled_classes]
    axes.set_yticks(labelled, [pretty_midi.note_number_to_name(pitch) for pitch in labelled])
    axes.grid(axis="y", color="tab:blue", alpha=0.15)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("pitch")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
