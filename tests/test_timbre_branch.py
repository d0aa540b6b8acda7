"""The timbre branch and the separation model: size, shapes, unit length, frame-local outputs."""
import pytest
import torch

from timbrescribe.constants import EMBEDDING_DIM, N_BINS, N_PITCHES, n_frames
from timbrescribe.model import (
    FrameGroupNorm,
    SeparationModel,
    TimbreBranch,
    count_trainable_parameters,
    load_timbre_branch,
)


@pytest.fixture(scope="module")
def branch():
    torch.manual_seed(0)
    return TimbreBranch().eval()


def test_trainable_parameter_count(branch):
    # DESIGN.md §3: the published branch has 25,983; the budget is 26k
    assert count_trainable_parameters(branch) == 25983 <= 26000


def test_embeddings_are_unit_vectors_on_the_semitone_grid(branch):
    with torch.no_grad():
        embedding = branch(torch.randn(2, N_BINS, 50) - 10)
    assert embedding.shape == (2, EMBEDDING_DIM, N_PITCHES, 50)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2, N_PITCHES, 50))


def test_a_frame_does_not_depend_on_distant_frames(branch):
    # every normalisation is per frame: chunked inference equals one pass
    spectrum = torch.randn(1, N_BINS, 200) - 10
    with torch.no_grad():
        whole = branch(spectrum)
        part = branch(spectrum[..., 60:200])
    torch.testing.assert_close(part[..., 20:120], whole[..., 80:180], atol=1e-5, rtol=1e-4)


def test_at_time_stride_two_every_other_frame_is_computed_and_held():
    torch.manual_seed(1)
    branch = TimbreBranch(time_stride=2).eval()
    assert count_trainable_parameters(branch) == 25983
    spectrum = torch.randn(1, N_BINS, 201) - 10
    with torch.no_grad():
        whole = branch(spectrum)
        even_start = branch(spectrum[..., 60:])
        odd_start = branch(spectrum[..., 61:])
    assert whole.shape == (1, EMBEDDING_DIM, N_PITCHES, 201)
    torch.testing.assert_close(whole[..., 1::2], whole[..., 0:-1:2])  # held for two frames
    assert not torch.allclose(whole[..., 0:-1:2], whole[..., 2::2])
    # a part starting on an even frame computes the frames the whole file computes, an odd one not
    torch.testing.assert_close(even_start[..., 40:120], whole[..., 100:180], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(odd_start[..., 39:119], whole[..., 100:180], atol=1e-3)


def test_the_time_stride_is_stored_with_the_weights(tmp_path):
    torch.save(TimbreBranch(time_stride=2).state_dict(), tmp_path / "strided.pt")
    assert load_timbre_branch(tmp_path / "strided.pt").stride == 2
    state = TimbreBranch().state_dict()
    del state["time_stride"]  # weights saved before strides existed
    torch.save(state, tmp_path / "old.pt")
    assert load_timbre_branch(tmp_path / "old.pt").stride == 1
    with pytest.raises(ValueError, match="time_stride"):
        TimbreBranch(time_stride=3)


def test_frame_group_norm_normalises_each_frame_of_each_group():
    norm = FrameGroupNorm(2, 4, bias=False)
    x = torch.randn(3, 4, 10, 7) * 5 + 2
    y = norm(x).reshape(3, 2, 20, 7)
    torch.testing.assert_close(y.mean(dim=2), torch.zeros(3, 2, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=2, unbiased=False), torch.ones(3, 2, 7), atol=1e-3, rtol=0)
    assert norm.bias is None
    with pytest.raises(ValueError, match="groups"):
        FrameGroupNorm(3, 4)


def test_separation_model_outputs(branch):
    model = SeparationModel(timbre=branch).eval()
    with torch.no_grad():
        onset, frame, embedding = model(0.1 * torch.randn(1, 30000))
    assert onset.shape == frame.shape == (1, N_PITCHES, n_frames(30000))
    assert embedding.shape == (1, EMBEDDING_DIM, N_PITCHES, n_frames(30000))


def test_gradients_reach_every_parameter(branch):
    model = TimbreBranch()
    (model(torch.randn(2, N_BINS, 30) - 10)[:, 0].sum()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_weights_load_from_state_dict_or_checkpoint(tmp_path, branch):
    torch.save(branch.state_dict(), tmp_path / "best.pt")
    torch.save({"model": branch.state_dict(), "optimizer": {}}, tmp_path / "last.pt")
    for name in ("best.pt", "last.pt"):
        loaded = load_timbre_branch(tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), branch.state_dict().values()))
