"""Settings dataclasses that live in JSON files (tuned decoder and clustering settings)."""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TypeVar

T = TypeVar("T", bound="JsonSettings")


def tuning_record_path(settings_path: str | Path) -> Path:
    """``<stem>.tuning.json`` beside a tuned settings file: how its settings were chosen."""
    settings_path = Path(settings_path)
    return settings_path.with_name(settings_path.stem + ".tuning.json")


class JsonSettings:
    """Mixin for a frozen dataclass of settings: dict and JSON file round trips. ``kind`` names
    the settings in error messages."""

    kind = "settings"

    @classmethod
    def from_dict(cls: type[T], values: dict) -> T:
        """Settings from a dict; unknown keys are an error (a typo must not pass silently)."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.kind}: {sorted(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Settings as a plain dict (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_json(cls: type[T], path: str | Path) -> T:
        """Settings read from a JSON object file; missing keys keep their defaults."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_json(self, path: str | Path) -> None:
        """Write the settings as a JSON object file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
