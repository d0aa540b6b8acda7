"""``--engine ray``: the batch on a Ray cluster (optional extra: ``pip install 'timbrescribe[ray]'``).

Each file is one Ray task needing one CPU. The task runs batch.run_in_worker in a Ray worker
process, which keeps one single-threaded session between the files it is given; the worker reads
the input and writes the output set itself, so paths must mean the same on every machine (a shared
file system mounted at the same place; the driver passes absolute paths), or be storage URLs,
which each worker downloads from and uploads to with the fsspec package and the credentials of its
own machine (storage_urls.py). The driver keeps at most
``slots`` tasks in flight (default: the cluster's CPUs); a task whose worker or node died is run
again by batch.run_batch, up to batch.MAX_ATTEMPTS tries.

Progress within a file: with a progress hook the engine starts one small Ray actor (no CPU,
owned by this driver, gone with close()); each task sends it (submission, done, total) as the
model's chunks pass, at most every REPORT_SECONDS, without waiting for an answer (a task that has
its result waits up to FLUSH_SECONDS for its last report to arrive), and ``wait`` takes what came
in since its last look. The actor keeps only the newest counts of each running task. Reports
are best effort: one that is lost, or an actor that is gone or slow to start, costs the
progress bar, never a file or its result.
"""
from __future__ import annotations

import logging
import socket
import sys
import time

from timbrescribe.batch import (
    POLL_SECONDS,
    BatchConfig,
    FileResult,
    Job,
    Outcome,
    ProgressHook,
    WorkerLost,
    run_in_worker,
)
from timbrescribe.errors import UserError
from timbrescribe.options import first_line

# How long one wait for finished tasks may block, seconds (signals are handled in between).
WAIT_SECONDS = 0.5
# How long the head of a cluster given by --address may take to answer, seconds.
CONNECT_SECONDS = 10.0
# How long a stopping run waits for its cancelled tasks to clean up, seconds.
CANCEL_SECONDS = 30.0
# A task sends the chunk counts of its file at most this often, seconds (the last one always).
REPORT_SECONDS = 0.25
# How long a task that has its result waits for its last report to reach the actor, seconds:
# then the report comes before the result; if it does not, only that report is lost.
FLUSH_SECONDS = 0.5
# How long the driver waits for the actor's reports once a task has ended, seconds; when they
# are later than that, the file's last counts may be missed (they are taken at the next look).
DRAIN_SECONDS = 1.0
# How long the engine waits for a new progress actor to start (a worker process), seconds; one
# that is not up by then is given up: no progress within files, the batch runs all the same.
ACTOR_START_SECONDS = 60.0


class _ProgressReports:
    """The Ray actor that the tasks report to: the newest (done, total) of each submission."""

    def __init__(self) -> None:
        self._newest: dict[int, tuple[int, int]] = {}

    def report(self, submission: int, done: int, total: int) -> None:
        self._newest[submission] = (done, total)

    def drain(self) -> dict[int, tuple[int, int]]:
        newest, self._newest = self._newest, {}
        return newest


class _Reporter:
    """The progress callback of one task: sends the counts to the actor, throttled, never waiting
    for an answer; a failure to send ends this task's reports, never the task."""

    def __init__(self, reports, submission: int) -> None:
        self._reports, self._submission = reports, submission
        self._sent_at = float("-inf")
        self._last = None  # the ObjectRef of the last report sent

    def __call__(self, done: int, total: int) -> None:
        if self._reports is None:
            return
        now = time.monotonic()
        if done < total and now - self._sent_at < REPORT_SECONDS:
            return
        try:
            self._last = self._reports.report.remote(self._submission, done, total)
        except Exception:  # noqa: BLE001 - a lost progress report must not fail the file
            self._reports = None
            return
        self._sent_at = now

    def flush(self) -> None:
        """Wait a little for the last report to arrive, so that it comes before the result."""
        if self._last is None:
            return
        try:
            import ray

            ray.wait([self._last], timeout=FLUSH_SECONDS)
        except Exception:  # noqa: BLE001 - the report may be lost, the result is not
            pass


def _transcribe_on_worker(job: Job, config: BatchConfig, reports=None, submission: int = 0) -> FileResult:
    if reports is None:
        return run_in_worker(job, config)
    reporter = _Reporter(reports, submission)
    result = run_in_worker(job, config, reporter)
    reporter.flush()
    return result


def _check_reachable(address: str) -> None:
    """UserError at once when a HOST:PORT address does not answer (Ray itself would retry for
    minutes); other forms (auto, ray://...) are left to Ray."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        raise UserError(f"cannot reach the Ray cluster at {address} ({err.strerror or err})") from None


class RayEngine:
    """Runs jobs as Ray tasks; joins the cluster at ``address`` (None: a Ray instance already
    started in this process or on this machine, else a new local one) unless this process is
    already connected. ``progress`` (if given) is called with the chunk counts of running files."""

    def __init__(
        self, config: BatchConfig, slots: int | None, address: str | None, progress: ProgressHook | None = None
    ) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--engine ray needs Ray: pip install 'timbrescribe[ray]'") from None
        if address is not None:
            _check_reachable(address)
        self._ray = ray
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            options = {"include_dashboard": False} if address is None else {}
            try:
                # Worker logs stay in Ray's log files: standard output carries only the results.
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise UserError(f"cannot start or join a Ray cluster at {address or 'this machine'} ({err})") from None
        self.slots = slots or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Ray does not retry by itself: run_batch does, the same way for every engine.
        self._task = ray.remote(num_cpus=1, max_retries=0)(_transcribe_on_worker)
        self._config = ray.put(config)
        self._running: dict = {}  # ObjectRef -> (Job, submission number)
        self._submissions = 0
        self._live: dict[int, Job] = {}  # submission number -> Job, while it runs
        self._progress = progress
        self._actor = None  # the progress actor, removed by close()
        if progress is not None:
            try:
                self._actor = ray.remote(num_cpus=0, max_restarts=0)(_ProgressReports).remote()
                # Up before any file runs: on a busy machine a starting actor took longer than a
                # whole short file, and its first reports came after the file had ended.
                ray.get(self._actor.drain.remote(), timeout=ACTOR_START_SECONDS)
            except Exception:  # noqa: BLE001 - no progress within files, the batch runs all the same
                self._drop_actor()
        self._reports = self._actor  # None once the actor is given up
        self._asked = None  # the ObjectRef of a drain asked for and not taken yet
        # Ray prints its messages (a worker died, ...) on sys.stdout, which belongs to the results
        # (--log-json): they go to standard error while the engine runs.
        self._stdout, sys.stdout = sys.stdout, sys.stderr

    def submit(self, job: Job) -> None:
        self._submissions += 1
        submission = self._submissions
        if self._reports is None:
            ref = self._task.remote(job, self._config)
        else:
            ref = self._task.remote(job, self._config, self._reports, submission)
        self._running[ref] = (job, submission)
        self._live[submission] = job

    def wait(self) -> list[tuple[Job, Outcome]]:
        timeout = WAIT_SECONDS if self._reports is None else POLL_SECONDS
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=timeout)
        self._pass_on_progress(ended=bool(ready))
        ended: list[tuple[Job, Outcome]] = []
        for ref in ready:
            job, submission = self._running.pop(ref)
            del self._live[submission]
            try:
                ended.append((job, self._ray.get(ref)))
            except self._ray.exceptions.RayError as err:
                ended.append((job, WorkerLost(f"its Ray worker was lost ({type(err).__name__}: {first_line(err)})")))
        return ended

    def _pass_on_progress(self, ended: bool) -> None:
        """Pass the chunk counts that came in to the hook. While files run this never blocks: the
        answer to the drain asked at the last look is taken if it is there, and the next one is
        asked. When a task ended, a drain asked now (after its last report, see _Reporter.flush)
        is waited for, up to DRAIN_SECONDS, so the file's last counts come before its result.
        Counts of a submission that already ended (a late report, a lost attempt) are dropped."""
        if self._asked is not None:
            self._take(DRAIN_SECONDS if ended else 0.0)
        if self._reports is not None and self._asked is None:
            try:
                self._asked = self._reports.drain.remote()
            except Exception:  # noqa: BLE001 - the actor is gone: no more progress
                self._reports = None
                return
            if ended:
                self._take(DRAIN_SECONDS)

    def _take(self, timeout: float) -> None:
        ready, _ = self._ray.wait([self._asked], timeout=timeout)
        if not ready:  # late: taken at a later look (a file that ended meanwhile misses its last counts)
            return
        self._asked = None
        try:
            newest = self._ray.get(ready[0])
        except self._ray.exceptions.RayError:  # the actor died: no more progress
            self._reports = None
            return
        for submission, (done, total) in sorted(newest.items()):
            if submission in self._live:
                self._progress(self._live[submission], done, total)

    def _drop_actor(self) -> None:
        """Remove the progress actor, if any (no more progress within files)."""
        if self._actor is not None:
            try:
                self._ray.kill(self._actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actor = self._reports = self._asked = None

    def close(self, stopping: bool) -> None:
        if stopping and self._running:
            for ref in self._running:  # KeyboardInterrupt in the task: its temporary files go
                self._ray.cancel(ref)
            self._ray.wait(list(self._running), num_returns=len(self._running), timeout=CANCEL_SECONDS)
        self._drop_actor()
        if self._owns_connection:
            self._ray.shutdown()
        sys.stdout = self._stdout
