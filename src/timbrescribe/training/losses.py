"""Losses of the note branch (DESIGN.md §4): alpha-weighted binary focal loss on logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_GAMMA = 1.0
FRAME_ALPHA = 0.2  # note head: target = sustain OR onset
ONSET_ALPHA = 0.06  # onset head: target = first frame of each note


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Mean binary focal loss: -a*y*(1-p)^g*log(p) - (1-a)*(1-y)*p^g*log(1-p), with p = sigmoid(logits).

    Computed from log-sigmoids, so it stays finite (with finite gradients) for any logit.
    """
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    positive = alpha * target * torch.exp(gamma * log_not_p) * log_p
    negative = (1.0 - alpha) * (1.0 - target) * torch.exp(gamma * log_p) * log_not_p
    return -(positive + negative).mean()


def agnostic_targets(per_part: torch.Tensor, part_mask: torch.Tensor) -> torch.Tensor:
    """Collapse per-part targets (B, parts, pitches, T) to (B, pitches, T): max over the parts that exist."""
    mask = part_mask.to(per_part.dtype)[:, :, None, None]
    return (per_part * mask).amax(dim=1)


def note_losses(
    onset_logits: torch.Tensor,
    frame_logits: torch.Tensor,
    onset_target: torch.Tensor,
    frame_target: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Focal losses of both heads and their sum, as {'onset', 'frame', 'total'}."""
    onset = focal_loss(onset_logits, onset_target, ONSET_ALPHA)
    frame = focal_loss(frame_logits, frame_target, FRAME_ALPHA)
    return {"onset": onset, "frame": frame, "total": onset + frame}
