"""The timbre-agnostic note model (DESIGN.md §3): front end + note branch -> onset and frame maps.

Tensor axes are (batch, channel, frequency, time). Audio in, (B, 84, T) maps out for MIDI 24..107.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from timbrescribe.constants import N_HARMONICS
from timbrescribe.errors import UserError
from timbrescribe.frontend import Frontend, harmonic_stack

# Initial scalar affine: maps the normalised log power (≈ -20 for the noise floor .. 0 for the
# loudest bins) to ≈ 0 .. 1, so the zero fill of harmonic stacking reads as "quiet".
AFFINE_SCALE_INIT = 0.05
AFFINE_BIAS_INIT = 1.0


def _conv_bn(c_in: int, c_out: int, kernel: tuple[int, int], **conv_args) -> nn.Sequential:
    """Convolution without bias (the batch norm supplies it) followed by batch norm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, bias=False, **conv_args), nn.BatchNorm2d(c_out))


class NoteBranch(nn.Module):
    """Harmonic stack (B, 8, 252, T) -> (onset logits, note logits), each (B, 84, T).

    The stride-3 heads put output row k on stacked bin 3k+1 (MIDI 24+k): a kernel of odd height h
    centred there starts at 3k+1-h//2, i.e. symmetric frequency padding h//2 - 1, giving 84 rows.
    """

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Sequential(_conv_bn(N_HARMONICS, 16, (5, 5), padding=(2, 2)), nn.LeakyReLU(0.01))
        # 25 taps dilated by 3 bins span ±36 bins: one octave each way.
        self.octave_context = _conv_bn(16, N_HARMONICS, (25, 3), padding=(36, 1), dilation=(3, 1))
        self.features = nn.Sequential(_conv_bn(N_HARMONICS, 16, (5, 5), padding=(2, 2)), nn.ReLU())
        self.note_head = nn.Conv2d(16, 1, (5, 5), stride=(3, 1), padding=(2 - 1, 2))
        self.onset_features = nn.Sequential(
            _conv_bn(16, 7, (7, 3), stride=(3, 1), padding=(3 - 1, 1)), nn.ReLU()
        )
        self.onset_head = nn.Conv2d(8, 1, (3, 5), padding=(1, 2))

    def forward(self, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.relu(self.octave_context(self.expand(stacked)) + stacked)
        hidden = self.features(hidden)
        note_logits = self.note_head(hidden)
        onset_input = torch.cat([self.onset_features(hidden), torch.sigmoid(note_logits)], dim=1)
        onset_logits = self.onset_head(onset_input)
        return onset_logits.squeeze(1), note_logits.squeeze(1)


class AgnosticModel(nn.Module):
    """Audio (B, N) at 22050 Hz -> onset and frame maps (B, 84, n_frames(N)).

    ``log_scale`` (B,) is the energy statistic of the whole file (frontend.log_scale); when None
    each clip uses its own. The CQT kernels are buffers, not parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.frontend = Frontend()
        self.affine_scale = nn.Parameter(torch.tensor(AFFINE_SCALE_INIT))
        self.affine_bias = nn.Parameter(torch.tensor(AFFINE_BIAS_INIT))
        self.note_branch = NoteBranch()

    def logits(
        self, audio: torch.Tensor, log_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(onset logits, frame logits), each (B, 84, T)."""
        spectrum = self.frontend(audio, log_scale) * self.affine_scale + self.affine_bias
        return self.note_branch(harmonic_stack(spectrum.unsqueeze(1)))

    def forward(
        self, audio: torch.Tensor, log_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(onset probabilities, frame probabilities), each (B, 84, T)."""
        onset_logits, frame_logits = self.logits(audio, log_scale)
        return torch.sigmoid(onset_logits), torch.sigmoid(frame_logits)


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_agnostic_model(path: str | Path) -> AgnosticModel:
    """An AgnosticModel in eval mode with the state dict saved at ``path`` (torch.save)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model weights not found: {path}")
    model = AgnosticModel()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
