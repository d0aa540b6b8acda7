"""ONNX export of the agnostic model for chunked onnxruntime inference (see inference.py).

Two graphs, both with dynamic batch and length:
- network: audio (B, n) float32 at 22050 Hz + energy_moments (B, 3) = [frame count, Σ E, Σ E²]
  of the whole file's per-frame CQT energies -> onset, frame probabilities (B, 84, n_frames(n)).
  The guarded statistic log(s) is computed inside the graph from the moments, so its formula
  exists once (frontend.log_scale_from_moments) and chunks only need to add their moments.
- energy: audio (B, n) -> per-frame energy (B, n_frames(n)): the CQT alone, cheap for pass 1.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from timbrescribe.frontend import CQT, frame_energy, log_scale_from_moments
from timbrescribe.inference import energy_model_path
from timbrescribe.model import AgnosticModel

_EXAMPLE_SAMPLES = 30000


class _NetworkGraph(nn.Module):
    def __init__(self, model: AgnosticModel) -> None:
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
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        audio = torch.zeros(1, _EXAMPLE_SAMPLES)
        moments = torch.tensor([[1.0, 1.0, 1.0]])
        network = _NetworkGraph(model).eval()
        _write_onnx(network, (audio, moments), ["audio", "energy_moments"], ["onset", "frame"], path)
        energy_path = energy_model_path(path)
        _write_onnx(_EnergyGraph(model.frontend.cqt).eval(), (audio,), ["audio"], ["energy"], energy_path)
    finally:
        model.train(was_training)
    return path, energy_path


def _write_onnx(
    module: nn.Module, args: tuple, input_names: list[str], output_names: list[str], path: Path
) -> None:
    """Export with dynamic batch and sample count, check, and write atomically (tmp + rename)."""
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
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(proto.SerializeToString())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
