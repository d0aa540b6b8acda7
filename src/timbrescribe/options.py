"""Checks of the options that the command line and the Python API share, made the same way for
both: the thread count and the model files (readable ONNX graphs with the inputs and outputs the
runtime expects). Everything here raises UserError, before any audio is read.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from timbrescribe.constants import N_PITCHES, n_frames
from timbrescribe.errors import UserError
from timbrescribe.inference import AgnosticSession, SeparationSession, energy_model_path

# Inputs of the network graph and of the energy graph (see inference.py).
NETWORK_INPUTS = {"audio", "energy_moments"}
ENERGY_INPUTS = {"audio"}
# Samples of silence run through a new session to prove the graphs work together.
PROBE_SAMPLES = 4096


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_count(name: str, value: object, upper: int | None = None, why: str = "") -> int:
    """``value`` as an int, or UserError unless it is a whole number from 1 to ``upper`` (no
    upper bound when None); a bool is not a count. ``why`` follows the bound in the message."""
    bound = f"from 1 to {upper}{why}" if upper is not None else "of at least 1"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1 or (
        upper is not None and value > upper
    ):
        raise UserError(f"{name} must be a whole number {bound}, got {value!r}")
    return int(value)


def check_threads(threads: object) -> int | None:
    """None (onnxruntime's choice) or a thread count from 1 to 4 x the usable cores."""
    if threads is None:
        return None
    cores = usable_cores()
    return check_count("threads", threads, 4 * cores, f" (4 x the {cores} cores here)")


def session_kind(instruments: int | None) -> type[AgnosticSession]:
    """The session class for a number of instruments (1: the note model alone)."""
    return AgnosticSession if instruments == 1 else SeparationSession


def model_files(instruments: int | None, model_path: str | os.PathLike | None) -> tuple[Path, Path]:
    """(network graph, energy graph) paths of the model that ``instruments`` and ``model_path`` select."""
    network = Path(model_path) if model_path is not None else session_kind(instruments).default_model_path
    return network, energy_model_path(network)


def model_digest(instruments: int | None, model_path: str | os.PathLike | None) -> str:
    """SHA-256 of the model's two graph files together: which model made a transcription."""
    digest = hashlib.sha256()
    for path in model_files(instruments, model_path):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def open_session(
    instruments: int | None, model_path: str | os.PathLike | None = None, threads: int | None = None
) -> AgnosticSession:
    """A checked inference session for ``instruments`` (1: the note model) from ``model_path``
    (None: the shipped model): UserError, naming the file, when a graph is missing, is not ONNX,
    has other inputs or outputs than a timbrescribe model, or does not run on a little silence."""
    threads = check_threads(threads)
    network, energy = model_files(instruments, model_path)
    try:
        session = session_kind(instruments)(model_path=model_path, threads=threads)
    except UserError:
        raise
    except Exception as err:  # onnxruntime's load errors have no common public base class
        raise UserError(f"{network}: cannot be loaded as an ONNX model with {energy.name} ({first_line(err)})") from None
    for path, graph, expected in ((network, session.network, NETWORK_INPUTS), (energy, session.energy, ENERGY_INPUTS)):
        names = {node.name for node in graph.get_inputs()}
        if names != expected:
            raise UserError(f"{path}: not a timbrescribe model graph: inputs {sorted(names)}, expected {sorted(expected)}")
    try:
        onset, frame = session.activations(np.zeros(PROBE_SAMPLES, np.float32))
    except Exception as err:  # shapes or types the runtime cannot use
        raise UserError(f"{network}: the model does not run on audio ({first_line(err)})") from None
    expected_shape = (N_PITCHES, n_frames(PROBE_SAMPLES))
    if onset.shape != expected_shape or frame.shape != expected_shape:
        raise UserError(f"{network}: not a timbrescribe model: onset and frame maps {onset.shape} and "
                        f"{frame.shape}, expected {expected_shape}")
    return session


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for errors
    whose messages run on (onnxruntime's, Ray's)."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
