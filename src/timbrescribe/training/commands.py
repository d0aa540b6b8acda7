"""``timbrescribe train agnostic`` and ``train timbre``: options, input checks, and the hand-off to
the training loops.

TrainConfig and TimbreTrainConfig (each run's options with their defaults) live here, free of
torch, so that building the CLI parser stays light; the loops are in training/agnostic.py and
training/timbre.py.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from timbrescribe.constants import NOTE_LAYOUTS, TIMBRE_TIME_STRIDES
from timbrescribe.errors import UserError


@dataclass
class _RunConfig:
    """The options both trainings have."""

    data: list[str]
    val: str
    out: str
    data_weights: list[float] | None = None
    steps: int = 10000
    batch_size: int = 8
    clip_frames: int = 430
    lr: float = 3e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    noise: float = 0.01
    val_every: int = 500
    checkpoint_every: int = 250
    time_limit: float = 0.0
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    num_workers: int = 1
    max_parts: int = 4
    seed: int = 0
    bf16: bool = True
    resume: str | None = None


# The validation scores --select can follow (TrainConfig.select), with how the result names them.
SELECT_SCORES = {"note": "note onset F", "note+frame": "note F + frame F", "loss": "minus loss"}


@dataclass
class TrainConfig(_RunConfig):
    """Every option of a note-model training run (stored in last.pt)."""

    layout: str = "published"
    init: str = ""
    freeze_init: bool = False
    unfreeze: str = ""
    select: str = "note"
    curriculum_steps: int = 0
    start_clip_frames: int = 172
    lr_factor: float = 0.5
    lr_patience: int = 3
    val_clips: int = 48
    val_clip_frames: int = 860

    def unfreeze_prefixes(self) -> tuple[str, ...]:
        """The parameter-name prefixes of --unfreeze."""
        return tuple(prefix.strip() for prefix in self.unfreeze.split(",") if prefix.strip())


_HELP = {
    "steps": "total optimisation steps of the run, counted across resumes",
    "batch_size": "clips per step",
    "clip_frames": "clip length in frames (86.13 frames/s; 430 = 5 s)",
    "layout": "note branch layout: published (DESIGN.md §3), harmonic (harmonic aggregation at two "
              "depths), temporal (published + a refinement of the frame logits over ±0.46 s), light "
              "(published with a 25x1 octave context: 0.64x the network time), light-temporal (light "
              "+ that refinement), light-temporal-onsets (light-temporal + a refinement of the onset "
              "logits over ±0.33 s), light-temporal-energy-onsets (both refinements also see each "
              "row's input level) or light-temporal-energy-onsets-sustain (that + a last refinement of "
              "the frame logits over ±1.39 s) or light-temporal-energy-onsets-neighbours (its frame "
              "refinement also sees the onsets of the 5 rows either side); resume a run with the "
              "layout it was started with",
    "init": "start a new run from these note-model weights (best.pt, calibrated.pt); parameters of "
            "--layout that they lack start fresh (empty = random start)",
    "freeze_init": "train only the parameters --init lacks; the others, batch-norm statistics included, stay fixed",
    "unfreeze": "with --freeze-init, also train the parameters whose names start with one of these "
                "comma-separated prefixes (e.g. note_branch.frame_context,note_branch.onset_context)",
    "select": "what best.pt and the learning-rate schedule follow on validation: note (note onset F), "
              "note+frame (note onset F + frame F) or loss (the lowest validation loss)",
    "curriculum_steps": "ramp the clip length linearly from --start-clip-frames to --clip-frames over "
                        "this many steps (0 = no curriculum)",
    "start_clip_frames": "clip length at step 0 when --curriculum-steps > 0",
    "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "clip the gradient norm to this value",
    "noise": "largest level of the Gaussian noise added to the input audio, relative to its RMS (0 = off)",
    "lr_factor": "factor applied to the learning rate when the validation note F stops improving",
    "lr_patience": "validations without improvement before the learning rate drops",
    "val_every": "validate (and log a row of train_log.csv) every this many steps",
    "val_clips": "number of fixed validation clips",
    "val_clip_frames": "validation clip length in frames",
    "checkpoint_every": "write last.pt every this many steps",
    "time_limit": "stop cleanly after this many minutes of training (0 = no limit); validates and "
                  "checkpoints before exiting",
    "threads": "torch CPU threads",
    "num_workers": "DataLoader worker processes (0 = load in the main process)",
    "max_parts": "most instrument parts per clip (as rendered)",
    "seed": "seed of torch, numpy, random and the data sampler",
    "bf16": "train the network under bfloat16 autocast (front end, losses and weights stay float32); "
            "about 1.8x faster on CPUs with AVX512-BF16 or AMX, slower on others",
}


@dataclass
class TimbreTrainConfig(_RunConfig):
    """Every option of a timbre-branch training run (stored in last.pt)."""

    steps: int = 20000
    clip_frames: int = 344
    lr: float = 1e-3
    val_every: int = 250
    restart_steps: int = 2000
    anchors: int = 256
    candidates: int = 1024
    temperature: float = 0.15
    remix_gain_db: float = 6.0
    val_examples: int = 48
    time_stride: int = 1
    register_balance: bool = False


_TIMBRE_HELP = {
    "steps": _HELP["steps"],
    "batch_size": _HELP["batch_size"],
    "clip_frames": "clip length in frames (86.13 frames/s; 344 = 4 s)",
    "lr": "AdamW learning rate (the peak of each cosine cycle)",
    "weight_decay": _HELP["weight_decay"],
    "grad_clip": _HELP["grad_clip"],
    "noise": _HELP["noise"],
    "restart_steps": "length of the first cosine learning-rate cycle; each next one is twice as long",
    "anchors": "anchor cells per clip of the InfoNCE loss (memory is anchors x candidates per clip)",
    "candidates": "cells drawn per clip (equal weight per part) that anchors are contrasted with",
    "temperature": "InfoNCE temperature",
    "remix_gain_db": "clips are re-mixed from their stems (a random subset of >= 2 parts) with gains "
                     "drawn within ± this many dB",
    "val_every": _HELP["val_every"],
    "val_examples": "validation examples with two or more parts, scored whole",
    "time_stride": "frames between the branch's computed embeddings: 1 (every frame, DESIGN.md §3) or 2 "
                   "(every other frame, held for two: half the cost); resume a run with the stride it "
                   "was started with",
    "register_balance": "draw the loss's cells with equal weight per octave within each part too, so "
                        "that a part's low and high notes meet as positives",
    "checkpoint_every": _HELP["checkpoint_every"],
    "time_limit": _HELP["time_limit"],
    "threads": _HELP["threads"],
    "num_workers": _HELP["num_workers"],
    "max_parts": _HELP["max_parts"],
    "seed": _HELP["seed"],
    "bf16": "run the timbre branch under bfloat16 autocast (front end, loss and weights stay float32)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_arguments(parser, TrainConfig(data=[], val="", out=""), _HELP)


def add_timbre_arguments(parser: argparse.ArgumentParser) -> None:
    _add_arguments(parser, TimbreTrainConfig(data=[], val="", out=""), _TIMBRE_HELP)


def _add_arguments(parser: argparse.ArgumentParser, defaults, helps: dict[str, str]) -> None:
    parser.add_argument("--data", action="append", required=True, metavar="DIR",
                        help="training dataset rendered by `timbrescribe data render` (repeat to mix several)")
    parser.add_argument("--data-weight", dest="data_weights", type=float, action="append", metavar="W",
                        help="sampling weight of each --data directory, in the same order (default: equal)")
    parser.add_argument("--val", required=True, metavar="DIR", help="validation dataset directory")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory for last.pt, best.pt and train_log.csv; a run resumes "
                             "from DIR/last.pt when it exists")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="resume from this last.pt instead of the one in --out")
    parser.add_argument("--export-onnx", metavar="PATH",
                        help="when training ends, export best.pt as an ONNX model to PATH")
    for name, help_text in helps.items():
        default = getattr(defaults, name)
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(default, bool) else {"type": type(default)}
        parser.add_argument("--" + name.replace("_", "-"), default=default, help=f"{help_text} (default: {default})",
                            **kind)


def config_from_args(args: argparse.Namespace, kind: type = TrainConfig):
    """The ``kind`` config (TrainConfig or TimbreTrainConfig) named by parsed arguments, after
    checking them."""
    config = kind(**{f.name: getattr(args, f.name) for f in fields(kind)})
    _check(config)
    return config


_POSITIVE_OPTIONS = (
    "steps", "batch_size", "clip_frames", "val_every", "val_clips", "val_clip_frames", "checkpoint_every",
    "threads", "max_parts", "start_clip_frames", "restart_steps", "anchors", "candidates", "val_examples",
)


def _check(config) -> None:
    for option in _POSITIVE_OPTIONS:
        if getattr(config, option, 1) < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1")
    if config.num_workers < 0 or getattr(config, "curriculum_steps", 0) < 0 or config.time_limit < 0:
        raise UserError("--num-workers, --curriculum-steps and --time-limit must not be negative")
    if getattr(config, "layout", NOTE_LAYOUTS[0]) not in NOTE_LAYOUTS:
        raise UserError(f"--layout must be one of {', '.join(NOTE_LAYOUTS)}, got {config.layout!r}")
    if getattr(config, "select", TrainConfig.select) not in SELECT_SCORES:
        raise UserError(f"--select must be one of {', '.join(SELECT_SCORES)}, got {config.select!r}")
    if getattr(config, "freeze_init", False) and not config.init:
        raise UserError("--freeze-init needs --init")
    if getattr(config, "unfreeze", "") and not config.freeze_init:
        raise UserError("--unfreeze needs --freeze-init")
    if getattr(config, "init", "") and not Path(config.init).is_file():
        raise UserError(f"weights to start from not found: {config.init}")
    if getattr(config, "time_stride", TIMBRE_TIME_STRIDES[0]) not in TIMBRE_TIME_STRIDES:
        raise UserError(f"--time-stride must be one of {', '.join(map(str, TIMBRE_TIME_STRIDES))}, "
                        f"got {config.time_stride}")
    if getattr(config, "temperature", 1.0) <= 0:
        raise UserError("--temperature must be positive")
    if config.data_weights is not None:
        if len(config.data_weights) != len(config.data):
            raise UserError(f"got {len(config.data_weights)} --data-weight values for {len(config.data)} --data dirs")
        if min(config.data_weights) < 0 or sum(config.data_weights) <= 0:
            raise UserError("--data-weight values must be non-negative and not all zero")
    for root in [*config.data, config.val]:
        if not Path(root).is_dir():
            raise UserError(f"dataset directory not found: {root}")
    if config.resume and not Path(config.resume).is_file():
        raise UserError(f"checkpoint to resume from not found: {config.resume}")


def _check_datasets(roots: list[str], max_parts: int) -> None:
    """UserError unless every root is a rendered dataset with at least one usable example."""
    from timbrescribe.data.dataset import ClipDataset

    for root in roots:
        try:
            dataset = ClipDataset(root, max_parts=max_parts)
        except (FileNotFoundError, ValueError) as err:
            raise UserError(f"{root}: {err}") from None
        if len(dataset) == 0:
            raise UserError(f"dataset holds no examples: {root}")


def run_timbre(args: argparse.Namespace) -> int:
    config = config_from_args(args, TimbreTrainConfig)
    _check_datasets([*config.data, config.val], config.max_parts)
    if not Path(args.note_model).is_file():
        raise UserError(f"note model not found: {args.note_model}")

    from timbrescribe.training.common import interrupt_on_signals
    from timbrescribe.training.timbre import train_timbre

    with interrupt_on_signals():
        result = train_timbre(config)
    status = "stopped at the time limit" if result.stopped_by_time_limit else "finished"
    print(f"training {status} at step {result.step}")
    print(f"best timbre branch: {result.best_path} (validation note accuracy, oracle K, {result.best_note_f:.4f})")
    if args.export_onnx:
        from timbrescribe.export import export_separation_onnx
        from timbrescribe.model import SeparationModel, load_agnostic_model, load_timbre_branch

        model = SeparationModel(load_agnostic_model(args.note_model), load_timbre_branch(result.best_path))
        network, energy = export_separation_onnx(model, args.export_onnx)
        print(f"ONNX models: {network} (network), {energy} (energy)")
    return 0


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    _check_datasets([*config.data, config.val], config.max_parts)

    from timbrescribe.training.agnostic import train
    from timbrescribe.training.common import interrupt_on_signals

    with interrupt_on_signals():
        result = train(config)
    status = "stopped at the time limit" if result.stopped_by_time_limit else "finished"
    print(f"training {status} at step {result.step}")
    print(f"best model: {result.best_path} (validation {SELECT_SCORES[config.select]} {result.best_note_f:.4f})")
    if args.export_onnx:
        from timbrescribe.export import export_agnostic_onnx
        from timbrescribe.model import load_agnostic_model

        network, energy = export_agnostic_onnx(load_agnostic_model(result.best_path), args.export_onnx)
        print(f"ONNX models: {network} (network), {energy} (energy)")
    return 0
