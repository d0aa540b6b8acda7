import math

import pytest
import torch
import torch.nn.functional as F

from timbrescribe.training.losses import (
    FRAME_ALPHA,
    ONSET_ALPHA,
    agnostic_targets,
    focal_loss,
    note_losses,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_focal_loss_matches_hand_computation():
    logits = [0.0, 2.0, -1.0, 3.0]
    targets = [1.0, 0.0, 1.0, 1.0]
    alpha = 0.25
    expected = []
    for x, y in zip(logits, targets):
        p = _sigmoid(x)
        if y == 1.0:
            expected.append(-alpha * (1 - p) * math.log(p))
        else:
            expected.append(-(1 - alpha) * p * math.log(1 - p))
    loss = focal_loss(torch.tensor(logits), torch.tensor(targets), alpha=alpha, gamma=1.0)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-6)
    # spot-check one term by value: x=0, y=1 gives alpha * 0.5 * ln 2
    single = focal_loss(torch.tensor([0.0]), torch.tensor([1.0]), alpha=alpha)
    assert single.item() == pytest.approx(0.25 * 0.5 * math.log(2.0), rel=1e-6)


def test_gamma_zero_is_alpha_weighted_bce():
    torch.manual_seed(0)
    logits = torch.randn(3, 84, 20) * 4
    targets = (torch.rand(3, 84, 20) < 0.1).float()
    alpha = 0.2
    weights = alpha * targets + (1 - alpha) * (1 - targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets, weight=weights)
    assert focal_loss(logits, targets, alpha=alpha, gamma=0.0).item() == pytest.approx(bce.item(), rel=1e-5)


def test_focal_loss_downweights_easy_examples():
    easy = focal_loss(torch.tensor([4.0]), torch.tensor([1.0]), alpha=0.5, gamma=1.0)
    easy_bce = focal_loss(torch.tensor([4.0]), torch.tensor([1.0]), alpha=0.5, gamma=0.0)
    assert easy.item() < 0.05 * easy_bce.item()


def test_gradients_finite_for_extreme_logits():
    logits = torch.tensor([50.0, -50.0, 50.0, -50.0], requires_grad=True)
    targets = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = focal_loss(logits, targets, alpha=0.2)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # the two confidently wrong cells cost ~alpha*50 and (1-alpha)*50; the right ones ~0
    assert loss.item() == pytest.approx((0.2 * 50 + 0.8 * 50) / 4, rel=1e-4)
    # wrong cells push back with full strength, right ones are left alone
    assert logits.grad[2].item() > 0 and logits.grad[3].item() < 0
    assert abs(logits.grad[0].item()) < 1e-12 and abs(logits.grad[1].item()) < 1e-12


def test_agnostic_targets_take_max_over_present_parts():
    per_part = torch.zeros(1, 3, 84, 5)
    per_part[0, 0, 10, 1] = 1.0
    per_part[0, 1, 20, 2] = 1.0
    per_part[0, 2, 30, 3] = 1.0  # this part is masked out (padding)
    mask = torch.tensor([[True, True, False]])
    merged = agnostic_targets(per_part, mask)
    assert merged.shape == (1, 84, 5)
    assert merged[0, 10, 1] == 1.0 and merged[0, 20, 2] == 1.0
    assert merged[0, 30, 3] == 0.0
    assert merged.sum() == 2.0


def test_note_losses_use_head_specific_alphas():
    logits = torch.zeros(1, 84, 4)
    target = torch.ones(1, 84, 4)
    losses = note_losses(logits, logits, target, target)
    assert losses["onset"].item() == pytest.approx(ONSET_ALPHA * 0.5 * math.log(2.0), rel=1e-6)
    assert losses["frame"].item() == pytest.approx(FRAME_ALPHA * 0.5 * math.log(2.0), rel=1e-6)
    assert losses["total"].item() == pytest.approx(losses["onset"].item() + losses["frame"].item())


# ---------------------------------------------------------------- timbre InfoNCE

def _two_part_clip(t: int = 40):
    """Per-part frame rolls (2, 84, t): part 0 on pitch rows 10..12, part 1 on rows 40..42."""
    rolls = torch.zeros(2, 84, t)
    rolls[0, 10:13] = 1.0
    rolls[1, 40:43] = 1.0
    return rolls


def _embeddings_for(rolls: torch.Tensor, directions: list[int]) -> torch.Tensor:
    """(1, 12, 84, t) unit embeddings: cells of part p point along axis directions[p]."""
    embedding = torch.zeros(1, 12, 84, rolls.shape[-1])
    embedding[0, 11] = 1.0  # background cells
    for part, axis in enumerate(directions):
        on = rolls[part] > 0
        embedding[0, :, on] = 0.0
        embedding[0, axis, on] = 1.0
    return embedding


def test_info_nce_is_low_for_separated_parts_and_high_for_swapped_labels():
    from timbrescribe.training.losses import info_nce_from_labels, timbre_info_nce

    rolls = _two_part_clip()
    mask = torch.tensor([[True, True]])
    separated = timbre_info_nce(_embeddings_for(rolls, [0, 1]), rolls[None], mask, 64, 200)
    merged = timbre_info_nce(_embeddings_for(rolls, [0, 0]), rolls[None], mask, 64, 200)
    assert separated < merged
    # 100 candidates per part: an anchor has 99 positives, so the floor is log(99)
    assert separated.item() == pytest.approx(math.log(99), abs=0.05)
    labels = torch.arange(200) % 2
    vectors = torch.nn.functional.one_hot(labels, 12).float()
    right = info_nce_from_labels(vectors, labels, 64)
    swapped = info_nce_from_labels(vectors, 1 - labels[torch.randperm(200, generator=torch.Generator().manual_seed(0))], 64)
    assert right < swapped - 1.0


def test_info_nce_skips_clips_without_contrast_and_keeps_a_gradient_path():
    from timbrescribe.training.losses import timbre_info_nce

    rolls = _two_part_clip()
    embedding = _embeddings_for(rolls, [0, 1]).requires_grad_()
    loss = timbre_info_nce(embedding, rolls[None], torch.tensor([[True, False]]))
    assert loss.item() == 0.0
    loss.backward()
    assert embedding.grad is not None


def test_info_nce_memory_is_bounded_by_anchors_and_candidates():
    from timbrescribe.training.losses import single_owner_cells, timbre_info_nce

    rolls = torch.zeros(2, 84, 2000)
    rolls[0, :40] = 1.0
    rolls[1, 40:] = 1.0
    rolls[1, 5, :10] = 1.0  # a shared cell has no single owner
    cells, owners = single_owner_cells(rolls, torch.tensor([True, True]))
    assert cells.shape[1] == 84 * 2000 - 10 and set(owners.tolist()) == {0, 1}
    embedding = torch.nn.functional.normalize(torch.randn(1, 12, 84, 2000), dim=1)
    # 168,000 cells: a full N x N similarity would need 113 GB; the sampled one is 64 x 512
    loss = timbre_info_nce(embedding, rolls[None], torch.tensor([[True, True]]), 64, 512)
    assert torch.isfinite(loss)


def test_register_balance_draws_each_octave_of_a_part_equally():
    from timbrescribe.training.losses import _draw_weights

    # part 0: 900 cells in octave 2 (rows 24-35), 100 in octave 5 (rows 60-71); part 1: 500 cells in one octave
    owners = torch.tensor([0] * 1000 + [1] * 500)
    rows = torch.tensor([30] * 900 + [65] * 100 + [40] * 500)
    for balance, low_share in ((False, 0.9), (True, 0.5)):
        weights = _draw_weights(owners, rows, balance)
        part_totals = [weights[owners == p].sum().item() for p in (0, 1)]
        assert part_totals == pytest.approx([1.0, 1.0])  # parts weigh the same either way
        assert weights[:900].sum().item() == pytest.approx(low_share)
