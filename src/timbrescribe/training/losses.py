"""Training losses (DESIGN.md §4): the note branch's alpha-weighted binary focal loss on logits and
the timbre branch's multi-positive InfoNCE over sampled cells."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from timbrescribe.constants import N_PITCHES

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


INFO_NCE_TEMPERATURE = 0.15


def single_owner_cells(part_frames: torch.Tensor, part_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells of one clip played by exactly one part: (pitch rows, frames) and that part's index.

    ``part_frames`` (parts, pitches, T) per-part frame targets, ``part_mask`` (parts,) which parts
    exist. Cells where two parts sound the same pitch have no single owner and are left out."""
    active = part_frames * part_mask.to(part_frames.dtype)[:, None, None] > 0.5
    single = active.sum(dim=0) == 1
    rows, frames = torch.nonzero(single, as_tuple=True)
    owners = active[:, rows, frames].to(torch.int64).argmax(dim=0)
    return torch.stack([rows, frames]), owners


def info_nce_from_labels(vectors: torch.Tensor, labels: torch.Tensor, n_anchors: int,
                         temperature: float = INFO_NCE_TEMPERATURE) -> torch.Tensor | None:
    """Multi-positive InfoNCE of unit vectors (m, d) with part labels (m,): the first ``n_anchors``
    rows are anchors, all m rows candidates. Per anchor: minus the mean over its positives (other
    rows of its label) of log softmax over all other rows of sim / temperature; averaged over the
    anchors that have a positive. Memory is n_anchors x m. None when no anchor has a positive."""
    anchors = min(n_anchors, len(vectors))
    similarity = vectors[:anchors] @ vectors.T / temperature  # (a, m)
    self_mask = torch.zeros_like(similarity, dtype=torch.bool)
    self_mask[torch.arange(anchors), torch.arange(anchors)] = True
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positive = (labels[:anchors, None] == labels[None, :]) & ~self_mask
    counts = positive.sum(dim=1)
    usable = counts > 0
    if not usable.any():
        return None
    per_anchor = -(log_prob.masked_fill(~positive, 0.0)).sum(dim=1)[usable] / counts[usable]
    return per_anchor.mean()


def _draw_weights(owners: torch.Tensor, rows: torch.Tensor, register_balance: bool) -> torch.Tensor:
    """Sampling weight of each single-owner cell: every part gets the same total weight, shared
    equally among its cells, or with ``register_balance`` first among its octaves (pitch rows
    // 12) and then among the cells of each octave."""
    if not register_balance:
        return 1.0 / torch.bincount(owners).to(torch.float32)[owners]
    octaves = N_PITCHES // 12 + 1
    group = owners * octaves + rows // 12
    per_group = torch.bincount(group).to(torch.float32)
    octaves_per_part = torch.bincount(torch.unique(group) // octaves).to(torch.float32)
    return 1.0 / (per_group[group] * octaves_per_part[owners])


def timbre_info_nce(
    embeddings: torch.Tensor,
    part_frames: torch.Tensor,
    part_mask: torch.Tensor,
    n_anchors: int = 256,
    n_candidates: int = 1024,
    temperature: float = INFO_NCE_TEMPERATURE,
    generator: torch.Generator | None = None,
    register_balance: bool = False,
) -> torch.Tensor:
    """Mean multi-positive InfoNCE over the clips of a batch (DESIGN.md §4).

    ``embeddings`` (B, d, pitches, T) unit vectors, ``part_frames`` (B, parts, pitches, T),
    ``part_mask`` (B, parts). Per clip, up to ``n_candidates`` single-owner cells are drawn with
    equal total weight per part (a quiet part with few notes counts as much as a busy one); the
    first ``n_anchors`` of them are anchors. With ``register_balance`` each part's weight is also
    shared equally among the octaves its cells lie in, so that a part's rare low or high notes are
    drawn as often as its usual register and meet the rest of the part as positives (an
    instrument must not split by register). Positives share the anchor's part. Clips with fewer
    than two sounding parts carry no contrast and are skipped; zero (with a gradient path) when
    no clip qualifies."""
    losses = []
    for clip in range(embeddings.shape[0]):
        cells, owners = single_owner_cells(part_frames[clip], part_mask[clip])
        if owners.numel() < 2 or owners.unique().numel() < 2:
            continue
        weights = _draw_weights(owners, cells[0], register_balance)
        chosen = torch.multinomial(weights, min(n_candidates, owners.numel()), replacement=False,
                                   generator=generator)
        vectors = embeddings[clip][:, cells[0, chosen], cells[1, chosen]].T.float()
        loss = info_nce_from_labels(vectors, owners[chosen], n_anchors, temperature)
        if loss is not None:
            losses.append(loss)
    if not losses:
        return embeddings.sum() * 0.0
    return torch.stack(losses).mean()
