"""ONNX export of the agnostic and separation models for chunked onnxruntime inference (see
inference.py).

Two graphs per model, both with dynamic batch and length:
- network: audio (B, n) float32 at 22050 Hz + energy_moments (B, 3) = [frame count, Σ E, Σ E²]
  of the whole file's per-frame CQT energies -> onset, frame probabilities (B, 84, n_frames(n)),
  and for the separation model embedding (B, 12, 84, n_frames(n)) unit vectors.
  The guarded statistic log(s) is computed inside the graph from the moments, so its formula
  exists once (frontend.log_scale_from_moments) and chunks only need to add their moments.
- energy: audio (B, n) -> per-frame energy (B, n_frames(n)): the CQT alone, cheap for pass 1.
Beside them, ``<name>.card.json`` (model_card) states what another runtime (the browser) needs to
run them: rates, pitch grid, chunking context, input/output names and where the tuned settings are.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from timbrescribe.frontend import CQT, frame_energy, log_scale_from_moments
from timbrescribe.inference import (
    CONTEXT_FRAMES, CONTEXT_METADATA_KEY, FRONT_END_REACH_FRAMES, NOTE_BRANCH_REACH_FRAMES, energy_model_path,
)
from timbrescribe.model import AgnosticModel, SeparationModel
from timbrescribe.outputs import atomic_path

_EXAMPLE_SAMPLES = 30000


class _NetworkGraph(nn.Module):
    def __init__(self, model: AgnosticModel | SeparationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, energy_moments: torch.Tensor):
        return self.model(audio, log_scale_from_moments(energy_moments))


class _EnergyGraph(nn.Module):
    def __init__(self, cqt: CQT) -> None:
        super().__init__()
        self.cqt = cqt

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return frame_energy(self.cqt(audio))


def export_agnostic_onnx(model: AgnosticModel, path: str | Path) -> tuple[Path, Path]:
    """Write the network graph to ``path`` and the energy graph beside it (energy_model_path);
    returns both paths. The model is exported in eval mode and left in the mode it had."""
    return _export(model, model.frontend.cqt, ["onset", "frame"], path)


def export_separation_onnx(model: SeparationModel, path: str | Path) -> tuple[Path, Path]:
    """Like export_agnostic_onnx, with a third output ``embedding`` from the timbre branch."""
    return _export(model, model.agnostic.frontend.cqt, ["onset", "frame", "embedding"], path)


def context_frames(model: AgnosticModel | SeparationModel) -> int:
    """Frames of context the chunks of ``model``'s graph need on each side: inference.CONTEXT_FRAMES,
    or for a note branch with time contexts, exactly what its frames reach (the front end, the
    note branch's convolutions and the time contexts: 126 with the frame context, 154 with the
    onset context too; both cover a timbre branch)."""
    reach = (model.agnostic if isinstance(model, SeparationModel) else model).note_branch.time_reach()
    return FRONT_END_REACH_FRAMES + NOTE_BRANCH_REACH_FRAMES + reach if reach else CONTEXT_FRAMES


def _export(model: nn.Module, cqt: CQT, outputs: list[str], path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    context = context_frames(model)
    was_training = model.training
    model.eval()
    try:
        # A batch of two: an example batch of one lets the exporter specialise the batch size to 1.
        audio = torch.zeros(2, _EXAMPLE_SAMPLES)
        moments = torch.ones(2, 3)
        network = _NetworkGraph(model).eval()
        _write_onnx(network, (audio, moments), ["audio", "energy_moments"], outputs, path,
                    {CONTEXT_METADATA_KEY: str(context)})
        energy_path = energy_model_path(path)
        _write_onnx(_EnergyGraph(cqt).eval(), (audio,), ["audio"], ["energy"], energy_path)
    finally:
        model.train(was_training)
    write_model_card(path, outputs, context)
    return path, energy_path


def write_model_card(network_path: str | Path, outputs: list[str], context: int = CONTEXT_FRAMES) -> Path:
    """Write model_card(network_path, outputs, context) beside the graph (card_path_for); returns its path."""
    card_path = card_path_for(network_path)
    with atomic_path(card_path) as temporary:
        temporary.write_text(json.dumps(model_card(network_path, outputs, context), indent=1) + "\n")
    return card_path


def card_path_for(network_path: str | Path) -> Path:
    """``<name>.card.json`` beside ``<name>.onnx``."""
    return Path(network_path).with_suffix(".card.json")


def model_card(network_path: str | Path, outputs: list[str], context: int = CONTEXT_FRAMES) -> dict:
    """The constants and names a runtime needs to run an exported model the way inference.py does
    (``context``: its chunks' context frames, context_frames(model))."""
    from timbrescribe import constants
    from timbrescribe.inference import (
        CHUNK_FRAME_MULTIPLE, DEFAULT_CHUNK_SECONDS, SEPARATION_CHUNK_SECONDS, SHORT_FILE_CHUNK_SECONDS, SHORT_FILE_SECONDS,
    )
    from timbrescribe.transcription import CELL_FLOOR_RATIO, TUNED_CLUSTERING_PATH, tuned_decoder_path

    network_path = Path(network_path)
    card = {
        "format": "timbrescribe-model-card",
        "version": 1,
        "network": network_path.name,
        "energy": energy_model_path(network_path).name,
        "inputs": {"audio": "float32 (1, n) mono at sample_rate",
                   "energy_moments": "float32 (1, 3): [frame count, sum E, sum E^2] of the whole file"},
        "outputs": outputs,
        "sample_rate": constants.SAMPLE_RATE,
        "hop": constants.HOP,
        "midi_min": constants.MIDI_MIN,
        "n_pitches": constants.N_PITCHES,
        "context_frames": context,
        "chunk_frame_multiple": CHUNK_FRAME_MULTIPLE,
        "chunk_seconds": SEPARATION_CHUNK_SECONDS if "embedding" in outputs else DEFAULT_CHUNK_SECONDS,
        "short_file_seconds": SHORT_FILE_SECONDS,
        "short_file_chunk_seconds": SHORT_FILE_CHUNK_SECONDS,
        "decoder_settings": tuned_decoder_path("embedding" in outputs).name,
    }
    if "embedding" in outputs:
        card |= {"embedding_dim": constants.EMBEDDING_DIM, "clustering_settings": TUNED_CLUSTERING_PATH.name,
                 "cell_floor_ratio": CELL_FLOOR_RATIO}
    return card


def _write_onnx(
    module: nn.Module, args: tuple, input_names: list[str], output_names: list[str], path: Path,
    metadata: dict[str, str] | None = None,
) -> None:
    """Export with dynamic batch and sample count, add ``metadata`` to the graph's metadata, check,
    and write atomically (outputs.atomic_path)."""
    import onnx

    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=1)
    dynamic = {"audio": {0: batch, 1: samples}}
    if "energy_moments" in input_names:
        dynamic["energy_moments"] = {0: batch}
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    if metadata:
        onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_bytes(proto.SerializeToString())
