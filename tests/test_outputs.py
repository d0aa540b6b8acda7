"""Output writers: MIDI/JSON/CSV round trips, piano-roll picture, atomic writing."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
from matplotlib import colormaps
from matplotlib.image import imread

from timbrescribe.notes import Note, Track
from timbrescribe.outputs import (
    BACKGROUND_ALPHA,
    CSV_COLUMNS,
    NOTE_ALPHA,
    atomic_path,
    atomic_paths,
    stale_temporaries,
    write_csv,
    write_json,
    write_midi,
    write_piano_roll_png,
)

TICK_SECONDS = 60.0 / 120.0 / 480  # one MIDI tick at 120 bpm and 480 ticks per quarter note


@pytest.fixture
def tracks() -> list[Track]:
    # Notes deliberately out of time order and at times that are not on the tick grid.
    violin = Track("violin", [Note(1.2345, 1.9, 67, 80), Note(0.01, 0.6173, 64, 101)], program=40, confidence=0.8125)
    cello = Track("cello", [Note(0.5, 2.25, 43, 64), Note(0.0, 0.4999, 36, 127)], program=42)
    drums = Track("drums", [Note(0.25, 0.35, 38, 90)], is_drum=True)
    return [violin, cello, drums]


def _in_time_order(track: Track) -> list[Note]:
    return sorted(track.notes, key=lambda note: (note.onset, note.pitch))


def test_midi_round_trip_keeps_tracks_and_notes(tmp_path, tracks):
    path = tmp_path / "song.mid"
    write_midi(tracks, path)
    midi = pretty_midi.PrettyMIDI(str(path))
    assert [(i.name, i.program, i.is_drum) for i in midi.instruments] == [
        ("violin", 40, False), ("cello", 42, False), ("drums", 0, True)
    ]
    for instrument, track in zip(midi.instruments, tracks):
        read = sorted(instrument.notes, key=lambda note: (note.start, note.pitch))
        expected = _in_time_order(track)
        assert [(n.pitch, n.velocity) for n in read] == [(n.pitch, n.velocity) for n in expected]
        for got, want in zip(read, expected):
            assert got.start == pytest.approx(want.onset, abs=TICK_SECONDS)
            assert got.end == pytest.approx(want.offset, abs=TICK_SECONDS)


def test_midi_tempo_is_written(tmp_path, tracks):
    path = tmp_path / "slow.mid"
    write_midi(tracks, path, tempo=90)
    midi = pretty_midi.PrettyMIDI(str(path))
    assert midi.get_tempo_changes()[1][0] == pytest.approx(90.0, rel=1e-5)  # microseconds per beat
    assert midi.instruments[0].notes[0].start == pytest.approx(0.01, abs=60.0 / 90.0 / 480)


def test_json_has_stable_keys_and_all_notes(tmp_path, tracks):
    path = tmp_path / "song.json"
    write_json(tracks, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "timbrescribe-notes" and document["version"] == 2
    assert [(t["name"], t["program"], t["is_drum"], t["confidence"]) for t in document["tracks"]] == [
        ("violin", 40, False, 0.8125), ("cello", 42, False, None), ("drums", 0, True, None)
    ]
    for written, track in zip(document["tracks"], tracks):
        assert written["notes"] == [
            {"track": track.name, "onset": n.onset, "offset": n.offset, "pitch": n.pitch, "velocity": n.velocity}
            for n in _in_time_order(track)
        ]


def test_csv_has_header_and_one_row_per_note(tmp_path, tracks):
    path = tmp_path / "song.csv"
    write_csv(tracks, path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS == (
            "track", "onset", "offset", "pitch", "velocity", "track_confidence"
        )
        rows = list(reader)
    expected = [(t.name, n) for t in tracks for n in _in_time_order(t)]
    assert len(rows) == len(expected) == 5
    for row, (name, note) in zip(rows, expected):
        assert row["track"] == name
        assert (float(row["onset"]), float(row["offset"])) == (note.onset, note.offset)
        assert (int(row["pitch"]), int(row["velocity"])) == (note.pitch, note.velocity)
        assert row["track_confidence"] == ("0.8125" if name == "violin" else "")


def _channels(path) -> list[set[int]]:
    """MIDI channels (0-based) used by the note events of each track that has notes."""
    import mido

    return [
        {message.channel for message in track if message.type == "note_on"}
        for track in mido.MidiFile(str(path)).tracks
        if any(message.type == "note_on" for message in track)
    ]


@pytest.mark.parametrize("k", [1, 3, 9, 15])
def test_k_instrument_tracks_round_trip_on_distinct_channels_never_the_drum_channel(tmp_path, k):
    tracks = [
        Track(f"instrument {i + 1}", [Note(0.1 * i, 0.1 * i + 0.5, 90 - 2 * i, 80)], confidence=0.9)
        for i in range(k)
    ]
    path = tmp_path / "k.mid"
    write_midi(tracks, path)
    midi = pretty_midi.PrettyMIDI(str(path))
    assert [i.name for i in midi.instruments] == [f"instrument {i + 1}" for i in range(k)]
    assert [i.notes[0].pitch for i in midi.instruments] == [90 - 2 * i for i in range(k)]
    channels = _channels(path)
    assert all(len(c) == 1 for c in channels) and len(set.union(*channels)) == k
    assert 9 not in set.union(*channels)


def test_more_pitched_tracks_than_midi_channels_is_refused(tmp_path):
    tracks = [Track(f"t{i}", [Note(0.0, 1.0, 60)]) for i in range(16)]
    with pytest.raises(ValueError, match="15 channels"):
        write_midi(tracks, tmp_path / "x.mid")


def test_empty_track_list_gives_valid_empty_files(tmp_path):
    write_json([], tmp_path / "e.json")
    write_csv([Track("notes")], tmp_path / "e.csv")
    write_midi([Track("notes")], tmp_path / "e.mid")
    assert json.loads((tmp_path / "e.json").read_text())["tracks"] == []
    assert (tmp_path / "e.csv").read_text().strip() == ",".join(CSV_COLUMNS)
    assert pretty_midi.PrettyMIDI(str(tmp_path / "e.mid")).get_end_time() == 0.0


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, tracks):
    path = tmp_path / "song.mid"
    path.write_bytes(b"old content")
    broken = [Track("bad", [Note(0.0, 1.0, 200)])]  # pitch 200 cannot be a MIDI data byte
    with pytest.raises(ValueError):
        write_midi(broken, path)
    assert path.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["song.mid"]


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("partial")
            raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary != target
        temporary.write_text("complete")
    assert target.read_text() == "complete"
    assert list(tmp_path.iterdir()) == [target]


def _old_set(folder) -> list:
    targets = [folder / name for name in ("a.mid", "a.json", "a.csv")]
    for target in targets:
        target.write_text(f"old {target.name}")
    return targets


def test_atomic_paths_replace_the_whole_set_or_nothing(tmp_path):
    targets = _old_set(tmp_path)
    with pytest.raises(RuntimeError):
        with atomic_paths(targets) as temporaries:
            temporaries[0].write_text("new")
            temporaries[1].write_text("new")
            raise RuntimeError("the third writer crashed")
    assert [t.read_text() for t in targets] == ["old a.mid", "old a.json", "old a.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json", "a.mid"]
    with atomic_paths(targets) as temporaries:
        assert [t.parent for t in temporaries] == [tmp_path] * 3 and len(set(temporaries)) == 3
        for temporary in temporaries:
            temporary.write_text("new")
    assert [t.read_text() for t in targets] == ["new"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json", "a.mid"]


def test_atomic_paths_replace_nothing_when_a_directory_is_in_the_way(tmp_path):
    targets = _old_set(tmp_path)
    targets[2].unlink()
    targets[2].mkdir()
    with pytest.raises(IsADirectoryError, match="a directory is in the way"):
        with atomic_paths(targets) as temporaries:
            for temporary in temporaries:
                temporary.write_text("new")
    assert [t.read_text() for t in targets[:2]] == ["old a.mid", "old a.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json", "a.mid"]


# Sends a real signal to itself right after the first file of the set is moved into place (the
# real os.replace runs; the wrapper only times the signal), then says whether it got past the block.
SIGNAL_DURING_RENAMES = """
import os, sys
from pathlib import Path
from timbrescribe.outputs import atomic_paths

folder, number = Path(sys.argv[1]), int(sys.argv[2])
real_replace, sent = os.replace, []

def replace_then_signal(source, target):
    real_replace(source, target)
    if not sent:
        sent.append(number)
        os.kill(os.getpid(), number)

os.replace = replace_then_signal
with atomic_paths([folder / name for name in ("a.mid", "a.json", "a.csv")]) as temporaries:
    for temporary in temporaries:
        temporary.write_text("new")
print("went on after the signal")
"""


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_renames_waits_until_the_set_is_in_place(tmp_path, number):
    targets = _old_set(tmp_path)
    run = subprocess.run([sys.executable, "-c", SIGNAL_DURING_RENAMES, str(tmp_path), str(int(number))],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "went on" not in run.stdout  # the signal did end the process
    if number == signal.SIGINT:
        assert "KeyboardInterrupt" in run.stderr
    assert [t.read_text() for t in targets] == ["new"] * 3  # ... but only once all three were new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json", "a.mid"]


def test_stale_temporaries_are_those_of_the_target_only(tmp_path):
    target = tmp_path / "x.mid"
    with pytest.raises(RuntimeError):
        with atomic_paths([target]) as (temporary,):
            write_midi([], temporary)  # nests a temporary of its own, then moves it onto ours
            inner = tmp_path / f".{temporary.name}.0123abcd.tmp"
            inner.write_text("as a killed nested writer leaves it")
            other = tmp_path / f".x.mid.json.{temporary.name[-12:]}"  # of another output, x.mid.json
            other.write_text("another output's")
            assert stale_temporaries(target) == sorted([temporary, inner])
            raise RuntimeError("stop before the rename")
    assert stale_temporaries(target) == [inner]  # atomic_paths removes only its own
    assert stale_temporaries(tmp_path / "x.mid.json") == [other] and stale_temporaries(tmp_path / "x") == []


def test_signal_handlers_are_restored_after_the_renames(tmp_path):
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    with atomic_paths([tmp_path / "x"]) as (temporary,):
        temporary.write_text("x")
    assert {number: signal.getsignal(number) for number in before} == before


def _pixels_near(image: np.ndarray, rgb: np.ndarray, tolerance: float = 0.03) -> int:
    return int(np.sum(np.all(np.abs(image[..., :3] - rgb) < tolerance, axis=-1)))


def test_piano_roll_draws_one_colour_per_track(tmp_path, tracks):
    path = tmp_path / "roll.png"
    write_piano_roll_png(tracks[:2], path)
    image = imread(path)
    assert image.shape[0] >= 400 and image.shape[1] >= 600
    palette = colormaps["tab10"]
    for index in range(2):
        blended = NOTE_ALPHA * np.array(palette(index)[:3]) + (1.0 - NOTE_ALPHA)  # over white
        assert _pixels_near(image, blended) > 500, f"no bar pixels in the colour of track {index}"
    third = NOTE_ALPHA * np.array(palette(2)[:3]) + (1.0 - NOTE_ALPHA)
    assert _pixels_near(image, third) == 0


def test_piano_roll_draws_spectrogram_background(tmp_path):
    background = np.zeros((84, 400), dtype=np.float32)
    background[60 - 24, 100:300] = 1.0  # a fully active row without a note
    plain, shaded = tmp_path / "plain.png", tmp_path / "shaded.png"
    write_piano_roll_png([], plain, spectrogram=np.zeros_like(background))
    write_piano_roll_png([], shaded, spectrogram=background)
    grey = np.full(3, 1.0 - BACKGROUND_ALPHA)  # a value of 1 drawn black at the background alpha
    assert _pixels_near(imread(shaded), grey) > _pixels_near(imread(plain), grey) + 200


def test_piano_roll_rejects_misshaped_spectrogram(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_piano_roll_png([], tmp_path / "bad.png", spectrogram=np.zeros((88, 10)))
    assert list(tmp_path.iterdir()) == []
