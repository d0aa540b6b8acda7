"""Transcription systems the harness can score.

A :class:`System` turns audio into tracks. :data:`SYSTEM_FACTORIES` maps the names accepted by
``timbrescribe evaluate --system NAME`` to factories taking the number of CPU threads and a model
path (None: the system's default model; a system that cannot load another one refuses a path).

:class:`MidiDirectorySystem` is the other source of predictions: MIDI files already written, one per
excerpt (``<piece>.mid`` for a full mix, ``<piece>__<part>+<part>.mid`` for a sub-mix, see
:mod:`timbrescribe.evaluation.layout`), one track per predicted part; drum tracks are ignored.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from timbrescribe.errors import UserError
from timbrescribe.notes import Note, Track

if TYPE_CHECKING:
    import numpy as np

BASIC_PITCH_INSTALL_HINT = (
    "Basic Pitch is not installed; install it with `bash scripts/install_baseline.sh` "
    "(pip install --no-deps basic-pitch==0.4.0 plus librosa, resampy<0.4.3, scikit-learn, onnxruntime)"
)


class System(ABC):
    """Audio in, tracks out. ``name`` identifies the system in reports."""

    name: str

    @abstractmethod
    def predict(self, audio: np.ndarray, sr: int, n_tracks: int | None = None) -> list[Track]:
        """Transcribe mono float32 audio sampled at ``sr`` Hz into tracks of notes. ``n_tracks``:
        the number of instruments when known (oracle K); None: the system decides."""


class MidiDirectorySystem:
    """Predictions read from ``<directory>/<excerpt>.mid`` instead of computed from audio."""

    name = "midi-directory"

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise UserError(f"{self.directory}: no such predictions directory")

    def path_for(self, excerpt_name: str) -> Path:
        return self.directory / f"{excerpt_name}.mid"

    def check_complete(self, excerpt_names: list[str]) -> None:
        """A UserError naming the missing files when some excerpt has no prediction."""
        missing = [self.path_for(name).name for name in excerpt_names if not self.path_for(name).is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise UserError(f"{self.directory}: no prediction for {len(missing)} excerpt(s): {shown}")

    def read(self, excerpt_name: str) -> list[Track]:
        """The pitched tracks predicted for one excerpt."""
        from timbrescribe.evaluation.layout import midi_tracks

        path = self.path_for(excerpt_name)
        if not path.is_file():
            raise UserError(f"{path}: no prediction for excerpt {excerpt_name!r}")
        return [track for track in midi_tracks(path) if not track.is_drum]


class BasicPitchSystem(System):
    """Spotify's Basic Pitch 0.4.0 (ICASSP 2022 model) on onnxruntime with its default thresholds.
    Timbre-agnostic: it returns one track holding every note, whatever ``n_tracks`` says."""

    name = "basic-pitch"

    def __init__(self, threads: int = 1):
        inference, model_path = _import_basic_pitch()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inference = inference
        self._model = _onnx_model(inference.Model, session)

    def predict(self, audio: np.ndarray, sr: int, n_tracks: int | None = None) -> list[Track]:
        import soundfile

        from timbrescribe.audio import prepare_audio
        from timbrescribe.constants import SAMPLE_RATE

        # Basic Pitch reads a file with librosa at 22050 Hz, our SAMPLE_RATE: a float WAV at that rate
        # reaches its model unchanged (no second resampling, no quantisation).
        audio = prepare_audio(audio, sr)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "audio.wav"
            soundfile.write(str(path), audio, SAMPLE_RATE, subtype="FLOAT")
            with contextlib.redirect_stdout(io.StringIO()):  # it prints one line per file
                _, _, events = self._inference.predict(path, self._model)
        notes = [
            Note(float(start), float(end), int(pitch), min(127, max(1, round(127 * amplitude))))
            for start, end, pitch, amplitude, _ in events
            if end > start
        ]
        return [Track(self.name, sorted(notes, key=lambda n: (n.onset, n.pitch)))]


class TimbrescribeNotesSystem(System):
    """Our timbre-agnostic note model (onnxruntime) and decoder: one track holding every note,
    whatever ``n_tracks`` says. ``model_path``: an exported network graph (None: the weights
    shipped in the package); ``decoder``: its decoder settings (None: the package's)."""

    name = "timbrescribe-notes"

    def __init__(self, threads: int = 1, model_path: str | Path | None = None, decoder=None):
        from timbrescribe.inference import AgnosticSession

        self._session = AgnosticSession(model_path=model_path, threads=threads)
        self._decoder = decoder

    def predict(self, audio: np.ndarray, sr: int, n_tracks: int | None = None) -> list[Track]:
        from timbrescribe.transcription import transcribe

        return transcribe(audio, sr, instruments=1, session=self._session, decoder=self._decoder).tracks


class TimbrescribeSystem(System):
    """timbrescribe as shipped: notes separated into one track per instrument by the timbre
    branch, ``n_tracks`` of them when given, else as many as it estimates. ``model_path``: an
    exported separation graph (None: the weights shipped in the package)."""

    name = "timbrescribe"

    def __init__(self, threads: int = 1, model_path: str | Path | None = None):
        from timbrescribe.inference import SeparationSession

        self._session = SeparationSession(model_path=model_path, threads=threads)

    def predict(self, audio: np.ndarray, sr: int, n_tracks: int | None = None) -> list[Track]:
        from timbrescribe.transcription import transcribe

        return transcribe(audio, sr, instruments=n_tracks or "auto", session=self._session).tracks


def _import_basic_pitch():
    """basic_pitch.inference and the path of its ONNX model; a UserError when it is missing."""
    try:
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # it warns at import about the absent TensorFlow backends
        try:
            import basic_pitch
            from basic_pitch import inference
        finally:
            logging.disable(previous)
    except ImportError as err:
        raise UserError(f"{BASIC_PITCH_INSTALL_HINT} ({err})") from None
    if not basic_pitch.ONNX_PRESENT:
        raise UserError(f"{BASIC_PITCH_INSTALL_HINT} (onnxruntime is missing)")
    return inference, basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)


def _onnx_model(model_class, session):
    """A basic_pitch Model running ``session``: its own constructor cannot set thread counts."""
    model = model_class.__new__(model_class)
    model.model_type = model_class.MODEL_TYPES.ONNX
    model.model = session
    return model


def _basic_pitch(threads: int, model_path: str | Path | None) -> System:
    if model_path is not None:
        raise UserError("basic-pitch runs the model of its package: it takes no model path")
    return BasicPitchSystem(threads)


def _descriptor_baseline(threads: int, model_path: str | Path | None) -> System:
    from timbrescribe.evaluation.descriptor_baseline import DescriptorBaselineSystem

    return DescriptorBaselineSystem(threads, model_path)


# name -> factory(threads, model_path) for `timbrescribe evaluate --system NAME`.
SYSTEM_FACTORIES: dict[str, Callable[[int, str | Path | None], System]] = {
    BasicPitchSystem.name: _basic_pitch,
    TimbrescribeSystem.name: TimbrescribeSystem,
    TimbrescribeNotesSystem.name: TimbrescribeNotesSystem,
    "descriptor-baseline": _descriptor_baseline,
}


def make_system(name: str, threads: int, model_path: str | Path | None = None) -> System:
    """Build a registered system, with its own model unless ``model_path`` names another; an
    unknown name is a UserError listing the known ones."""
    if name not in SYSTEM_FACTORIES:
        raise UserError(f"unknown system {name!r}; known systems: {', '.join(sorted(SYSTEM_FACTORIES))}")
    return SYSTEM_FACTORIES[name](threads, model_path)
