"""The note branch and the agnostic model: size, shapes, gradients, pitch alignment, checkpoints."""
import numpy as np
import pytest
import torch

from timbrescribe.constants import HARMONIC_SHIFTS, N_HARMONICS, N_PITCHES, N_STACKED_BINS, NOTE_LAYOUTS, n_frames
from timbrescribe.errors import UserError
from timbrescribe.frontend import frame_energy, log_scale
from timbrescribe.model import (
    AgnosticModel, NoteBranch, count_trainable_parameters, load_agnostic_model, neighbour_onsets,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AgnosticModel()


def _audio(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, n, generator=torch.Generator().manual_seed(seed))


def test_trainable_parameter_count(model):
    # note branch 18,968 (convolutions before batch norm carry no bias) + scalar affine k, b
    assert model.note_branch.layout == "published"
    assert count_trainable_parameters(model.note_branch) == 18968
    assert count_trainable_parameters(model) == 18970 <= 20000
    # the harmonic-aggregation layout: 21,918 + 2, within issue 7's bound of 30k
    assert count_trainable_parameters(AgnosticModel("harmonic")) == 21920 <= 30000
    # the temporal layout: the published one + FrameContext's 1,329
    temporal = AgnosticModel("temporal")
    assert count_trainable_parameters(temporal.note_branch.frame_context) == 1329
    assert count_trainable_parameters(temporal) == 20299 <= 30000
    # the light layouts: the octave context without its time taps (16 x 8 x 25 x 2 fewer weights)
    assert count_trainable_parameters(AgnosticModel("light")) == 18970 - 6400 == 12570
    assert count_trainable_parameters(AgnosticModel("light-temporal")) == 12570 + 1329
    # with the onset refinement too: a second TimeContext of the same size
    assert count_trainable_parameters(AgnosticModel("light-temporal-onsets")) == 12570 + 2 * 1329 == 15228
    # both refinements seeing the input level too: 9 taps into 8 channels each
    assert count_trainable_parameters(AgnosticModel("light-temporal-energy-onsets")) == 15228 + 2 * 72 == 15372
    # a third, longer refinement of the frames, seeing the level too
    sustain = AgnosticModel("light-temporal-energy-onsets-sustain")
    assert count_trainable_parameters(sustain) == 15372 + 1329 + 72 == 16773 <= 30000
    # the frame refinement seeing the nearby rows' onsets: 9 taps into 8 channels more
    assert count_trainable_parameters(AgnosticModel("light-temporal-energy-onsets-neighbours")) == 15372 + 72


@pytest.mark.parametrize("plain, refined, context, reach", [
    ("published", "temporal", "frame_context", 40),
    ("light-temporal", "light-temporal-onsets", "onset_context", 28),
    ("light-temporal-onsets", "light-temporal-energy-onsets", "frame_context", 40),
    ("light-temporal-energy-onsets", "light-temporal-energy-onsets-sustain", "sustain_context", 120),
    ("light-temporal-energy-onsets", "light-temporal-energy-onsets-neighbours", "frame_context", 40),
])
def test_a_time_context_starts_as_the_identity_and_reaches_its_frames(plain, refined, context, reach):
    torch.manual_seed(2)
    before_model, after_model = AgnosticModel(plain).eval(), AgnosticModel(refined).eval()
    after_model.load_state_dict(before_model.state_dict(), strict=False)
    audio = _audio(1, 20000, seed=3)
    with torch.no_grad():
        for before, after in zip(before_model.logits(audio), after_model.logits(audio)):
            torch.testing.assert_close(after, before)
    context = getattr(after_model.note_branch, context)
    assert context.reach == reach
    with torch.no_grad():
        context.out.weight.fill_(1.0)
        onset = torch.full((1, N_PITCHES, 2 * reach + 121), -5.0)
        note = onset.clone()
        note[0, 10, reach + 60] = 5.0  # one confident cell
        level = torch.zeros_like(onset)
        changed = (context(onset, note, level) - context(onset, onset.clone(), level)).abs() > 0
    reached = changed[0, 10].nonzero().flatten()
    assert reached.min() == 60 and reached.max() == 2 * reach + 60
    assert not changed[0, [9, 11]].any()  # rows are refined independently


def _opened_frame_context(layout: str, taps: str):
    """A fresh ``layout`` model and its frame refinement, whose output and ``taps`` weights are set
    to 1 (they start at zero, which passes nothing on)."""
    model = AgnosticModel(layout).eval()
    context = model.note_branch.frame_context
    with torch.no_grad():
        context.out.weight.fill_(1.0)
        getattr(context, taps).weight.fill_(1.0)
    return model, context


def test_the_level_input_reaches_the_energy_contexts_rows_alone():
    torch.manual_seed(8)
    model, context = _opened_frame_context("light-temporal-energy-onsets", "energy")
    with torch.no_grad():
        probabilities = torch.full((1, N_PITCHES, 201), -5.0)
        level = torch.zeros_like(probabilities)
        loud = level.clone()
        loud[0, 20, 100] = 1.0
        changed = (context(probabilities, probabilities, loud) - context(probabilities, probabilities, level)).abs() > 0
    reached = changed[0, 20].nonzero().flatten()
    assert reached.min() == 100 - 40 and reached.max() == 100 + 40
    assert not changed[0, [19, 21]].any()
    # in the model, the level is the fundamental's row of the harmonic stack at bin 3k + 1
    stacked = torch.zeros(1, 8, 252, 50)
    stacked[0, HARMONIC_SHIFTS.index(0), 3 * 20 + 1, 25] = 1.0
    with torch.no_grad():
        model.note_branch.frame_context.energy.weight.zero_()
        quiet = model.note_branch(stacked)
        model.note_branch.frame_context.energy.weight.fill_(1.0)
        louder = model.note_branch(stacked)
    moved = (louder[1] - quiet[1]).abs() > 0
    assert moved[0, 20].any() and not moved[0, 19].any() and not moved[0, 21].any()


def test_the_neighbour_input_is_the_onsets_of_the_five_rows_either_side():
    torch.manual_seed(9)
    _, context = _opened_frame_context("light-temporal-energy-onsets-neighbours", "neighbours")
    with torch.no_grad():
        quiet = torch.full((1, N_PITCHES, 201), -5.0)
        onset = quiet.clone()
        onset[0, 40, 100] = 5.0  # one confident onset
        level = torch.zeros_like(quiet)
        changed = (context(onset, quiet, level) - context(quiet, quiet, level)).abs() > 0
        context.neighbours.weight.zero_()
        own_only = (context(onset, quiet, level) - context(quiet, quiet, level)).abs() > 0
    rows = changed.any(dim=2)[0].nonzero().flatten().tolist()
    assert rows == [35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45]  # ±5 rows; row 40 through its own onset
    assert own_only.any(dim=2)[0].nonzero().flatten().tolist() == [40]
    reached = changed[0, 35].nonzero().flatten()
    assert reached.min() == 100 - 40 and reached.max() == 100 + 40
    edge = torch.zeros(1, 1, N_PITCHES, 1)
    edge[0, 0, 0, 0] = 0.7
    assert neighbour_onsets(edge)[0, 0, :, 0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5]


def test_the_onset_context_refines_onsets_after_the_frames():
    torch.manual_seed(5)
    model = AgnosticModel("light-temporal-onsets").eval()
    audio = _audio(1, 20000, seed=6)
    with torch.no_grad():
        model.note_branch.onset_context.out.bias.fill_(1.5)
        onset, frame = model.logits(audio)
        model.note_branch.onset_context.out.bias.zero_()
        plain_onset, plain_frame = model.logits(audio)
    torch.testing.assert_close(frame, plain_frame)  # the frames do not see the onset refinement
    torch.testing.assert_close(onset, plain_onset + 1.5)


def test_the_sustain_context_refines_frames_last_and_leaves_the_onsets():
    torch.manual_seed(6)
    model = AgnosticModel("light-temporal-energy-onsets-sustain").eval()
    audio = _audio(1, 20000, seed=7)
    with torch.no_grad():
        model.note_branch.sustain_context.out.bias.fill_(-2.0)
        onset, frame = model.logits(audio)
        model.note_branch.sustain_context.out.bias.zero_()
        plain_onset, plain_frame = model.logits(audio)
    torch.testing.assert_close(onset, plain_onset)  # after the onset refinement: onsets as they were
    torch.testing.assert_close(frame, plain_frame - 2.0)


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="unknown note branch layout"):
        NoteBranch("dense")


@pytest.mark.parametrize("layout", NOTE_LAYOUTS)
def test_weights_load_into_the_layout_they_were_saved_from(layout, tmp_path):
    torch.manual_seed(1)
    saved = AgnosticModel(layout).eval()
    torch.save(saved.state_dict(), tmp_path / "weights.pt")
    loaded = load_agnostic_model(tmp_path / "weights.pt")
    assert loaded.note_branch.layout == layout
    audio = _audio(1, 9000, seed=7)
    with torch.no_grad():
        np.testing.assert_array_equal(saved(audio)[0].numpy(), loaded(audio)[0].numpy())


def test_cqt_kernels_are_buffers_not_parameters(model):
    buffers = dict(model.named_buffers())
    assert "frontend.cqt.kernels" in buffers and "frontend.cqt.lowpass" in buffers
    assert not any(name.startswith("frontend") for name, _ in model.named_parameters())


@pytest.mark.parametrize("n", [1, 257, 22050, 30001])
def test_output_shapes(model, n):
    model.eval()
    with torch.no_grad():
        onset, frame = model(_audio(2, n))
    assert onset.shape == frame.shape == (2, N_PITCHES, n_frames(n))
    assert ((onset >= 0) & (onset <= 1)).all() and ((frame >= 0) & (frame <= 1)).all()


def test_backward_gives_finite_gradients_for_every_parameter(model):
    model.train()
    model.zero_grad()
    onset_logits, frame_logits = model.logits(_audio(3, 20000))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        onset_logits, torch.zeros_like(onset_logits)
    ) + torch.nn.functional.binary_cross_entropy_with_logits(frame_logits, torch.ones_like(frame_logits))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_forward_is_sigmoid_of_logits(model):
    model.eval()
    audio = _audio(1, 15000, seed=3)
    with torch.no_grad():
        onset_logits, frame_logits = model.logits(audio)
        onset, frame = model(audio)
    assert torch.allclose(onset, torch.sigmoid(onset_logits))
    assert torch.allclose(frame, torch.sigmoid(frame_logits))


def test_explicit_log_scale_equals_clip_statistic(model):
    model.eval()
    audio = _audio(2, 15000, seed=4)
    with torch.no_grad():
        own = model.logits(audio)
        scale = log_scale(frame_energy(model.frontend.cqt(audio)))
        given = model.logits(audio, scale)
        shifted = model.logits(audio, scale + 1.0)
    assert all(torch.allclose(a, b) for a, b in zip(own, given))
    assert not torch.allclose(own[1], shifted[1])


@pytest.mark.parametrize("head", ["note_head", "onset_features"])
def test_stride3_heads_centre_row_k_on_stacked_bin_3k_plus_1(head):
    conv = getattr(NoteBranch(), head)
    conv = conv if isinstance(conv, torch.nn.Conv2d) else conv[0][0]
    with torch.no_grad():
        conv.weight.zero_()
        height, width = conv.weight.shape[2:]
        conv.weight[:, 0, height // 2, width // 2] = 1.0
        if conv.bias is not None:
            conv.bias.zero_()
        for k in (0, 41, 83):
            hidden = torch.zeros(1, 16, N_STACKED_BINS, 1)
            hidden[0, 0, 3 * k + 1, 0] = 1.0
            out = conv(hidden)[0, 0, :, 0]
            assert out.shape == (N_PITCHES,)
            assert torch.nonzero(out).flatten().tolist() == [k]


@pytest.mark.parametrize("layout", NOTE_LAYOUTS)
def test_note_branch_shapes(layout):
    onset, note = NoteBranch(layout).eval()(torch.randn(2, N_HARMONICS, N_STACKED_BINS, 7))
    assert onset.shape == note.shape == (2, N_PITCHES, 7)


def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "agnostic.pt"
    with torch.no_grad():
        model.affine_bias.add_(0.25)  # differ from a fresh model
    torch.save(model.state_dict(), path)
    loaded = load_agnostic_model(path)
    assert not loaded.training
    model.eval()
    audio = _audio(1, 9000, seed=5)
    with torch.no_grad():
        np.testing.assert_array_equal(model(audio)[1].numpy(), loaded(audio)[1].numpy())


def test_onset_calibration_scales_the_onset_logits_only(model):
    model.eval()
    audio = _audio(1, 12000, seed=6)
    with torch.no_grad():
        onset_logits, frame_logits = model.logits(audio)
        model.onset_calibration.copy_(torch.tensor([2.5, -1.5]))
        try:
            onset, frame = model(audio)
        finally:
            model.onset_calibration.copy_(torch.tensor([1.0, 0.0]))
    assert torch.allclose(onset, torch.sigmoid(2.5 * onset_logits - 1.5))
    assert torch.allclose(frame, torch.sigmoid(frame_logits))


def test_weights_saved_by_training_load_uncalibrated(model, tmp_path):
    # best.pt of a run started before the calibration buffer existed has no such entry
    state = {k: v for k, v in model.state_dict().items() if k != "onset_calibration"}
    torch.save(state, tmp_path / "best.pt")
    assert load_agnostic_model(tmp_path / "best.pt").onset_calibration.tolist() == [1.0, 0.0]
    calibrated = dict(model.state_dict(), onset_calibration=torch.tensor([3.0, -2.0]))
    torch.save(calibrated, tmp_path / "calibrated.pt")
    assert load_agnostic_model(tmp_path / "calibrated.pt").onset_calibration.tolist() == [3.0, -2.0]


def test_harmonic_aggregation_sees_a_cell_an_octave_and_a_twelfth_away():
    from timbrescribe.model import HarmonicAggregation

    torch.manual_seed(0)
    block = HarmonicAggregation(4).eval()
    reached = set()
    with torch.no_grad():
        block.project.bias.zero_()  # then an empty map gives zero everywhere, and so does the block
        base = block(torch.zeros(1, 4, N_STACKED_BINS, 5))
        for sign in (1.0, -1.0):  # the ReLU passes one sign or the other of a linear response
            hidden = torch.zeros(1, 4, N_STACKED_BINS, 5)
            hidden[0, :, 100, 2] = sign
            changed = (block(hidden) - base - hidden).abs().sum(dim=(0, 1, 3)) > 0
            reached |= set(torch.nonzero(changed).flatten().tolist())
    for shift in (36, 57, -36, -57):  # octave and twelfth, above and below
        assert 100 - shift in reached
    assert 100 + 18 not in reached and 100 - 18 not in reached  # a tritone away: no path


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_agnostic_model(tmp_path / "nope.pt")
