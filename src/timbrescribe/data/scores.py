"""Real multi-part music from the music21 corpus, one part per instrument (DESIGN.md §6).

The ten evaluation chorales must never reach training, in any harmonisation. A file is excluded
- by its BWV number (EXCLUDED_BWV), or as a known other setting of one of their tunes
  (SAME_TUNE_BWV);
- by the chorale title music21's catalogues give its BWV number, and, once parsed, by the titles
  in its own metadata: a title matches when, after normalisation (case, punctuation, umlauts), it
  starts with a melody's first word and contains its words in order;
- once parsed, by content: a part whose line has the length of an evaluation chorale's soprano
  and matches it (transposed; passing notes allowed) in >= MELODY_MATCH of its notes.
"""
from __future__ import annotations

import functools
import math
import re
import unicodedata
from pathlib import Path

import numpy as np
from music21 import common, converter, corpus
from music21.corpus import chorales

from timbrescribe.data.expression import MIN_NOTE_S, SAME_PITCH_GAP_S, separate_same_pitch
from timbrescribe.data.instruments import family_of, instrument_name, pitch_range
from timbrescribe.data.types import Part, Piece
from timbrescribe.notes import Note

EXCLUDED_BWV: frozenset[int] = frozenset({255, 256, 274, 275, 296, 297, 326, 327, 365, 385})
# Melodies of the evaluation chorales (BWV 327's text also appears as "Vor deinen Thron").
EXCLUDED_TITLES: tuple[str, ...] = (
    "Ach Gott und Herr", "Ach, lieben Christen", "Christe, der du bist Tag und Licht",
    "Christe, du Beistand", "Die Nacht ist kommen", "Die Sonn hat mit ihrem Glanz",
    "Herr Gott, dich loben alle wir", "Für deinen Thron tret ich hiermit",
    "Vor deinen Thron tret ich hiermit", "Jesus, meine Zuversicht", "Nun bitten wir",
)
# Corpus chorales set to one of those tunes under another title, found by comparing every Bach
# file's parts with the evaluation sopranos: 62.6 (soprano identical to BWV 274's), 130.6 (the
# BWV 326/327 tune), 257, 258 and 178.7 ("Wo Gott der Herr nicht bei uns hält", BWV 256's tune).
SAME_TUNE_BWV: frozenset[str] = frozenset({"62.6", "130.6", "178.7", "257", "258"})
MELODY_MATCH = 0.8  # other chorales reach at most 0.73 (178.7, ornamented), same tunes >= 0.85

# Corpus folders of multi-part (mostly chamber / vocal ensemble) music and the files taken.
_COLLECTIONS: dict[str, tuple[str, ...]] = {
    "bach": ("bach/*.mxl", "bach/*.xml"),  # chorales (the .krn copies duplicate .mxl files)
    "beethoven": ("beethoven/**/*.mxl",),  # string quartets
    "haydn": ("haydn/**/*.mxl",),  # string quartets
    "mozart": ("mozart/k80/*.mxl", "mozart/k155/*.mxl", "mozart/k156/*.mxl", "mozart/k458/*.mxl"),
    "corelli": ("corelli/**/*.xml",),  # trio sonata
    "monteverdi": ("monteverdi/madrigal.?.?.mxl", "monteverdi/madrigal.?.??.mxl"),
    "palestrina": ("palestrina/*.krn",),  # masses, 4-6 voices
    "trecento": ("trecento/*.xml",),  # 2-3 voices
}

TEMPO_RANGE = (60.0, 140.0)  # beats per minute
MAX_TRANSPOSE = 3  # random global transposition, semitones either way


class ExcludedScoreError(ValueError):
    """The file is (a harmonisation of) an evaluation chorale."""


def _title_words(title: str) -> list[str]:
    """Lower-case ASCII words; umlauts and their 'ae/oe/ue' spellings fold to the bare vowel."""
    text = unicodedata.normalize("NFKD", title.lower()).encode("ascii", "ignore").decode()
    text = text.replace("ae", "a").replace("oe", "o").replace("ue", "u")
    return re.findall(r"[a-z]+", text)


_EXCLUDED_TITLE_WORDS = tuple(_title_words(t) for t in EXCLUDED_TITLES)


def title_is_excluded(title: str | None) -> bool:
    """Whether a title names the melody of one of the evaluation chorales (or a shortened
    form of it with at least three words)."""
    words = _title_words(title or "")
    return any(
        words[:1] == melody[:1]
        and (_in_order(melody, words) or (len(words) >= 3 and _in_order(words, melody)))
        for melody in _EXCLUDED_TITLE_WORDS
    )


def _in_order(needle: list[str], haystack: list[str]) -> bool:
    """Whether every word of ``needle`` occurs in ``haystack``, in the same order."""
    remaining = iter(haystack)
    return all(word in remaining for word in needle)


def _bwv_key(path_or_name: str | Path) -> str | None:
    """Catalogue key of a Bach file name ('bwv26.6.mxl' -> '26.6'), None for other files."""
    match = re.match(r"bwv(\d+[0-9a-z.\-]*)", Path(str(path_or_name)).name.lower())
    return re.sub(r"\.[a-z]+$", "", match.group(1)) if match else None


@functools.cache
def _catalogue_titles() -> dict[str, str]:
    """Chorale title by BWV key, from music21's Riemenschneider and BWV 250-438 catalogues."""
    titles = {str(k): v["title"] for k, v in chorales.ChoraleList().byBWV.items()}
    titles.update({str(k): v["title"] for k, v in chorales.ChoraleListRKBWV().byBWV.items()})
    return titles


def is_excluded(path_or_name: str | Path) -> bool:
    """Whether a file is an evaluation chorale (or another setting of one of their tunes) by its
    BWV number or by its catalogued title."""
    key = _bwv_key(path_or_name)
    if key is None:
        return False
    number = int(re.match(r"\d+", key).group())
    return (
        number in EXCLUDED_BWV
        or key in SAME_TUNE_BWV
        or title_is_excluded(_catalogue_titles().get(key))
    )


@functools.cache
def _eligible_files() -> tuple[str, ...]:
    root = Path(common.getCorpusFilePath())
    found = {
        file.relative_to(root).as_posix()
        for patterns in _COLLECTIONS.values()
        for pattern in patterns
        for file in root.glob(pattern)
    }
    return tuple(sorted(path for path in found if not is_excluded(path)))


def list_score_files() -> list[str]:
    """Corpus paths (e.g. 'bach/bwv1.6.mxl') of multi-part scores allowed for training."""
    return list(_eligible_files())


def _parse(path: str):
    """A music21 Score from a corpus path or a file on disk."""
    return converter.parse(path) if Path(path).is_file() else corpus.parse(path)


def _score_titles(score) -> list[str | None]:
    metadata = score.metadata
    if metadata is None:
        return []
    return [metadata.title, metadata.alternativeTitle, metadata.movementName]


def _extract_parts(score) -> list[tuple[tuple[float, float, int], ...]]:
    """(onset, duration, MIDI pitch) per pitched part, in quarters, sorted; ties merged."""
    parts = []
    for part in score.parts:
        notes = []
        for element in part.stripTies().flatten().notes:
            length = float(element.duration.quarterLength)
            if length <= 0 or not hasattr(element, "pitches"):
                continue  # grace notes, unpitched percussion
            notes += [(float(element.offset), length, int(p.midi)) for p in element.pitches]
        if notes:
            parts.append(tuple(sorted(notes)))
    return parts


def _melody_line(part) -> list[int]:
    """Highest pitch at each onset, repeated pitches merged."""
    top: dict[float, int] = {}
    for onset, _, pitch in part:
        top[onset] = max(pitch, top.get(onset, pitch))
    line = [top[onset] for onset in sorted(top)]
    return [p for i, p in enumerate(line) if i == 0 or p != line[i - 1]]


@functools.cache
def _excluded_melodies() -> tuple[tuple[int, ...], ...]:
    """Soprano lines of the evaluation chorales found in the corpus (never used for training)."""
    melodies = []
    for number in sorted(EXCLUDED_BWV):
        try:
            score = corpus.parse(f"bach/bwv{number}.mxl")
        except Exception:  # not in this music21 version's corpus: nothing to compare with
            continue
        melodies.append(tuple(_melody_line(_extract_parts(score)[0])))
    return tuple(melodies)


def melody_similarity(line: list[int], melody: list[int]) -> float:
    """Share of notes two lines have in common (longest common subsequence of pitch classes over
    the longer length), after transposing ``line`` to end on ``melody``'s last pitch class."""
    shift = melody[-1] - line[-1]
    a = [(p + shift) % 12 for p in line]
    b = [p % 12 for p in melody]
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1] / max(len(a), len(b))


def _shares_excluded_melody(parts) -> bool:
    lines = [_melody_line(part) for part in parts]
    return any(
        melody_similarity(line, melody) >= MELODY_MATCH
        for melody in _excluded_melodies()
        for line in lines
        if 0.6 * len(melody) <= len(line) <= 1.6 * len(melody)
    )


@functools.lru_cache(maxsize=128)
def _load_score(path: str) -> tuple[tuple[tuple[float, float, int], ...], ...]:
    if is_excluded(path):
        raise ExcludedScoreError(f"{path} is an evaluation chorale")
    score = _parse(path)
    if any(title_is_excluded(title) for title in _score_titles(score)):
        raise ExcludedScoreError(f"{path} is titled like an evaluation chorale")
    parts = _extract_parts(score)
    if _shares_excluded_melody(parts):
        raise ExcludedScoreError(f"{path} carries the melody of an evaluation chorale")
    if len(parts) < 2:
        raise ValueError(f"{path} has fewer than two pitched parts")
    return tuple(parts)


def load_score(path: str) -> list[list[tuple[float, float, int]]]:
    """(onset, duration, MIDI pitch) per part, in quarter notes: ties merged, chords expanded.

    Raises ExcludedScoreError for evaluation chorales and their tunes, ValueError for fewer
    than two pitched parts.
    Memoised per process (parsing is slow).
    """
    return [list(part) for part in _load_score(str(path))]


def _beat_length(parts: list[list[tuple[float, float, int]]]) -> float:
    """Quarter notes per beat: 1, or 2 for music notated in long values (e.g. Palestrina)."""
    median = float(np.median([length for part in parts for _, length, _ in part]))
    return 2.0 if median >= 1.5 else 1.0


def _time_map(rng: np.random.Generator, seconds_per_quarter: float):
    """Quarters -> seconds with a gentle sinusoidal tempo variation (always increasing)."""
    depth = rng.uniform(0.0, 0.06)
    period = rng.uniform(8.0, 32.0)
    phase = rng.uniform(0.0, 2 * math.pi)

    def seconds(quarters: float) -> float:
        wobble = math.cos(phase) - math.cos(2 * math.pi * quarters / period + phase)
        return seconds_per_quarter * (quarters + depth * period / (2 * math.pi) * wobble)

    return seconds


def _octave_shift(pitches: list[int], low: int, high: int) -> int:
    """Octave transposition that puts most pitches inside [low, high] (smallest on ties)."""
    shifts = range(-48, 49, 12)
    return min(shifts, key=lambda s: (-sum(low <= p + s <= high for p in pitches), abs(s)))


def _fold_into(pitch: int, low: int, high: int) -> int:
    """Move a pitch by octaves into [low, high] (every range spans at least an octave)."""
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def _assign_parts(rng: np.random.Generator, parts: list, programs: list[int]) -> list:
    """One score part per program: a random subset, usually matched low-to-low by register."""
    chosen = [parts[i] for i in sorted(rng.choice(len(parts), size=len(programs), replace=False))]
    if rng.random() < 0.7:
        by_register = sorted(chosen, key=lambda part: np.mean([p for _, _, p in part]))
        by_range = sorted(range(len(programs)), key=lambda i: sum(pitch_range(programs[i])))
        matched = [None] * len(programs)
        for part, index in zip(by_register, by_range):
            matched[index] = part
        return matched
    return [chosen[i] for i in rng.permutation(len(chosen))]


def _perform_excerpt(
    rng: np.random.Generator, part, program: int, start: float, seconds, duration_s: float,
    transpose: int,
) -> Part:
    """The notes of one score part from ``start`` (quarters), timed and fitted to the program."""
    low, high = pitch_range(program)
    window = [(q - start, length, p + transpose) for q, length, p in part if q >= start]
    window = [(q, length, p) for q, length, p in window if seconds(q) < duration_s]
    shift = _octave_shift([p for _, _, p in window], low, high)
    level = rng.uniform(50, 110)
    notes = []
    for q, length, pitch in window:
        onset = seconds(q)
        offset = min(seconds(q + length), duration_s)
        if offset - onset < MIN_NOTE_S:
            continue
        velocity = int(np.clip(round(rng.normal(level, 8.0)), 1, 127))
        notes.append(Note(onset, offset, _fold_into(pitch + shift, low, high), velocity))
    notes = separate_same_pitch(notes, SAME_PITCH_GAP_S, MIN_NOTE_S)
    notes = [note for note in notes if note.offset <= duration_s]
    return Part(notes, name=instrument_name(program), program=program, family=family_of(program))


def _random_score(rng: np.random.Generator, n_parts: int, files: list[str]) -> tuple[str, list]:
    """A random usable score with >= n_parts parts; collections weighted by sqrt(file count)."""
    by_collection: dict[str, list[str]] = {}
    for path in files:
        by_collection.setdefault(path.split("/", 1)[0], []).append(path)
    names = sorted(by_collection)
    weights = np.sqrt([len(by_collection[name]) for name in names])
    for _ in range(50):
        collection = names[rng.choice(len(names), p=weights / weights.sum())]
        path = str(rng.choice(by_collection[collection]))
        try:
            parts = load_score(path)
        except ValueError:  # excluded by title, or fewer than two parts
            continue
        if len(parts) >= n_parts:
            return path, parts
    raise RuntimeError(f"no usable score with {n_parts} parts found")


def score_piece(
    rng: np.random.Generator,
    programs: list[int],
    duration_s: float,
    files: list[str] | None = None,
) -> Piece:
    """An excerpt of about ``duration_s`` seconds of a random corpus score, one part per program.

    Tempo 60..140 beats per minute with gentle variation, one random transposition of up to
    MAX_TRANSPOSE semitones, each part moved by octaves into its program's range. ``files``
    restricts the choice (default: list_score_files()).
    """
    path, parts = _random_score(rng, len(programs), files or list_score_files())
    parts = _assign_parts(rng, parts, programs)
    beat = _beat_length(parts)
    seconds = _time_map(rng, 60.0 / rng.uniform(*TEMPO_RANGE) / beat)
    end = max(q + length for part in parts for q, length, _ in part)
    needed = duration_s / seconds(1.0)
    onsets = sorted({q for part in parts for q, _, _ in part})
    starts = [q for q in onsets if q <= end - needed] or onsets[:1]
    start = float(rng.choice(starts))
    transpose = int(rng.integers(-MAX_TRANSPOSE, MAX_TRANSPOSE + 1))
    performed = [
        _perform_excerpt(rng, part, program, start, seconds, duration_s, transpose)
        for part, program in zip(parts, programs)
    ]
    return Piece(performed, source=f"score:{path}")
