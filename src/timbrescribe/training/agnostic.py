"""Training loop of the timbre-agnostic note model (DESIGN.md §4).

Training runs by steps: batches of random clips (several data directories mixed by weight), focal
losses, AdamW with gradient clipping, ReduceLROnPlateau on the validation note F. Validation uses
fixed crops of the val set and scores decoded notes with mir_eval. ``last.pt`` holds everything
needed to resume; ``best.pt`` holds the model weights of the best validation note F.
"""
from __future__ import annotations

import csv
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, WeightedRandomSampler
from tqdm import tqdm

from timbrescribe.constants import HOP
from timbrescribe.decode import DecoderSettings, decode_notes
from timbrescribe.evaluation.metrics import frame_scores, note_scores
from timbrescribe.notes import Note
from timbrescribe.training.commands import TrainConfig
from timbrescribe.training.losses import agnostic_targets, note_losses

LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.pt"
LOG_FILE = "train_log.csv"
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


@dataclass
class _Progress:
    """Counters that survive a resume."""

    step: int = 0
    elapsed_s: float = 0.0
    best_note_f: float = -1.0


# ---------------------------------------------------------------------------- data


def _limit_worker_threads(worker_id: int) -> None:
    """DataLoader workers only read files: one thread each leaves the cores to the training step."""
    torch.set_num_threads(1)


def train_loader(config: TrainConfig, start_step: int) -> DataLoader:
    """Batches for steps ``start_step`` .. ``config.steps``, drawn with replacement across the data dirs.

    Sampler and crops are seeded from (seed, start_step): reproducible, and a resumed run goes on
    with fresh clips instead of replaying the ones it already saw.
    """
    from timbrescribe.data.dataset import ClipDataset

    stream_seed = config.seed * 1_000_003 + start_step
    sets = [ClipDataset(root, config.clip_frames, config.max_parts, seed=stream_seed + (k << 32))
            for k, root in enumerate(config.data)]
    weights = config.data_weights or [1.0] * len(sets)
    per_item = torch.cat([torch.full((len(s),), w / len(s), dtype=torch.double) for s, w in zip(sets, weights)])
    generator = torch.Generator().manual_seed(stream_seed)
    n_samples = max(config.steps - start_step, 1) * config.batch_size
    sampler = WeightedRandomSampler(per_item, n_samples, replacement=True, generator=generator)
    return DataLoader(
        ConcatDataset(sets), batch_size=config.batch_size, sampler=sampler, drop_last=True,
        num_workers=config.num_workers, worker_init_fn=_limit_worker_threads, generator=generator,
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
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        onset_logits, frame_logits = model.logits(add_noise(batch["audio"], noise))
    losses = note_losses(
        onset_logits.float(), frame_logits.float(),
        agnostic_targets(batch["onset"], batch["part_mask"]),
        agnostic_targets(batch["frame"], batch["part_mask"]),
    )
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
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


# ---------------------------------------------------------------------------- checkpoints


def _save_atomically(payload, path: Path) -> None:
    """torch.save to a temporary file next to ``path``, then rename over it."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def save_checkpoint(path: Path, model, optimizer, scheduler, progress: _Progress, config: TrainConfig) -> None:
    """Write everything needed to resume: weights, optimiser, scheduler, counters, RNG states, options."""
    _save_atomically({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": asdict(progress),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "config": asdict(config),
    }, path)


def load_checkpoint(path: Path, model, optimizer, scheduler) -> _Progress:
    """Restore a ``save_checkpoint`` file into the given objects; returns the saved counters."""
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: holds RNG tuples
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return _Progress(**state["progress"])


def _append_log(path: Path, row: dict) -> None:
    new_file = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


# ---------------------------------------------------------------------------- the loop


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def train(config: TrainConfig, show_progress: bool = True) -> TrainResult:
    """Train (or resume) until ``config.steps`` or the time limit; returns where best.pt is."""
    from timbrescribe.model import AgnosticModel

    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    _seed_everything(config.seed)
    model = AgnosticModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_factor, patience=config.lr_patience)
    resume_from = Path(config.resume) if config.resume else out / LAST_CHECKPOINT
    progress = _Progress()
    if config.resume or resume_from.exists():
        progress = load_checkpoint(resume_from, model, optimizer, scheduler)

    val = load_validation(config)
    started, elapsed_before = time.monotonic(), progress.elapsed_s
    deadline = started + config.time_limit * 60 if config.time_limit > 0 else float("inf")
    window: list[dict[str, float]] = []

    def validate_and_log(frames: int) -> None:
        scores = validate(model, val, config.batch_size)
        scheduler.step(scores["val_note_f"])
        if scores["val_note_f"] > progress.best_note_f:
            progress.best_note_f = scores["val_note_f"]
            _save_atomically(model.state_dict(), out / BEST_WEIGHTS)
        means = {key: float(np.mean([losses[key] for losses in window])) if window else float("nan")
                 for key in ("total", "onset", "frame")}
        _append_log(out / LOG_FILE, {
            "step": progress.step, "time_s": round(progress.elapsed_s, 1), "lr": optimizer.param_groups[0]["lr"],
            "clip_frames": frames, "train_loss": means["total"], "train_onset_loss": means["onset"],
            "train_frame_loss": means["frame"], **scores,
        })
        window.clear()

    stopped_by_time = False
    frames = curriculum_frames(config, progress.step)
    bar = tqdm(total=config.steps, initial=progress.step, disable=not show_progress, unit="step")
    try:
        for batch in train_loader(config, progress.step) if progress.step < config.steps else ():
            frames = curriculum_frames(config, progress.step)
            losses = train_step(model, optimizer, crop_batch(batch, frames), config.noise, config.grad_clip,
                                config.bf16)
            window.append(losses)
            progress.step += 1
            progress.elapsed_s = elapsed_before + time.monotonic() - started
            bar.update(1)
            bar.set_postfix(loss=f"{losses['total']:.4f}", best_f=f"{max(progress.best_note_f, 0.0):.3f}")
            stopped_by_time = time.monotonic() >= deadline
            finished = stopped_by_time or progress.step >= config.steps
            if finished or progress.step % config.val_every == 0:
                validate_and_log(frames)
            if finished or progress.step % config.checkpoint_every == 0:
                save_checkpoint(out / LAST_CHECKPOINT, model, optimizer, scheduler, progress, config)
            if finished:
                break
    except KeyboardInterrupt:
        save_checkpoint(out / LAST_CHECKPOINT, model, optimizer, scheduler, progress, config)
        raise
    finally:
        bar.close()
    if not (out / BEST_WEIGHTS).exists():
        validate_and_log(frames)
    return TrainResult(progress.step, out / BEST_WEIGHTS, progress.best_note_f, stopped_by_time)
