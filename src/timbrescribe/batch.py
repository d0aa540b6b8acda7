"""Batch transcription: every input file becomes one set of outputs, transcribed in this process,
in worker processes (``--jobs N``) or on a Ray cluster (ray_engine.py), with the same per-file
results everywhere.

- A file's outputs (the formats asked for, plus the record ``<name>.timbrescribe``) replace the
  previous ones as a set or not at all (outputs.atomic_paths): a failure leaves the previous set,
  SIGINT or SIGTERM leave either the old set or the new one.
- Any exception while a file is transcribed or written becomes that file's failed FileResult; the
  batch goes on with the next file.
- Inputs and output folders may be storage URLs (storage_urls.py): the worker downloads the input
  into a temporary folder, writes the output set there as for a local folder, then uploads it
  object by object with the record last, the old record being removed first, so a set whose
  upload did not finish has no record and is never taken as complete. The temporary folder goes
  whatever happens.
- The record names the model (SHA-256 of its graphs), the settings, the input's size and
  modification time (or version, for a stored object) and each output's SHA-256, so
  ``--skip-existing`` (``up_to_date``) can tell a complete set made the same way from anything else.
- Engines run jobs and say when each is done; ``run_batch`` keeps them fed and tries a file again
  (up to MAX_ATTEMPTS in all) when the worker running it was lost.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Protocol

from timbrescribe import storage_urls
from timbrescribe.errors import UserError
from timbrescribe.inference import AgnosticSession
from timbrescribe.options import model_digest, open_session
from timbrescribe.outputs import atomic_paths, stale_temporaries
from timbrescribe.storage_urls import is_url
from timbrescribe.transcription import (
    Transcription,
    decoder_settings,
    package_cluster_settings,
    parse_instruments,
    transcribe,
)

# Output kind -> (file suffix, Transcription method that writes it).
OUTPUTS = {
    "midi": (".mid", "write_midi"),
    "json": (".json", "write_json"),
    "csv": (".csv", "write_csv"),
    "plot": (".png", "write_plot"),
}
# The record beside each set of outputs; no output ends like this, so the two never collide.
RECORD_SUFFIX = ".timbrescribe"
RECORD_FORMAT = "timbrescribe-record"
RECORD_VERSION = 1
# Tries of one file when the worker running it dies (a crash, the OOM killer, a lost node).
MAX_ATTEMPTS = 3
# How often a waiting engine looks at progress reports, seconds.
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Job:
    """One input file: ``name`` as the user gave it (for messages), ``path`` absolute,
    ``base`` the absolute output path without suffix, ``shown_base`` the same as the user wrote
    the output folder. Each of them may be a storage URL instead of a local path."""

    index: int
    name: str
    path: Path | str
    base: Path | str
    shown_base: Path | str


@dataclass(frozen=True)
class BatchConfig:
    """What every file of a batch is transcribed with; picklable, so workers get it whole.
    ``recipe`` (JSON) is what the record keeps: the same recipe gives the same outputs."""

    kinds: tuple[str, ...]
    instruments: str | int
    onset_threshold: float | None
    frame_threshold: float | None
    min_note_ms: float | None
    model_path: Path | None
    threads: int | None
    recipe: str


@dataclass
class FileResult:
    """How one input went: status "done", "skipped" (outputs up to date) or "failed"."""

    input: str
    status: str
    outputs: list[str] = field(default_factory=list)
    duration: float | None = None
    notes: int | None = None
    tracks: int | None = None
    instruments_estimated: bool | None = None
    seconds: float = 0.0
    error: str | None = None

    def json_line(self) -> str:
        """The result as one line of JSON (``--log-json``)."""
        values = asdict(self)
        values["seconds"] = round(self.seconds, 3)
        return json.dumps(values)


@dataclass(frozen=True)
class WorkerLost:
    """An engine's answer for a job whose worker died before it could answer."""

    reason: str


class Stopped(BaseException):
    """SIGTERM came: unwinding removes the temporary files of an unfinished set, then the run stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def make_config(
    kinds: list[str], instruments: str | int, onset_threshold: float | None, frame_threshold: float | None,
    min_note_ms: float | None, model_path: Path | None, threads: int | None,
) -> BatchConfig:
    """The batch configuration, with the recipe that the records keep (the model's digest and the
    settings as transcribe() resolves them)."""
    from importlib.metadata import PackageNotFoundError, version

    k = parse_instruments(instruments)
    try:
        package_version = version("timbrescribe")
    except PackageNotFoundError:
        package_version = "unknown"
    recipe = {
        "timbrescribe": package_version,
        "model_sha256": model_digest(k, model_path),
        "instruments": "auto" if k is None else k,
        "decoder": decoder_settings(onset_threshold, frame_threshold, min_note_ms, separation=k != 1).to_dict(),
        "clustering": None if k == 1 else package_cluster_settings().to_dict(),
    }
    return BatchConfig(
        kinds=tuple(kinds), instruments=instruments, onset_threshold=onset_threshold,
        frame_threshold=frame_threshold, min_note_ms=min_note_ms,
        model_path=None if model_path is None else Path(model_path).absolute(), threads=threads,
        recipe=json.dumps(recipe, sort_keys=True),
    )


def _suffixed(base: Path | str, suffix: str) -> Path | str:
    return base + suffix if is_url(base) else base.with_name(base.name + suffix)


def output_paths(base: Path | str, kinds: tuple[str, ...] | list[str]) -> list[Path | str]:
    """The output files of ``kinds`` for one input: ``base`` + each kind's suffix."""
    return [_suffixed(base, OUTPUTS[kind][0]) for kind in kinds]


def record_path(base: Path | str) -> Path | str:
    """The record of how the outputs at ``base`` were made."""
    return _suffixed(base, RECORD_SUFFIX)


def _read_bytes(location: Path | str) -> bytes:
    return storage_urls.read_bytes(location) if is_url(location) else location.read_bytes()


def _file_digest(location: Path | str) -> str:
    return hashlib.sha256(_read_bytes(location)).hexdigest()


def _input_identity(location: Path | str) -> dict:
    if is_url(location):
        return storage_urls.identity(location)
    stat = location.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@contextmanager
def _staged(job: Job) -> Iterator[Job]:
    """``job`` on local files: itself when its input and outputs are local, else a copy whose stored
    input is downloaded into a temporary folder and whose outputs are based there; the folder is
    removed at the end, whatever happens."""
    if not is_url(job.path) and not is_url(job.base):
        yield job
        return
    with tempfile.TemporaryDirectory(prefix="timbrescribe-") as folder:
        path, base = job.path, job.base
        if is_url(path):
            path = Path(folder, Path(job.path).name)
            storage_urls.download(job.path, path)
        if is_url(base):
            base = Path(folder, "outputs", Path(job.base).name)
        yield replace(job, path=path, base=base)


def _upload_output_set(staged: Path, base: str, kinds: tuple[str, ...]) -> None:
    """Upload the output set written at ``staged`` to the URL ``base``, one object at a time: the old
    record is removed first and the new one put last, so a set that is not wholly uploaded has no
    record (and --skip-existing makes it again)."""
    storage_urls.remove(record_path(base))
    for source, target in zip(output_paths(staged, kinds), output_paths(base, kinds)):
        storage_urls.upload(source, target)
    storage_urls.upload(record_path(staged), record_path(base))


def write_output_set(result: Transcription, job: Job, config: BatchConfig, input_identity: dict) -> None:
    """Write the outputs of ``config.kinds`` and the record for ``job`` (local files) as one set:
    all of them replace the previous files, or none does. ``input_identity`` is what the record
    keeps of the input. Temporary files that a killed earlier attempt left for these outputs go
    first (only one job at a time writes an output set)."""
    targets = output_paths(job.base, config.kinds)
    job.base.parent.mkdir(parents=True, exist_ok=True)
    for target in [*targets, record_path(job.base)]:
        for stale in stale_temporaries(target):
            stale.unlink(missing_ok=True)
    with atomic_paths([*targets, record_path(job.base)]) as temporaries:
        for kind, temporary in zip(config.kinds, temporaries):
            getattr(result, OUTPUTS[kind][1])(temporary)
        record = {
            "format": RECORD_FORMAT,
            "version": RECORD_VERSION,
            "recipe": json.loads(config.recipe),
            "input": input_identity,
            "outputs": {target.name: _file_digest(temporary) for target, temporary in zip(targets, temporaries)},
            "duration": result.duration_s,
            "notes": len(result.notes),
            "tracks": len(result.tracks),
            "instruments_estimated": result.instruments_estimated,
        }
        temporaries[-1].write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def up_to_date(job: Job, config: BatchConfig) -> FileResult | None:
    """A "skipped" result when the outputs of ``job`` are all there, unchanged since the record
    beside them was written with the same recipe from the same input; else None."""
    try:
        record = json.loads(_read_bytes(record_path(job.base)))
        digests = record["outputs"]
        if (
            record.get("format") != RECORD_FORMAT
            or record.get("recipe") != json.loads(config.recipe)
            or record.get("input") != _input_identity(job.path)
        ):
            return None
        for target in output_paths(job.base, config.kinds):
            if digests.get(Path(target).name) != _file_digest(target):
                return None
        return FileResult(
            job.name, "skipped", outputs=[str(p) for p in output_paths(job.shown_base, config.kinds)],
            duration=record["duration"], notes=record["notes"], tracks=record["tracks"],
            instruments_estimated=record["instruments_estimated"],
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, unreadable or foreign
        return None


def transcribe_job(
    job: Job, config: BatchConfig, session: AgnosticSession, progress: Callable[[int, int], None] | None = None
) -> FileResult:
    """Transcribe one file and write its output set (through a temporary folder when the input or
    the outputs are stored at URLs); any exception becomes a failed result."""
    started = time.perf_counter()
    read_from = None
    try:
        identity = _input_identity(job.path)  # before the input is read: a change while it is read counts
        with _staged(job) as local:
            read_from = local.path
            result = transcribe(
                local.path, session=session, instruments=config.instruments, onset_threshold=config.onset_threshold,
                frame_threshold=config.frame_threshold, min_note_ms=config.min_note_ms, progress=progress,
            )
            write_output_set(result, local, config, identity)
            if local.base != job.base:
                _upload_output_set(local.base, job.base, config.kinds)
    except Exception as err:  # noqa: BLE001 - one file's failure, whatever it is, must not end the batch
        return failed_result(job, err, time.perf_counter() - started, read_from)
    return FileResult(
        job.name, "done", outputs=[str(p) for p in output_paths(job.shown_base, config.kinds)],
        duration=result.duration_s, notes=len(result.notes), tracks=len(result.tracks),
        instruments_estimated=result.instruments_estimated, seconds=time.perf_counter() - started,
    )


def failed_result(
    job: Job, error: BaseException | str, seconds: float = 0.0, read_from: Path | str | None = None
) -> FileResult:
    """A failed result whose error is one line: the message of a user or OS error without the
    file name in front, or the kind and message of anything else. ``read_from``, the local copy
    of a stored input, is named in the message as the input."""
    if isinstance(error, (UserError, OSError)):
        text = str(error) if read_from is None else str(error).replace(str(read_from), str(job.path))
        text = text.removeprefix(f"{job.path}: ")
    elif isinstance(error, BaseException):
        text = f"unexpected {type(error).__name__}: {error}"
    else:
        text = error
    return FileResult(job.name, "failed", seconds=seconds, error=" ".join(text.split()))


# --- workers: one session per process, kept between files -------------------------------------

_worker_session: tuple[BatchConfig, AgnosticSession] | None = None


def run_in_worker(job: Job, config: BatchConfig, progress: Callable[[int, int], None] | None = None) -> FileResult:
    """transcribe_job in a worker process (of this machine or of a cluster), on the session this
    process keeps for ``config``; a model here that differs from the one the batch was checked
    with fails the file."""
    global _worker_session
    try:
        if _worker_session is None or _worker_session[0] != config:
            _worker_session = None
            k = parse_instruments(config.instruments)
            if model_digest(k, config.model_path) != json.loads(config.recipe)["model_sha256"]:
                raise UserError("the model files on this worker differ from the ones the batch was checked with; "
                                "install the same timbrescribe (and --model file) on every machine")
            _worker_session = (config, open_session(k, config.model_path, config.threads))
    except Exception as err:  # noqa: BLE001 - reported as this file's failure
        return failed_result(job, err)
    return transcribe_job(job, config, _worker_session[1], progress)


def _raise_stopped(signum: int, frame) -> None:
    raise Stopped(signum)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """During the block SIGTERM raises Stopped (in the main thread), so that unwinding removes
    unfinished temporary files before the process ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- engines ------------------------------------------------------------------------------------

Outcome = FileResult | WorkerLost
ProgressHook = Callable[[Job, int, int], None]


class Engine(Protocol):
    """Runs jobs: ``slots`` at a time; ``wait`` blocks briefly and returns the jobs that ended."""

    slots: int

    def submit(self, job: Job) -> None: ...

    def wait(self) -> list[tuple[Job, Outcome]]: ...

    def close(self, stopping: bool) -> None: ...


class InlineEngine:
    """One job at a time in this process, on one session."""

    slots = 1

    def __init__(self, config: BatchConfig, session: AgnosticSession, progress: ProgressHook) -> None:
        self._config, self._session, self._progress = config, session, progress
        self._queued: list[Job] = []

    def submit(self, job: Job) -> None:
        self._queued.append(job)

    def wait(self) -> list[tuple[Job, Outcome]]:
        job = self._queued.pop(0)
        return [(job, transcribe_job(job, self._config, self._session,
                                     lambda done, total: self._progress(job, done, total)))]

    def close(self, stopping: bool) -> None:
        pass


# In a worker process of ProcessEngine: the batch configuration, the queue for progress reports,
# and whether a job is running (SIGTERM then unwinds it; otherwise the process just ends).
_process_state: dict = {}


def _start_process_worker(config: BatchConfig, reports) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops its workers itself
    signal.signal(signal.SIGTERM, _stop_process_worker)
    _process_state.update(config=config, reports=reports, busy=False)


def _stop_process_worker(signum: int, frame) -> None:
    if _process_state.get("busy"):
        raise Stopped(signum)
    os._exit(128 + signum)


def _report_progress(job: Job, done: int, total: int) -> None:
    try:
        _process_state["reports"].put((job.index, done, total))
    except Exception:  # noqa: BLE001 - a lost progress report must not fail the file
        pass


def _run_process_job(job: Job) -> FileResult:
    _process_state["busy"] = True
    try:
        return run_in_worker(job, _process_state["config"], lambda done, total: _report_progress(job, done, total))
    except Stopped as stop:  # temporary files are gone; the main process knows it is stopping
        os._exit(128 + stop.signum)
    finally:
        _process_state["busy"] = False


class ProcessEngine:
    """``workers`` processes of this machine, each with one session kept between files; a dead
    worker process costs the jobs it was running one attempt, and a fresh pool takes over."""

    def __init__(self, config: BatchConfig, workers: int, progress: ProgressHook, jobs: list[Job]) -> None:
        self.slots = workers
        self._config, self._progress = config, progress
        self._jobs = {job.index: job for job in jobs}
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with runtime threads
        self._older_children = set(multiprocessing.active_children())
        self._manager = SyncManager(ctx=self._context)
        self._manager.start(signal.signal, (signal.SIGINT, signal.SIG_IGN))
        self._reports = self._manager.Queue()
        self._pool: futures.ProcessPoolExecutor | None = None
        self._running: dict[futures.Future, Job] = {}

    def submit(self, job: Job) -> None:
        if self._pool is not None:
            try:
                self._running[self._pool.submit(_run_process_job, job)] = job
                return
            except BrokenProcessPool:  # a worker died while none of its jobs was running
                self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = futures.ProcessPoolExecutor(
            self.slots, mp_context=self._context, initializer=_start_process_worker,
            initargs=(self._config, self._reports),
        )
        self._running[self._pool.submit(_run_process_job, job)] = job

    def wait(self) -> list[tuple[Job, Outcome]]:
        done, _ = futures.wait(self._running, timeout=POLL_SECONDS, return_when=futures.FIRST_COMPLETED)
        self._pass_on_progress()
        ended: list[tuple[Job, Outcome]] = []
        for future in done:
            job = self._running.pop(future)
            try:
                ended.append((job, future.result()))
            except BrokenProcessPool:
                ended.append((job, WorkerLost("its worker process died")))
            except Exception as err:  # noqa: BLE001 - e.g. a result that could not come back
                ended.append((job, WorkerLost(f"its worker failed ({type(err).__name__}: {err})")))
        if any(isinstance(outcome, WorkerLost) for _, outcome in ended) and self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None  # the next submit starts a fresh pool
        return ended

    def _pass_on_progress(self) -> None:
        while True:
            try:
                index, done, total = self._reports.get_nowait()
            except Exception:  # noqa: BLE001 - empty (queue.Empty), or the manager is gone
                return
            if index in self._jobs:
                self._progress(self._jobs[index], done, total)

    def close(self, stopping: bool) -> None:
        if stopping:
            # SIGTERM to every worker: a running job removes its temporary files (or finishes
            # moving a complete set into place) and the process ends.
            children = [child for child in multiprocessing.active_children() if child not in self._older_children]
            for child in children:
                child.terminate()
            deadline = time.monotonic() + 30.0
            for child in children:
                child.join(max(0.0, deadline - time.monotonic()))
                if child.is_alive():
                    child.kill()
        if self._pool is not None:
            self._pool.shutdown(wait=not stopping, cancel_futures=True)
        try:
            self._manager.shutdown()
        except OSError:  # already ended with the workers
            pass


def run_batch(
    jobs: list[Job], engine: Engine, report: Callable[[Job, FileResult], None],
    retrying: Callable[[Job, str, int], None],
) -> None:
    """Run every job on ``engine``, at most ``engine.slots`` at a time, and ``report`` each
    result. A job whose worker was lost goes again (``retrying(job, reason, attempt)``) up to
    MAX_ATTEMPTS tries in all, then fails. ``engine`` is closed at the end, as stopping when an
    exception (an interrupt) ends the batch early."""
    waiting = deque(jobs)
    tries: Counter[int] = Counter()
    running = 0
    stopping = True
    try:
        while waiting or running:
            while waiting and running < engine.slots:
                job = waiting.popleft()
                tries[job.index] += 1
                engine.submit(job)
                running += 1
            for job, outcome in engine.wait():
                running -= 1
                if isinstance(outcome, WorkerLost):
                    if tries[job.index] < MAX_ATTEMPTS:
                        retrying(job, outcome.reason, tries[job.index] + 1)
                        waiting.appendleft(job)
                        continue
                    outcome = failed_result(job, f"{outcome.reason}, {MAX_ATTEMPTS} times")
                report(job, outcome)
        stopping = False
    finally:
        engine.close(stopping)
