"""Libraries that print to stdout when imported, imported without it.

pyfluidsynth (which pretty_midi imports for synthesis) prints where it found libfluidsynth on
stdout at import time whenever the ``CI`` environment variable is set. That line would corrupt
output that programs read, such as ``timbrescribe transcribe --log-json``; so these imports hide the
variable while the module loads (it is read only then), and change nothing else.
"""
from __future__ import annotations

import importlib
import os
import threading
from types import ModuleType

_LOCK = threading.Lock()


def _import_without_ci(name: str) -> ModuleType:
    with _LOCK:
        saved = os.environ.pop("CI", None)
        try:
            return importlib.import_module(name)
        finally:
            if saved is not None:
                os.environ["CI"] = saved


def pretty_midi() -> ModuleType:
    """The ``pretty_midi`` module."""
    return _import_without_ci("pretty_midi")


def fluidsynth() -> ModuleType:
    """The ``fluidsynth`` (pyfluidsynth) module."""
    return _import_without_ci("fluidsynth")
