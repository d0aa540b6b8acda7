"""``--engine ray``: the batch on a Ray cluster (optional extra: ``pip install 'timbrescribe[ray]'``).

Each file is one Ray task needing one CPU. The task runs batch.run_in_worker in a Ray worker
process, which keeps one single-threaded session between the files it is given; the worker reads
the input and writes the output set itself, so paths must mean the same on every machine (a shared
file system mounted at the same place; the driver passes absolute paths). The driver keeps at most
``slots`` tasks in flight (default: the cluster's CPUs); a task whose worker or node died is run
again by batch.run_batch, up to batch.MAX_ATTEMPTS tries.
"""
from __future__ import annotations

import logging
import socket
import sys

from timbrescribe.batch import BatchConfig, FileResult, Job, Outcome, WorkerLost, run_in_worker
from timbrescribe.errors import UserError
from timbrescribe.options import first_line

# How long one wait for finished tasks may block, seconds (signals are handled in between).
WAIT_SECONDS = 0.5
# How long the head of a cluster given by --address may take to answer, seconds.
CONNECT_SECONDS = 10.0
# How long a stopping run waits for its cancelled tasks to clean up, seconds.
CANCEL_SECONDS = 30.0


def _transcribe_on_worker(job: Job, config: BatchConfig) -> FileResult:
    return run_in_worker(job, config)


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
    already connected."""

    def __init__(self, config: BatchConfig, slots: int | None, address: str | None) -> None:
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
        self._running: dict = {}  # ObjectRef -> Job
        # Ray prints its messages (a worker died, ...) on sys.stdout, which belongs to the results
        # (--log-json): they go to standard error while the engine runs.
        self._stdout, sys.stdout = sys.stdout, sys.stderr

    def submit(self, job: Job) -> None:
        self._running[self._task.remote(job, self._config)] = job

    def wait(self) -> list[tuple[Job, Outcome]]:
        ready, _ = self._ray.wait(list(self._running), num_returns=1, timeout=WAIT_SECONDS)
        ended: list[tuple[Job, Outcome]] = []
        for ref in ready:
            job = self._running.pop(ref)
            try:
                ended.append((job, self._ray.get(ref)))
            except self._ray.exceptions.RayError as err:
                ended.append((job, WorkerLost(f"its Ray worker was lost ({type(err).__name__}: {first_line(err)})")))
        return ended

    def close(self, stopping: bool) -> None:
        if stopping and self._running:
            for ref in self._running:  # KeyboardInterrupt in the task: its temporary files go
                self._ray.cancel(ref)
            self._ray.wait(list(self._running), num_returns=len(self._running), timeout=CANCEL_SECONDS)
        if self._owns_connection:
            self._ray.shutdown()
        sys.stdout = self._stdout
