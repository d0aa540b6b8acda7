"""What the training loops share: counters that survive a resume, checkpoints written atomically,
the CSV log, seeding and DataLoader worker set-up."""
from __future__ import annotations

import csv
import random
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from timbrescribe.outputs import atomic_path

LAST_CHECKPOINT = "last.pt"
BEST_WEIGHTS = "best.pt"
LOG_FILE = "train_log.csv"


@dataclass
class Progress:
    """Counters that survive a resume."""

    step: int = 0
    elapsed_s: float = 0.0
    best_note_f: float = -1.0  # best validation score so far (higher is better)


def limit_worker_threads(worker_id: int) -> None:
    """DataLoader workers only read files: one thread each leaves the cores to the training step."""
    torch.set_num_threads(1)


def save_atomically(payload, path: Path) -> None:
    """torch.save to a temporary file next to ``path``, then rename over it (outputs.atomic_path)."""
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def save_checkpoint(path: Path, model, optimizer, scheduler, progress: Progress, config) -> None:
    """Write everything needed to resume: weights, optimiser, scheduler, counters, RNG states, options."""
    save_atomically({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": asdict(progress),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        "config": asdict(config),
    }, path)


def load_checkpoint(path: Path, model, optimizer, scheduler) -> Progress:
    """Restore a ``save_checkpoint`` file into the given objects; returns the saved counters."""
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: holds RNG tuples
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return Progress(**state["progress"])


def append_log(path: Path, row: dict, columns: tuple[str, ...]) -> None:
    """Append one row to the CSV log at ``path`` (header first when the file is new)."""
    new_file = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        if new_file:
            writer.writeheader()
        writer.writerow(row)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise KeyboardInterrupt, so that the loops write last.pt
    before they stop: also in a job started in the background (where SIGINT starts out ignored) or
    stopped by kill. The previous handlers come back afterwards."""
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(signum, _interrupt) for signum in signals]
    try:
        yield
    finally:
        for signum, handler in zip(signals, previous):
            signal.signal(signum, handler)


def run_steps(
    config, batches: Iterable, step: Callable[[object], str], validate_and_log: Callable[[], None],
    checkpoint: Callable[[], None], progress: Progress, show_progress: bool,
) -> bool:
    """The loop both trainings share: ``step(batch)`` (returns the loss text for the progress bar)
    until config.steps or config.time_limit minutes, validating every config.val_every and writing
    last.pt every config.checkpoint_every steps and at the end (also when interrupted). Returns
    whether the time limit stopped it."""
    from tqdm import tqdm

    started, elapsed_before = time.monotonic(), progress.elapsed_s
    deadline = started + config.time_limit * 60 if config.time_limit > 0 else float("inf")
    stopped_by_time = False
    bar = tqdm(total=config.steps, initial=progress.step, disable=not show_progress, unit="step")
    try:
        for batch in batches if progress.step < config.steps else ():
            loss_text = step(batch)
            progress.step += 1
            progress.elapsed_s = elapsed_before + time.monotonic() - started
            bar.update(1)
            best = f"{progress.best_note_f:.4g}" if progress.best_note_f > Progress.best_note_f else "-"
            bar.set_postfix(loss=loss_text, best=best)
            stopped_by_time = time.monotonic() >= deadline
            finished = stopped_by_time or progress.step >= config.steps
            if finished or progress.step % config.val_every == 0:
                validate_and_log()
            if finished or progress.step % config.checkpoint_every == 0:
                checkpoint()
            if finished:
                break
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        bar.close()
    return stopped_by_time
