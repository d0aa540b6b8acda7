"""Training loop of the timbre-agnostic note model (DESIGN.md §4).

Training runs by steps: batches of random clips (several data directories mixed by weight), focal
losses, AdamW with gradient clipping, ReduceLROnPlateau on the validation note F. Validation uses
fixed crops of the val set and scores decoded notes with mir_eval. ``last.pt`` holds everything
needed to resume; ``best.pt`` holds the model weights of the best validation score (note F, or
note F + frame F). A run can start from trained weights (``init``), and train only the parameters
those lack (``freeze_init``: a new layout's added parts on a trained model).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, WeightedRandomSampler

from timbrescribe.constants import HOP
from timbrescribe.decode import DecoderSettings, decode_notes
from timbrescribe.errors import UserError
from timbrescribe.evaluation.metrics import frame_scores, note_scores
from timbrescribe.notes import Note
from timbrescribe.training.commands import TrainConfig
from timbrescribe.training.common import (
    BEST_WEIGHTS, LAST_CHECKPOINT, LOG_FILE, Progress, append_log, limit_worker_threads, load_checkpoint,
    run_steps, save_atomically, save_checkpoint, seed_everything,
)
from timbrescribe.training.losses import agnostic_targets, note_losses

LOG_COLUMNS = (
    "step", "time_s", "lr", "clip_frames", "train_loss", "train_onset_loss", "train_frame_loss",
    "val_loss", "val_note_f", "val_frame_f",
)


@dataclass
class TrainResult:
    """What a finished (or time-limited) run reports."""

    step: int
    best_path: Path
    best_note_f: float
    stopped_by_time_limit: bool


# ---------------------------------------------------------------------------- data


def train_loader(config, start_step: int, **dataset_options) -> DataLoader:
    """Batches for steps ``start_step`` .. ``config.steps``, drawn with replacement across the data dirs.
    ``config`` is a TrainConfig or TimbreTrainConfig; ``dataset_options`` go to every ClipDataset.

    Sampler and crops are seeded from (seed, start_step): reproducible, and a resumed run goes on
    with fresh clips instead of replaying the ones it already saw.
    """
    from timbrescribe.data.dataset import ClipDataset

    stream_seed = config.seed * 1_000_003 + start_step
    sets = [ClipDataset(root, config.clip_frames, config.max_parts, seed=stream_seed + (k << 32), **dataset_options)
            for k, root in enumerate(config.data)]
    weights = config.data_weights or [1.0] * len(sets)
    per_item = torch.cat([torch.full((len(s),), w / len(s), dtype=torch.double) for s, w in zip(sets, weights)])
    generator = torch.Generator().manual_seed(stream_seed)
    n_samples = max(config.steps - start_step, 1) * config.batch_size
    sampler = WeightedRandomSampler(per_item, n_samples, replacement=True, generator=generator)
    return DataLoader(
        ConcatDataset(sets), batch_size=config.batch_size, sampler=sampler, drop_last=True,
        num_workers=config.num_workers, worker_init_fn=limit_worker_threads, generator=generator,
        persistent_workers=config.num_workers > 0,
    )


def curriculum_frames(config: TrainConfig, step: int) -> int:
    """Clip length (frames) at ``step``: a linear ramp from start_clip_frames to clip_frames."""
    if step >= config.curriculum_steps:
        return config.clip_frames
    start = min(config.start_clip_frames, config.clip_frames)
    return int(round(start + (config.clip_frames - start) * step / config.curriculum_steps))


def crop_batch(batch: dict, frames: int) -> dict:
    """Crop a batch to ``frames`` frames at one random offset (audio and targets stay aligned)."""
    total = batch["onset"].shape[-1]
    if frames >= total:
        return batch
    start = int(torch.randint(0, total - frames + 1, ()))
    cropped = dict(batch)
    cropped["audio"] = batch["audio"][:, start * HOP:(start + frames) * HOP]
    for key in ("onset", "frame"):
        cropped[key] = batch[key][..., start:start + frames]
    return cropped


def add_noise(audio: torch.Tensor, max_level: float) -> torch.Tensor:
    """Add Gaussian noise to each clip at a random level in [0, max_level] times its RMS."""
    if max_level <= 0:
        return audio
    rms = audio.pow(2).mean(dim=-1, keepdim=True).sqrt()
    level = torch.rand(audio.shape[0], 1) * max_level
    return audio + torch.randn_like(audio) * rms * level


# ---------------------------------------------------------------------------- training step


def train_step(model, optimizer, batch: dict, noise: float, grad_clip: float, bf16: bool = False) -> dict[str, float]:
    """One optimisation step on ``batch``; returns the losses before the update.

    ``bf16`` runs the network under bfloat16 autocast (the CQT front end keeps itself float32);
    the losses, weights and optimiser stay float32.
    """
    model.train()
    for module in model.modules():  # frozen parts (start_from(freeze=True)) keep their statistics
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        onset_logits, frame_logits = model.logits(add_noise(batch["audio"], noise))
    losses = note_losses(
        onset_logits.float(), frame_logits.float(),
        agnostic_targets(batch["onset"], batch["part_mask"]),
        agnostic_targets(batch["frame"], batch["part_mask"]),
    )
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # frozen parameters have no gradient
    optimizer.step()
    return {name: value.item() for name, value in losses.items()}


# ---------------------------------------------------------------------------- validation


@dataclass
class ValidationSet:
    """Fixed val crops with agnostic targets, kept in memory: audio (C, N), onset/frame (C, 84, T)."""

    audio: torch.Tensor
    onset: torch.Tensor
    frame: torch.Tensor


def load_validation(config: TrainConfig) -> ValidationSet:
    """The first ``val_clips`` clips of the val set, cropped deterministically (seeded)."""
    from timbrescribe.data.dataset import ClipDataset

    dataset = ClipDataset(config.val, config.val_clip_frames, config.max_parts, seed=config.seed)
    items = [dataset[i] for i in range(min(config.val_clips, len(dataset)))]
    masks = torch.stack([item["part_mask"] for item in items])
    return ValidationSet(
        audio=torch.stack([item["audio"] for item in items]),
        onset=agnostic_targets(torch.stack([item["onset"] for item in items]), masks),
        frame=agnostic_targets(torch.stack([item["frame"] for item in items]), masks),
    )


@torch.no_grad()
def validate(model, val: ValidationSet, batch_size: int) -> dict[str, float]:
    """Mean focal loss, and note onset F and frame F of decoded notes averaged over the val clips."""
    model.eval()
    loss_sum, note_fs, frame_fs = 0.0, [], []
    for first in range(0, len(val.audio), batch_size):
        part = slice(first, first + batch_size)
        onset_logits, frame_logits = model.logits(val.audio[part])
        losses = note_losses(onset_logits, frame_logits, val.onset[part], val.frame[part])
        loss_sum += losses["total"].item() * len(val.audio[part])
        onset_prob = torch.sigmoid(onset_logits).numpy()
        frame_prob = torch.sigmoid(frame_logits).numpy()
        for i, (onset_ref, frame_ref) in enumerate(zip(val.onset[part].numpy(), val.frame[part].numpy())):
            estimate = decode_notes(onset_prob[i], frame_prob[i])
            note_f, frame_f = clip_scores(onset_ref, frame_ref, estimate)
            note_fs.append(note_f)
            frame_fs.append(frame_f)
    return {
        "val_loss": loss_sum / len(val.audio),
        "val_note_f": float(np.mean(note_fs)),
        "val_frame_f": float(np.mean(frame_fs)),
    }


# Reads target rolls back as notes: every onset cell starts a note that lasts while the frame
# target is on; notes already sounding at the clip start count from frame 0 (leftover runs).
REFERENCE_DECODING = DecoderSettings(
    onset_threshold=0.5, frame_threshold=0.5, min_note_ms=0.0, max_dip_frames=0,
    infer_onsets=False, leftover_notes=True, leftover_threshold=0.5,
)


def clip_scores(onset_ref: np.ndarray, frame_ref: np.ndarray, estimate: list[Note]) -> tuple[float, float]:
    """(note onset F, frame F) of estimated notes against one clip's target rolls (84, T)."""
    reference = decode_notes(onset_ref, frame_ref, REFERENCE_DECODING)
    return note_scores(reference, estimate, with_offsets=False).f, frame_scores(reference, estimate).f


def selection_score(scores: dict[str, float], select: str) -> float:
    """What best.pt and the learning-rate schedule follow (higher is better): note onset F, note F
    + frame F, or minus the validation loss ("loss": for a run that trains only the onset head's
    refinement, whose uncalibrated peaks rarely reach the default onset threshold that
    validation decodes with, so its note F barely moves)."""
    if select == "loss":
        return -scores["val_loss"]
    return scores["val_note_f"] + (scores["val_frame_f"] if select == "note+frame" else 0.0)


# ---------------------------------------------------------------------------- checkpoints


# ---------------------------------------------------------------------------- the loop


def start_from(model, path: Path, freeze: bool, unfreeze: tuple[str, ...] = ()) -> None:
    """Load the note-model weights at ``path`` into ``model``; the parameters they lack keep their
    fresh values. A conv kernel of one time tap where the weights hold several (the light
    layouts' octave context) starts as the sum of those taps: the same output wherever the input
    holds still over them. ``freeze``: only the parameters the weights lack, and those whose names
    start with one of ``unfreeze``, are trained afterwards. UserError when the weights hold
    parameters ``model`` lacks or shapes it has not, a prefix names no parameter, or no parameter is
    left to train."""
    from timbrescribe.model import read_weights

    state = read_weights(path)
    state.pop("onset_calibration", None)  # fitted after training: a run trains uncalibrated
    own = model.state_dict()
    for name, value in state.items():
        target = own.get(name)
        if target is not None and value.ndim == 4 and target.shape == (*value.shape[:3], 1):
            state[name] = value.sum(dim=3, keepdim=True)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a parameter of another shape
        raise UserError(f"{path}: weights of another layout ({str(err).splitlines()[-1].strip()})") from None
    if unexpected:
        raise UserError(f"{path}: weights of another layout (holds {', '.join(unexpected[:3])}, ...)")
    if freeze:
        names = [name for name, _ in model.named_parameters()]
        for prefix in unfreeze:
            if not any(name.startswith(prefix) for name in names):
                raise UserError(f"--unfreeze {prefix}: no parameter of the {model.note_branch.layout} layout is named so")
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in missing or name.startswith(tuple(unfreeze)))
        if not any(p.requires_grad for p in model.parameters()):
            raise UserError(f"--freeze-init: {path} holds every parameter of the layout; nothing to train")


def train(config: TrainConfig, show_progress: bool = True) -> TrainResult:
    """Train (or resume) until ``config.steps`` or the time limit; returns where best.pt is."""
    from timbrescribe.model import AgnosticModel

    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    model = AgnosticModel(config.layout)
    if config.init:  # refused init weights or --unfreeze prefixes leave no output folder behind
        start_from(model, Path(config.init), config.freeze_init, config.unfreeze_prefixes())
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_factor, patience=config.lr_patience)
    resume_from = Path(config.resume) if config.resume else out / LAST_CHECKPOINT
    progress = Progress()
    if config.resume or resume_from.exists():
        progress = load_checkpoint(resume_from, model, optimizer, scheduler)

    val = load_validation(config)
    window: list[dict[str, float]] = []
    frames = curriculum_frames(config, progress.step)

    def validate_and_log() -> None:
        scores = validate(model, val, config.batch_size)
        selected = selection_score(scores, config.select)
        scheduler.step(selected)
        if selected > progress.best_note_f:
            progress.best_note_f = selected
            save_atomically(model.state_dict(), out / BEST_WEIGHTS)
        means = {key: float(np.mean([losses[key] for losses in window])) if window else float("nan")
                 for key in ("total", "onset", "frame")}
        append_log(out / LOG_FILE, {
            "step": progress.step, "time_s": round(progress.elapsed_s, 1), "lr": optimizer.param_groups[0]["lr"],
            "clip_frames": frames, "train_loss": means["total"], "train_onset_loss": means["onset"],
            "train_frame_loss": means["frame"], **scores,
        }, LOG_COLUMNS)
        window.clear()

    def step(batch: dict) -> str:
        nonlocal frames
        frames = curriculum_frames(config, progress.step)
        window.append(train_step(model, optimizer, crop_batch(batch, frames), config.noise, config.grad_clip,
                                 config.bf16))
        return f"{window[-1]['total']:.4f}"

    stopped_by_time = run_steps(
        config, train_loader(config, progress.step), step, validate_and_log,
        lambda: save_checkpoint(out / LAST_CHECKPOINT, model, optimizer, scheduler, progress, config),
        progress, show_progress,
    )
    if not (out / BEST_WEIGHTS).exists():
        validate_and_log()
    return TrainResult(progress.step, out / BEST_WEIGHTS, progress.best_note_f, stopped_by_time)
