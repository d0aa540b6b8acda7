import argparse
import csv

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from timbrescribe import cli
from timbrescribe.constants import HOP, MIDI_MIN, N_PITCHES, frame_to_time, n_frames
from timbrescribe.errors import UserError
from timbrescribe.model import load_agnostic_model
from timbrescribe.notes import Note
from timbrescribe.training import commands
from timbrescribe.training.agnostic import (
    add_noise,
    clip_scores,
    crop_batch,
    curriculum_frames,
    selection_score,
    start_from,
    train_loader,
    train_step,
)
from timbrescribe.training.common import Progress, load_checkpoint, save_checkpoint
from timbrescribe.training.commands import TrainConfig


class FramewiseModel(nn.Module):
    """Stand-in with the AgnosticModel interface: per-frame energy -> per-pitch logits."""

    def __init__(self):
        super().__init__()
        self.onset = nn.Linear(1, N_PITCHES)
        self.frame = nn.Linear(1, N_PITCHES)

    def logits(self, audio):
        frames = n_frames(audio.shape[-1])
        padded = nn.functional.pad(audio, (0, frames * HOP - audio.shape[-1]))
        energy = padded.reshape(audio.shape[0], frames, HOP).pow(2).mean(-1, keepdim=True)
        return self.onset(energy).transpose(1, 2), self.frame(energy).transpose(1, 2)


def _batch(clips=2, frames=40, parts=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    frame = (torch.rand(clips, parts, N_PITCHES, frames, generator=generator) < 0.05).float()
    onset = frame * (torch.rand(clips, parts, N_PITCHES, frames, generator=generator) < 0.3)
    return {
        "audio": torch.randn(clips, frames * HOP, generator=generator) * 0.1,
        "onset": onset,
        "frame": frame,
        "part_mask": torch.tensor([[True, True, False]] * clips),
    }


def test_curriculum_ramps_clip_length_then_holds():
    config = TrainConfig(data=[], val="", out="", clip_frames=430, start_clip_frames=172, curriculum_steps=100)
    assert curriculum_frames(config, 0) == 172
    assert curriculum_frames(config, 50) == 301
    assert curriculum_frames(config, 100) == 430
    assert curriculum_frames(config, 5000) == 430
    assert curriculum_frames(TrainConfig(data=[], val="", out=""), 0) == 430  # no curriculum


def test_crop_batch_keeps_audio_and_targets_aligned():
    torch.manual_seed(3)
    frames = 50
    batch = _batch(frames=frames)
    # tag every sample and target column with its frame index
    batch["audio"] = (torch.arange(frames * HOP) // HOP).float().repeat(2, 1)
    batch["onset"] = torch.arange(frames).float().expand(2, 3, N_PITCHES, frames).clone()
    cropped = crop_batch(batch, 20)
    assert cropped["audio"].shape == (2, 20 * HOP)
    assert cropped["onset"].shape == (2, 3, N_PITCHES, 20) and cropped["frame"].shape[-1] == 20
    first = cropped["onset"][0, 0, 0, 0].item()
    assert cropped["audio"][0, 0].item() == first
    assert cropped["audio"][0, -1].item() == first + 19
    assert crop_batch(batch, frames) is batch


def test_add_noise_is_relative_to_clip_level():
    torch.manual_seed(0)
    audio = torch.stack([torch.randn(20000), torch.zeros(20000)])
    noisy = add_noise(audio, 0.01)
    difference = noisy - audio
    assert 0 < difference[0].std() <= 0.011
    assert torch.equal(noisy[1], audio[1])  # silence stays silent
    assert torch.equal(add_noise(audio, 0.0), audio)


def test_clip_scores_perfect_and_empty_estimates():
    onset = np.zeros((N_PITCHES, 200), np.float32)
    frame = np.zeros_like(onset)
    spans = [(40, 10, 60), (44, 30, 90), (40, 100, 180)]
    for row, start, end in spans:
        onset[row, start] = 1
        frame[row, start:end] = 1
    frame[50, 0:40] = 1  # a note sounding from before the clip start: counts from frame 0
    notes = [Note(frame_to_time(s), frame_to_time(e), MIDI_MIN + row) for row, s, e in [*spans, (50, 0, 40)]]
    note_f, frame_f = clip_scores(onset, frame, notes)
    assert note_f == pytest.approx(1.0) and frame_f == pytest.approx(1.0)
    assert clip_scores(onset, frame, []) == (0.0, 0.0)
    without_row_40 = [n for n in notes if n.pitch != MIDI_MIN + 40]  # 2 of 4 reference notes
    note_f, frame_f = clip_scores(onset, frame, without_row_40)
    assert note_f == pytest.approx(2 * 2 / (4 + 2))
    assert frame_f == pytest.approx(2 * 100 / (230 + 100))  # 100 of 230 reference cells, all correct


def test_train_step_overfits_one_batch_with_stand_in_model():
    torch.manual_seed(0)
    model = FramewiseModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    batch = _batch()
    first = train_step(model, optimizer, batch, noise=0.0, grad_clip=1.0)
    for _ in range(30):
        last = train_step(model, optimizer, batch, noise=0.0, grad_clip=1.0)
    assert set(first) == {"onset", "frame", "total"}
    assert last["total"] < 0.5 * first["total"]


def test_checkpoint_round_trip_restores_progress_and_rng(tmp_path):
    model = FramewiseModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max")
    train_step(model, optimizer, _batch(), noise=0.01, grad_clip=1.0)
    config = TrainConfig(data=["a"], val="v", out=str(tmp_path))
    save_checkpoint(tmp_path / "last.pt", model, optimizer, scheduler, Progress(7, 12.5, 0.4), config)
    expected_draw = torch.rand(3)
    expected_np = np.random.rand()

    restored = FramewiseModel()
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=0.01)
    restored_scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(restored_optimizer, mode="max")
    progress = load_checkpoint(tmp_path / "last.pt", restored, restored_optimizer, restored_scheduler)
    assert progress == Progress(7, 12.5, 0.4)
    assert torch.equal(torch.rand(3), expected_draw) and np.random.rand() == expected_np
    for name, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value)
    assert restored_optimizer.state_dict()["state"][0]["step"] == 1
    assert not (tmp_path / "last.pt.tmp").exists()


def _parse(argv):
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    return parser.parse_args(argv)


def test_command_rejects_bad_inputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    base = ["--data", str(data), "--val", str(data), "--out", str(tmp_path / "out")]
    assert commands.config_from_args(_parse(base)).data == [str(data)]
    with pytest.raises(UserError, match="not found"):
        commands.config_from_args(_parse(["--data", str(tmp_path / "missing"), *base[2:]]))
    with pytest.raises(UserError, match="not found"):
        commands.config_from_args(_parse([*base[:2], "--val", str(tmp_path / "nope"), *base[4:]]))
    with pytest.raises(UserError, match="--data-weight"):
        commands.config_from_args(_parse([*base, "--data-weight", "1", "--data-weight", "2"]))
    with pytest.raises(UserError, match="--steps"):
        commands.config_from_args(_parse([*base, "--steps", "0"]))
    with pytest.raises(UserError, match="resume"):
        commands.config_from_args(_parse([*base, "--resume", str(tmp_path / "last.pt")]))
    with pytest.raises(UserError, match="--layout must be one of published, harmonic, temporal"):
        commands.config_from_args(_parse([*base, "--layout", "dense"]))
    with pytest.raises(UserError, match="--select must be one of note, note\\+frame"):
        commands.config_from_args(_parse([*base, "--select", "frame"]))
    with pytest.raises(UserError, match="--freeze-init needs --init"):
        commands.config_from_args(_parse([*base, "--freeze-init"]))
    with pytest.raises(UserError, match="--unfreeze needs --freeze-init"):
        commands.config_from_args(_parse([*base, "--unfreeze", "note_branch.frame_context"]))
    with pytest.raises(UserError, match="weights to start from not found"):
        commands.config_from_args(_parse([*base, "--init", str(tmp_path / "best.pt")]))


# ---------------------------------------------------------------- real model + rendered smoke data


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    assert cli.main(["data", "render", "--preset", "smoke", "--out", str(out), "--seed", "1", "--workers", "1"]) == 0
    return out


def test_real_model_overfits_one_repeated_batch(smoke_data):
    from timbrescribe.data.dataset import ClipDataset
    from timbrescribe.model import AgnosticModel

    torch.manual_seed(0)
    dataset = ClipDataset(smoke_data, clip_frames=64, seed=0)
    batch = default_collate([dataset[0], dataset[1]])
    model = AgnosticModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = [train_step(model, optimizer, batch, noise=0.0, grad_clip=1.0, bf16=True)["total"] for _ in range(15)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * losses[0]


def test_train_loader_mixes_directories_by_weight_and_reseeds_on_resume(smoke_data):
    config = TrainConfig(data=[str(smoke_data)] * 2, data_weights=[0.0, 1.0], val="", out="", steps=10,
                         batch_size=2, clip_frames=32, num_workers=0)
    loader = train_loader(config, start_step=4)
    indices = list(loader.sampler)
    assert len(indices) == (10 - 4) * 2
    assert min(indices) >= 6  # all from the second directory (ConcatDataset indices 6..11)
    assert indices == list(train_loader(config, start_step=4).sampler)  # reproducible
    assert indices[:10] != list(train_loader(config, start_step=5).sampler)  # fresh draws after a resume
    batches = list(loader)
    assert len(batches) == 6 and batches[0]["audio"].shape == (2, 32 * HOP)


def _train(smoke_data, out, *options):
    return cli.main([
        "train", "agnostic", "--data", str(smoke_data), "--val", str(smoke_data), "--out", str(out),
        "--batch-size", "2", "--clip-frames", "64", "--val-clips", "2", "--val-clip-frames", "128",
        "--val-every", "2", "--checkpoint-every", "2", "--num-workers", "0", "--threads", "2", *options,
    ])


def test_cli_trains_checkpoints_and_resumes(smoke_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(smoke_data, out, "--steps", "4") == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert "best model: " + str(out / "best.pt") in capsys.readouterr().out
    load_agnostic_model(out / "best.pt")  # best.pt is a plain state dict of the model

    assert _train(smoke_data, out, "--steps", "6") == 0  # resumes from last.pt at step 4
    assert _train(smoke_data, out, "--steps", "1000", "--time-limit", "0.0001") == 0  # one step, then stop
    assert "stopped at the time limit at step 7" in capsys.readouterr().out

    with (out / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [2, 4, 6, 7]
    assert all(np.isfinite(float(row["val_loss"])) and 0 <= float(row["val_note_f"]) <= 1 for row in rows)
    checkpoint = torch.load(out / "last.pt", weights_only=False)
    assert checkpoint["progress"]["step"] == 7
    assert checkpoint["config"]["steps"] == 1000


def test_cli_trains_the_harmonic_layout(smoke_data, tmp_path):
    out = tmp_path / "run"
    assert _train(smoke_data, out, "--steps", "2", "--layout", "harmonic") == 0
    assert load_agnostic_model(out / "best.pt").note_branch.layout == "harmonic"


def test_cli_trains_only_the_parts_a_layout_adds_to_init_weights(smoke_data, tmp_path, capsys):
    published = tmp_path / "published"
    assert _train(smoke_data, published, "--steps", "2") == 0
    start = load_agnostic_model(published / "best.pt").state_dict()
    out = tmp_path / "temporal"
    assert _train(smoke_data, out, "--steps", "2", "--layout", "temporal", "--init", str(published / "best.pt"),
                  "--freeze-init", "--select", "note+frame", "--lr", "0.01") == 0
    trained = load_agnostic_model(out / "last.pt").state_dict()
    assert load_agnostic_model(out / "best.pt").note_branch.layout == "temporal"
    for name, value in start.items():  # weights and batch-norm statistics stay as they were
        torch.testing.assert_close(trained[name], value, rtol=0, atol=0, msg=name)
    assert trained["note_branch.frame_context.out.weight"].abs().sum() > 0  # starts at zero, trained
    assert "validation note F + frame F" in capsys.readouterr().out

    assert _train(smoke_data, tmp_path / "back", "--steps", "1", "--init", str(out / "best.pt")) == 2
    assert "weights of another layout (holds note_branch.frame_context" in capsys.readouterr().err
    assert _train(smoke_data, tmp_path / "same", "--steps", "1", "--init", str(published / "best.pt"),
                  "--freeze-init") == 2
    assert "holds every parameter of the layout; nothing to train" in capsys.readouterr().err
    assert _train(smoke_data, tmp_path / "wrong", "--steps", "1", "--layout", "temporal", "--init",
                  str(published / "best.pt"), "--freeze-init", "--unfreeze", "note_branch.frames") == 2
    assert "--unfreeze note_branch.frames: no parameter of the temporal layout" in capsys.readouterr().err
    for refused in ("back", "same", "wrong"):  # nothing written for a refused start
        assert not (tmp_path / refused).exists()


def test_selection_follows_note_f_note_and_frame_f_or_the_loss():
    scores = {"val_loss": 0.006, "val_note_f": 0.8, "val_frame_f": 0.7}
    assert selection_score(scores, "note") == 0.8
    assert selection_score(scores, "note+frame") == pytest.approx(1.5)
    better = {**scores, "val_loss": 0.005, "val_note_f": 0.1}
    assert selection_score(better, "loss") > selection_score(scores, "loss") > Progress().best_note_f


def test_the_onset_refinement_is_all_that_trains_on_light_temporal_weights(tmp_path):
    from timbrescribe.model import AgnosticModel

    torch.save(AgnosticModel("light-temporal").state_dict(), tmp_path / "light-temporal.pt")
    model = AgnosticModel("light-temporal-onsets")
    start_from(model, tmp_path / "light-temporal.pt", freeze=True)
    trained = {name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"onset_context"}


def test_unfreeze_trains_the_named_parts_beside_the_new_ones(tmp_path):
    from timbrescribe.model import AgnosticModel

    torch.save(AgnosticModel("light-temporal-onsets").state_dict(), tmp_path / "onsets.pt")
    model = AgnosticModel("light-temporal-energy-onsets")
    start_from(model, tmp_path / "onsets.pt", freeze=True, unfreeze=("note_branch.frame_context",))
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {name for name, _ in model.named_parameters()
                       if name.startswith("note_branch.frame_context") or name.endswith("energy.weight")}
    assert "note_branch.onset_context.out.weight" not in trained
    with pytest.raises(UserError, match="--unfreeze note_branch.frames: no parameter"):
        start_from(model, tmp_path / "onsets.pt", freeze=True, unfreeze=("note_branch.frames",))


def test_a_light_layout_starts_from_published_weights_with_the_octave_taps_summed(tmp_path):
    from timbrescribe.model import AgnosticModel
    from timbrescribe.training.agnostic import start_from

    torch.manual_seed(3)
    published = AgnosticModel()
    torch.save(published.state_dict(), tmp_path / "published.pt")
    light = AgnosticModel("light")
    start_from(light, tmp_path / "published.pt", freeze=False)
    kernel = published.state_dict()["note_branch.octave_context.0.weight"]
    assert light.state_dict()["note_branch.octave_context.0.weight"].shape == (*kernel.shape[:3], 1)
    expected = published.state_dict() | {"note_branch.octave_context.0.weight": kernel.sum(dim=3, keepdim=True)}
    for name, value in light.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
    torch.save(light.state_dict(), tmp_path / "light.pt")  # the other way round has no answer
    with pytest.raises(UserError, match="weights of another layout .*octave_context"):
        start_from(AgnosticModel(), tmp_path / "light.pt", freeze=False)


@pytest.mark.slow
def test_cli_exports_best_model_to_onnx(smoke_data, tmp_path, capsys):
    onnx_path = tmp_path / "agnostic.onnx"
    assert _train(smoke_data, tmp_path / "run", "--steps", "1", "--export-onnx", str(onnx_path)) == 0
    assert onnx_path.is_file()
    assert f"ONNX models: {onnx_path}" in capsys.readouterr().out


def _train_timbre(smoke_data, out, *options):
    return cli.main([
        "train", "timbre", "--data", str(smoke_data), "--val", str(smoke_data), "--out", str(out),
        "--batch-size", "2", "--clip-frames", "64", "--val-examples", "3", "--val-every", "2",
        "--checkpoint-every", "2", "--num-workers", "0", "--threads", "2", *options,
    ])


def test_timbre_cli_trains_checkpoints_resumes_and_exports(smoke_data, tmp_path, capsys):
    from timbrescribe.model import load_timbre_branch

    out = tmp_path / "timbre"
    onnx_path = tmp_path / "separation.onnx"
    assert _train_timbre(smoke_data, out, "--steps", "2") == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    load_timbre_branch(out / "best.pt")
    assert _train_timbre(smoke_data, out, "--steps", "4", "--export-onnx", str(onnx_path)) == 0  # resumes
    printed = capsys.readouterr().out
    assert "validation note accuracy" in printed and f"ONNX models: {onnx_path}" in printed
    with (out / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [2, 4]
    assert all(0 <= float(row["val_note_accuracy"]) <= 1 and np.isfinite(float(row["train_loss"])) for row in rows)
    assert torch.load(out / "last.pt", weights_only=False)["progress"]["step"] == 4


def test_timbre_remixed_clips_drop_parts_and_their_targets(smoke_data):
    from timbrescribe.data.dataset import ClipDataset

    dataset = ClipDataset(smoke_data, clip_frames=64, seed=0, remix=True, min_parts=1)
    plain = ClipDataset(smoke_data, clip_frames=64, seed=0)
    for index in range(len(dataset)):
        item, full = dataset[index], plain[index]
        n_parts = int(full["part_mask"].sum())
        kept = item["part_mask"]
        assert 1 <= int(kept.sum()) <= n_parts
        assert not item["frame"][~kept].any()  # dropped parts have no targets
        assert torch.equal(item["frame"][kept], full["frame"][kept])
