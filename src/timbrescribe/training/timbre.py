"""Training loop of the timbre branch (DESIGN.md §4): multi-positive InfoNCE over the cells that one
part plays, with the note model frozen (it is not needed here at all: the branches share only the
fixed front end, and the loss reads the ground-truth cells).

Clips are re-mixed from the rendered stems every time (a random subset of two or more parts with
random gains), so the same example yields many mixtures. The front end runs on the fly (float32);
it costs a few % of the branch. Validation scores what the branch is for: the ground-truth notes of
each held-out-timbre example are pooled and clustered with the true number of parts, and the share
of notes that land with their own part (best one-to-one matching of groups to parts) is the score.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.optimize import linear_sum_assignment

from timbrescribe.clustering import cluster_notes
from timbrescribe.data.storage import load_manifest, load_notes, part_notes
from timbrescribe.errors import UserError
from timbrescribe.frontend import Frontend
from timbrescribe.model import TimbreBranch
from timbrescribe.pooling import pool_dense
from timbrescribe.training.agnostic import TrainResult, add_noise, train_loader
from timbrescribe.training.commands import TimbreTrainConfig
from timbrescribe.training.common import (
    BEST_WEIGHTS, LAST_CHECKPOINT, LOG_FILE, Progress, append_log, load_checkpoint,
    run_steps, save_atomically, save_checkpoint, seed_everything,
)
from timbrescribe.training.losses import timbre_info_nce

LOG_COLUMNS = ("step", "time_s", "lr", "train_loss", "val_loss", "val_note_accuracy")


def train_step(model: TimbreBranch, frontend: Frontend, optimizer, batch: dict, config: TimbreTrainConfig,
               generator: torch.Generator) -> float:
    """One optimisation step; returns the loss before the update."""
    model.train()
    with torch.no_grad():
        spectrum = frontend(add_noise(batch["audio"], config.noise))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
        embeddings = model(spectrum)
    loss = timbre_info_nce(embeddings.float(), batch["frame"], batch["part_mask"], config.anchors,
                           config.candidates, config.temperature, generator, config.register_balance)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return loss.item()


@dataclass
class TimbreValidationSet:
    """Whole validation examples with two or more parts: normalised spectra, per-part frame rolls
    and the notes of each part."""

    spectra: list[torch.Tensor]  # (288, T) each
    rolls: list[torch.Tensor]  # (parts, 84, T) each
    notes: list[list[list]]  # per example, per part: Notes


def load_timbre_validation(root: str | Path, count: int) -> TimbreValidationSet:
    """The first ``count`` examples of ``root`` that have at least two parts."""
    from timbrescribe.data.labels import piano_rolls

    frontend = Frontend()
    spectra, rolls, notes = [], [], []
    for record in load_manifest(root)["examples"]:
        if len(spectra) >= count:
            break
        if len(record["programs"]) < 2:
            continue
        path = Path(root) / record["file"]
        audio, _ = soundfile.read(path.with_suffix(".flac"), dtype="float32", always_2d=True)
        with torch.no_grad():
            spectrum = frontend(torch.from_numpy(audio[:, 0].copy())[None])[0]
        parts = part_notes(load_notes(path.with_suffix(".npz")), len(record["programs"]))
        spectra.append(spectrum)
        rolls.append(torch.from_numpy(np.stack([piano_rolls(p, spectrum.shape[-1])[1] for p in parts])))
        notes.append(parts)
    return TimbreValidationSet(spectra, rolls, notes)


def note_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of items whose group matches their true part under the best one-to-one matching."""
    if len(truth) == 0:
        return 1.0
    confusion = np.zeros((labels.max() + 1, truth.max() + 1))
    np.add.at(confusion, (labels, truth), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return float(confusion[rows, cols].sum() / len(truth))


@torch.no_grad()
def validate(model: TimbreBranch, val: TimbreValidationSet, config: TimbreTrainConfig) -> dict[str, float]:
    """Mean InfoNCE (fixed cell draws) and mean note accuracy with oracle K over the examples."""
    model.eval()
    generator = torch.Generator().manual_seed(12345)
    losses, accuracies = [], []
    for spectrum, rolls, parts in zip(val.spectra, val.rolls, val.notes):
        embedding = model(spectrum[None])
        mask = torch.ones(rolls.shape[0], dtype=torch.bool)
        losses.append(timbre_info_nce(embedding, rolls[None], mask[None], config.anchors, config.candidates,
                                      config.temperature, generator).item())
        all_notes = [note for part in parts for note in part]
        truth = np.concatenate([np.full(len(part), i) for i, part in enumerate(parts)]).astype(np.int64)
        weight = rolls.amax(dim=0).numpy()
        vectors = pool_dense(embedding[0].numpy(), weight, all_notes)
        clustering = cluster_notes(vectors, k=len(parts))
        accuracies.append(note_accuracy(clustering.labels, truth))
    return {"val_loss": float(np.mean(losses)), "val_note_accuracy": float(np.mean(accuracies))}


def train_timbre(config: TimbreTrainConfig, show_progress: bool = True) -> TrainResult:
    """Train (or resume) until ``config.steps`` or the time limit; returns where best.pt is."""
    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    model, frontend = TimbreBranch(config.time_stride), Frontend()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=config.restart_steps, T_mult=2)
    resume_from = Path(config.resume) if config.resume else out / LAST_CHECKPOINT
    progress = Progress()
    if config.resume or resume_from.exists():
        progress = load_checkpoint(resume_from, model, optimizer, scheduler)
        if int(model.time_stride) != config.time_stride:
            raise UserError(f"{resume_from} was trained with --time-stride {int(model.time_stride)}; "
                            f"resume it with that stride, not {config.time_stride}")
    generator = torch.Generator().manual_seed(config.seed * 7919 + progress.step)

    val = load_timbre_validation(config.val, config.val_examples)
    window: list[float] = []

    def validate_and_log() -> None:
        scores = validate(model, val, config)
        if scores["val_note_accuracy"] > progress.best_note_f:
            progress.best_note_f = scores["val_note_accuracy"]
            save_atomically(model.state_dict(), out / BEST_WEIGHTS)
        append_log(out / LOG_FILE, {
            "step": progress.step, "time_s": round(progress.elapsed_s, 1), "lr": optimizer.param_groups[0]["lr"],
            "train_loss": float(np.mean(window)) if window else float("nan"), **scores,
        }, LOG_COLUMNS)
        window.clear()

    def step(batch: dict) -> str:
        window.append(train_step(model, frontend, optimizer, batch, config, generator))
        scheduler.step()
        return f"{window[-1]:.3f}"

    stopped_by_time = run_steps(
        config, train_loader(config, progress.step, remix=True, remix_gain_db=config.remix_gain_db), step,
        validate_and_log,
        lambda: save_checkpoint(out / LAST_CHECKPOINT, model, optimizer, scheduler, progress, config),
        progress, show_progress,
    )
    if not (out / BEST_WEIGHTS).exists():
        validate_and_log()
    return TrainResult(progress.step, out / BEST_WEIGHTS, progress.best_note_f, stopped_by_time)

