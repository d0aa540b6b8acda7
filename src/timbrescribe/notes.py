"""Notes and tracks: the common currency between decoder, clustering, data engine, evaluation, export."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Note:
    """One note: times in seconds, MIDI pitch, MIDI velocity (1..127)."""

    onset: float
    offset: float
    pitch: int
    velocity: int = 100

    def __post_init__(self):
        if not self.offset > self.onset:
            raise ValueError(f"note offset {self.offset} must be after onset {self.onset}")


@dataclass
class Track:
    """Notes of one instrument (or one cluster of notes). ``confidence``: for a track found by
    clustering, the mean over its notes of how clearly each belongs to it (0..1); None otherwise."""

    name: str
    notes: list[Note] = field(default_factory=list)
    program: int = 0
    is_drum: bool = False
    confidence: float | None = None
