"""``--engine ray`` on a real local Ray instance: the same outputs, status lines and
``--skip-existing`` behaviour as the local engine."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from test_batch import digests, leftovers, write_tone
from timbrescribe.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    # As the command starts one: worker logs stay in Ray's log files, standard output carries only results.
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def test_an_address_that_does_not_answer_stops_before_any_work(tmp_path, capsys):
    folder = tmp_path / "in"
    write_tone(folder / "x.wav", 57)
    with socket.socket() as unused:  # a loopback port that nothing listens on
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    out = tmp_path / "out"
    assert main(["transcribe", str(folder), "-o", str(out), "--engine", "ray", "--address", address]) == 2
    assert f"cannot reach the Ray cluster at {address} (Connection refused)" in capsys.readouterr().err
    assert not list(out.rglob("*.mid"))


def _lines(capsys, out: Path) -> tuple[list[dict], list[str]]:
    """The --log-json lines without the timings and the output folder, and the error lines."""
    captured = capsys.readouterr()
    lines = []
    for line in map(json.loads, captured.out.splitlines()):
        line.pop("seconds")
        line["outputs"] = [str(Path(p).relative_to(out)) for p in line["outputs"]]
        lines.append(line)
    return sorted(lines, key=lambda line: line["input"]), captured.err.splitlines()


@pytest.mark.slow
def test_ray_engine_transcribes_a_folder_like_the_local_engine(local_ray, tmp_path, capsys):
    folder = tmp_path / "in"
    write_tone(folder / "a" / "x.wav", 57)
    write_tone(folder / "b" / "x.wav", 60, seconds=3.0)
    write_tone(folder / "b" / "c" / "y.flac", 64)
    (folder / "b" / "broken.wav").write_text("not audio\n")
    options = ["-r", "--format", "midi,json,csv", "--log-json"]

    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["transcribe", str(folder), "-o", str(local), *options]) == 1
    local_lines, local_errors = _lines(capsys, local)
    assert main(["transcribe", str(folder), "-o", str(on_ray), "--engine", "ray", *options]) == 1
    ray_lines, ray_errors = _lines(capsys, on_ray)

    assert digests(on_ray) == digests(local) and len(digests(local)) == 12  # 3 files x (3 outputs + record)
    assert ray_lines == local_lines
    assert [line["status"] for line in ray_lines] == ["done", "failed", "done", "done"]  # a/x, b/broken, b/c/y, b/x
    assert ray_errors == local_errors and any("broken.wav: failed: cannot read as audio" in e for e in ray_errors)
    assert not leftovers(on_ray)

    # A second run on Ray skips what is complete and tries the broken file again.
    (on_ray / "b" / "x.json").unlink()
    assert main(["transcribe", str(folder), "-o", str(on_ray), "--engine", "ray", "--jobs", "1",
                 "--skip-existing", *options]) == 1
    again, _ = _lines(capsys, on_ray)
    assert {Path(line["input"]).relative_to(folder).as_posix(): line["status"] for line in again} == {
        "a/x.wav": "skipped", "b/broken.wav": "failed", "b/c/y.flac": "skipped", "b/x.wav": "done"}
    assert digests(on_ray) == digests(local)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _busy_ray_workers() -> list[int]:
    """Worker processes of this test's Ray instance (children of its raylet, which is a child of
    this process) running a transcription task now: Ray titles them by their task."""
    busy = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::_transcribe_on_worker")
                    and _parent(_parent(int(entry.name))) == os.getpid()):
                busy.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            pass
    return busy


@pytest.mark.slow
def test_a_killed_ray_worker_costs_a_retry_not_the_file(local_ray, tmp_path, capsys):
    folder = tmp_path / "in"
    for index, pitch in enumerate((55, 57, 59, 60, 62, 64)):
        write_tone(folder / f"t{index}.wav", pitch, seconds=20.0)
    out = tmp_path / "out"
    with ThreadPoolExecutor(1) as thread:  # the command runs beside this thread, which kills a worker
        run = thread.submit(main, ["transcribe", str(folder), "-o", str(out), "-k", "1", "--engine", "ray",
                                   "--log-json"])
        deadline = time.monotonic() + 120
        while not (busy := _busy_ray_workers()) and not run.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert busy and not run.done(), "no busy worker to kill"
        os.kill(busy[0], signal.SIGKILL)
        assert run.result(timeout=300) == 0
    captured = capsys.readouterr()
    assert "its Ray worker was lost" in captured.err and "trying again (try 2)" in captured.err
    assert sorted(json.loads(line)["status"] for line in captured.out.splitlines()) == ["done"] * 6
    assert len(list(out.glob("*.mid"))) == 6 and not leftovers(out)


@pytest.mark.slow
def test_ray_engine_reports_the_chunks_within_each_file(local_ray, tmp_path, capsys, monkeypatch):
    from timbrescribe import ray_engine

    folder = tmp_path / "in"
    write_tone(folder / "long.wav", 57, seconds=40.0)  # 15-second chunks: 3 per pass, 6 in all
    write_tone(folder / "short.wav", 60)
    options = ["-k", "1", "--format", "midi,json", "--log-json"]
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["transcribe", str(folder), "-o", str(local), *options]) == 0
    local_lines, local_errors = _lines(capsys, local)

    calls: list[tuple[str, int, int]] = []

    def record(job, done: int, total: int) -> None:
        calls.append((Path(job.name).name, done, total))

    class Recording(ray_engine.RayEngine):  # the engine the command makes, with a hook that records
        def __init__(self, config, slots, address, progress=None):
            super().__init__(config, slots, address, record)

    monkeypatch.setattr(ray_engine, "RayEngine", Recording)
    assert main(["transcribe", str(folder), "-o", str(on_ray), "--engine", "ray", *options]) == 0
    ray_lines, ray_errors = _lines(capsys, on_ray)
    assert digests(on_ray) == digests(local) and ray_lines == local_lines and ray_errors == local_errors

    by_file = {name: [(done, total) for called, done, total in calls if called == name]
               for name in ("long.wav", "short.wav")}
    assert {name for name, _, _ in calls} <= set(by_file)
    long = by_file["long.wav"]
    assert len(long) >= 2 and {total for _, total in long} == {6}, long  # several reports while it ran
    for reports in by_file.values():
        dones = [done for done, _ in reports]
        assert reports and dones == sorted(set(dones)) and dones[-1] == reports[-1][1], reports  # up to the total


@pytest.mark.slow
def test_a_lost_progress_actor_costs_the_progress_not_the_files(local_ray, tmp_path, capsys, monkeypatch):
    from timbrescribe import ray_engine

    folder = tmp_path / "in"
    write_tone(folder / "x.wav", 57, seconds=20.0)
    calls = []

    class Lost(ray_engine.RayEngine):  # the progress actor dies before any file runs
        def __init__(self, config, slots, address, progress=None):
            super().__init__(config, slots, address, lambda job, done, total: calls.append(done))
            ray.kill(self._actor)

    monkeypatch.setattr(ray_engine, "RayEngine", Lost)
    out = tmp_path / "out"
    assert main(["transcribe", str(folder), "-o", str(out), "-k", "1", "--engine", "ray", "--log-json"]) == 0
    lines, errors = _lines(capsys, out)
    assert [(line["status"], line["outputs"]) for line in lines] == [("done", ["x.mid"])] and not errors
    assert calls == [] and not leftovers(out)
