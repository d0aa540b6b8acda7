"""What the synthetic data engine passes between its stages.

music (composer / scores) -> Piece of Parts (notes only)
expression                -> Parts gain control events and performed note times
rendering                 -> stem audio per Part, mixed; labels from the performed notes
"""
from __future__ import annotations

from dataclasses import dataclass, field

from timbrescribe.notes import Note


@dataclass(frozen=True)
class ControlEvent:
    """A MIDI control event of one part: kind 'cc' (number 0..127, value 0..127) or
    'pitchbend' (number ignored, value -8192..8191)."""

    time: float
    kind: str
    number: int
    value: int


@dataclass
class Part:
    """One instrument's line. ``notes`` are the ground truth as performed (after jitter/legato)."""

    notes: list[Note]
    name: str = "part"
    program: int = 0  # General MIDI program 0..127
    family: str = ""  # instrument family name (see data/instruments.py)
    controls: list[ControlEvent] = field(default_factory=list)


@dataclass
class Piece:
    """Several parts meant to sound together; ``source`` says where the music came from."""

    parts: list[Part]
    source: str = ""

    @property
    def duration(self) -> float:
        return max((n.offset for p in self.parts for n in p.notes), default=0.0)
