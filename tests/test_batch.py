"""``timbrescribe transcribe`` on batches: failures stay with their file, output sets are replaced
whole or not at all (also under SIGTERM), the model and the output folder are checked before any
work, --recursive, --skip-existing, --jobs, progress and --log-json. Real files, real runs of the
command (in this process or as a subprocess), real signals."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from timbrescribe.batch import RECORD_SUFFIX
from timbrescribe.cli import main
from timbrescribe.errors import UserError
from timbrescribe.inference import DEFAULT_MODEL_PATH, energy_model_path
from timbrescribe.transcription import transcribe

RATE = 44100
CLI = [sys.executable, "-m", "timbrescribe.cli", "transcribe"]


def write_tone(path: Path, pitch: int, seconds: float = 1.5, scale: float = 0.3) -> Path:
    """A decaying harmonic tone of MIDI ``pitch`` as a float WAV (or FLAC by suffix)."""
    t = np.arange(int(seconds * RATE)) / RATE
    frequency = 440.0 * 2.0 ** ((pitch - 69) / 12)
    tone = sum(np.sin(2 * np.pi * frequency * h * t) / h for h in range(1, 5)) * np.exp(-1.5 * (t % 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    subtype = "FLOAT" if path.suffix == ".wav" else None
    soundfile.write(str(path), (scale * tone / np.abs(tone).max()).astype(np.float32), RATE, subtype=subtype)
    return path


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of unfinished writes."""
    return sorted(folder.rglob(".*.tmp"))


def assert_whole_sets(out: Path, old: dict[str, str]) -> dict[str, str]:
    """Every record under ``out`` agrees with the outputs beside it, and a set that still has its
    old record still has all its old files; returns "old" or "new" per record."""
    states = {}
    for record_file in out.rglob(f"*{RECORD_SUFFIX}"):
        record = json.loads(record_file.read_text())
        name = str(record_file.relative_to(out))
        for output, digest in record["outputs"].items():
            output_file = record_file.with_name(output)
            assert hashlib.sha256(output_file.read_bytes()).hexdigest() == digest, f"{output_file} is not of its set"
        states[name] = "old" if old.get(name) == hashlib.sha256(record_file.read_bytes()).hexdigest() else "new"
        if states[name] == "old":
            for output in record["outputs"]:
                relative = str(record_file.with_name(output).relative_to(out))
                assert digests(out)[relative] == old[relative]
    return states


@pytest.fixture
def tones(tmp_path) -> Path:
    """A folder of three short tones: a.wav, b.wav, c.flac."""
    folder = tmp_path / "in"
    for name, pitch in (("a.wav", 57), ("b.wav", 64), ("c.flac", 69)):
        write_tone(folder / name, pitch)
    return folder


def run_cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout)


# --- failures stay with their file ------------------------------------------------------------

def test_loud_and_corrupt_files_in_the_middle_fail_alone(tmp_path, capsys):
    folder = tmp_path / "in"
    write_tone(folder / "1_good.wav", 57)
    write_tone(folder / "2_loud.wav", 60, scale=3e20)
    (folder / "3_corrupt.wav").write_text("this is not audio\n")
    write_tone(folder / "4_good.wav", 64)
    out = tmp_path / "out"
    status = main(["transcribe", str(folder), "-o", str(out), "-k", "1", "--format", "midi,json", "--log-json"])
    assert status == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(line["input"]).name: line for line in lines}
    assert [Path(line["input"]).name for line in lines] == ["1_good.wav", "2_loud.wav", "3_corrupt.wav", "4_good.wav"]
    assert by_name["1_good.wav"]["status"] == by_name["4_good.wav"]["status"] == "done"
    assert by_name["3_corrupt.wav"]["status"] == "failed"
    assert by_name["3_corrupt.wav"]["error"].startswith("cannot read as audio")
    loud = by_name["2_loud.wav"]
    assert loud["status"] == "failed" and "samples reach 3e+20, far beyond full scale" in loud["error"]
    names = {p.name for p in out.iterdir()}
    assert {"1_good.mid", "1_good.json", "4_good.mid", "4_good.json"} <= names
    assert not any(name.startswith("3_corrupt") for name in names) and not leftovers(out)


def test_failed_rerun_keeps_the_previous_outputs(tmp_path, capsys):
    song = write_tone(tmp_path / "in" / "song.wav", 57)
    out = tmp_path / "out"
    assert main(["transcribe", str(song), "-o", str(out), "-k", "1", "--format", "midi,json"]) == 0
    before = digests(out)
    assert sorted(before) == ["song.json", "song.mid", f"song{RECORD_SUFFIX}"]

    # The write fails: a directory stands where the new CSV would go. The new MIDI and JSON
    # (two tracks now, so different from the old ones) must not replace the old ones.
    (out / "song.csv").mkdir()
    assert main(["transcribe", str(song), "-o", str(out), "-k", "2", "--format", "midi,json,csv"]) == 1
    assert "song.wav: failed: [Errno 21] a directory is in the way of an output" in capsys.readouterr().err
    assert digests(out) == before and not leftovers(out)

    # The transcription fails: the file is now far too loud, or no longer audio.
    (out / "song.csv").rmdir()
    song.write_text("not audio any more\n")
    assert main(["transcribe", str(song), "-o", str(out), "-k", "2", "--format", "midi,json"]) == 1
    assert digests(out) == before and not leftovers(out)


def test_write_failure_is_reported_with_its_reason(tmp_path, capsys):
    song = write_tone(tmp_path / "in" / "song.wav", 57)
    out = tmp_path / "out"
    (out / "song.csv").mkdir(parents=True)
    assert main(["transcribe", str(song), "-o", str(out), "-k", "1", "--format", "midi,csv"]) == 1
    err = capsys.readouterr().err
    assert "song.wav: failed: [Errno 21] a directory is in the way of an output" in err
    assert "1 of 1 files failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["song.csv"]


# --- signals -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "number, jobs", [(signal.SIGTERM, "1"), (signal.SIGTERM, "2"), (signal.SIGINT, "2")],
    ids=["SIGTERM-jobs1", "SIGTERM-jobs2", "SIGINT-jobs2"],
)
def test_a_signal_while_writing_leaves_whole_sets_and_the_batch_resumes(tmp_path, number, jobs):
    folder = tmp_path / "in"
    for index, pitch in enumerate((55, 57, 59, 60, 62, 64)):
        write_tone(folder / f"t{index}.wav", pitch)
    out = tmp_path / "out"
    common = ["-k", "1", "--format", "midi,json,csv", "--plot"]
    # The old sets: another onset threshold, so other notes in every file of every set.
    assert run_cli(str(folder), "-o", str(out), *common, "--onset-threshold", "0.9").returncode == 0
    old = digests(out)

    run = subprocess.Popen([*CLI, str(folder), "-o", str(out), *common, "--jobs", jobs],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until a picture is being drawn: the last file of its set, so the MIDI, JSON and CSV
    # of that set are written by then (the widest window for a mix of old and new files).
    deadline = time.monotonic() + 120
    while not any(".png." in p.name for p in leftovers(out)) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert run.poll() is None, "the batch ended before any picture was being written"
    run.send_signal(number)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 128 + number, stderr
    assert ("stopped by signal 15" if number == signal.SIGTERM else "interrupted") in stderr
    assert not leftovers(out)
    states = assert_whole_sets(out, old)
    assert len(states) == 6 and "old" in states.values()  # stopped before the end

    resumed = run_cli(str(folder), "-o", str(out), *common, "--jobs", jobs, "--skip-existing", "--log-json")
    assert resumed.returncode == 0, resumed.stderr
    statuses = [json.loads(line)["status"] for line in resumed.stdout.splitlines()]
    assert statuses.count("skipped") == list(states.values()).count("new")
    assert statuses.count("done") == list(states.values()).count("old")
    assert set(assert_whole_sets(out, old).values()) == {"new"} and not leftovers(out)


# --- checks before any work --------------------------------------------------------------------

def _text_as_network(folder: Path) -> Path:
    (folder / "m.onnx").write_text("not a model\n")
    shutil.copy(energy_model_path(DEFAULT_MODEL_PATH), folder / "m.energy.onnx")
    return folder / "m.onnx"


def _energy_graph_as_network(folder: Path) -> Path:
    for name in ("m.onnx", "m.energy.onnx"):
        shutil.copy(energy_model_path(DEFAULT_MODEL_PATH), folder / name)
    return folder / "m.onnx"


def _network_as_energy_graph(folder: Path) -> Path:
    for name in ("m.onnx", "m.energy.onnx"):
        shutil.copy(DEFAULT_MODEL_PATH, folder / name)
    return folder / "m.onnx"


def _missing_energy_graph(folder: Path) -> Path:
    shutil.copy(DEFAULT_MODEL_PATH, folder / "m.onnx")
    return folder / "m.onnx"


def _other_inputs(folder: Path) -> Path:
    """An ONNX graph with the right outputs (onset, frame) but another input."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["onset"]), helper.make_node("Identity", ["x"], ["frame"])],
        "wrong", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 84, None])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 84, None]) for name in ("onset", "frame")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "m.onnx")
    shutil.copy(energy_model_path(DEFAULT_MODEL_PATH), folder / "m.energy.onnx")
    return folder / "m.onnx"


@pytest.mark.parametrize(
    "make, message",
    [(_text_as_network, "cannot be loaded as an ONNX model"),
     (_energy_graph_as_network, "not a timbrescribe model (outputs ['energy']"),
     (_network_as_energy_graph, "m.energy.onnx: not a timbrescribe model graph: inputs ['audio', 'energy_moments']"),
     (_missing_energy_graph, "model file not found"),
     (_other_inputs, "m.onnx: not a timbrescribe model graph: inputs ['x']")],
    ids=["text", "energy-as-network", "network-as-energy", "missing-energy", "other-inputs"],
)
def test_bad_model_files_are_refused_before_any_file(tmp_path, tones, capsys, make, message):
    model = make(tmp_path)
    out = tmp_path / "out"
    assert main(["transcribe", str(tones), "-o", str(out), "-k", "1", "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # no file was transcribed
    with pytest.raises(UserError) as from_api:  # the API refuses it with the same words
        transcribe(tones / "a.wav", instruments=1, model_path=model)
    assert str(from_api.value) in err


def test_unwritable_output_folder_is_found_before_any_work(tmp_path, tones):
    out = tmp_path / "out"
    out.mkdir(mode=0o555)
    out.chmod(0o555)
    command = [*CLI, str(tones), "-o", str(out), "-k", "1"]
    if os.geteuid() == 0:  # root writes anywhere: run it without the capabilities that allow that
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop the override capabilities")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"{out}: cannot write in the output directory (Permission denied)" in result.stderr
    assert result.stdout == "" and list(out.iterdir()) == []


@pytest.mark.parametrize(
    "options, message",
    [(["--jobs", "0"], "--jobs must be a whole number from 1 to"),
     (["--jobs", "100000"], "--jobs must be a whole number from 1 to"),
     (["--threads", "100000"], "threads must be a whole number from 1 to"),
     (["--address", "auto"], "--address goes with --engine ray")],
)
def test_bad_batch_options_stop_before_any_work(tmp_path, tones, capsys, options, message):
    out = tmp_path / "out"
    assert main(["transcribe", str(tones), "-o", str(out), "-k", "1", *options]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# --- batches ------------------------------------------------------------------------------------

def test_recursive_mirrors_the_tree_so_equal_names_do_not_clash(tmp_path, capsys):
    folder = tmp_path / "in"
    write_tone(folder / "a" / "x.wav", 57)
    write_tone(folder / "b" / "x.wav", 60)
    write_tone(folder / "b" / "deeper" / "y.flac", 64)
    (folder / "b" / "notes.txt").write_text("not audio: ignored\n")
    out = tmp_path / "out"

    assert main(["transcribe", str(folder / "a"), str(folder / "b"), "-o", str(out), "-k", "1"]) == 2
    assert "would both write results named 'x'; rename one, or use --recursive" in capsys.readouterr().err
    assert main(["transcribe", str(folder), "-o", str(out), "-k", "1"]) == 2
    assert "no audio files" in capsys.readouterr().err

    assert main(["transcribe", str(folder), "-o", str(out), "-k", "1", "-r", "--format", "json"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a/x.json", f"a/x{RECORD_SUFFIX}", "b/deeper/y.json", f"b/deeper/y{RECORD_SUFFIX}",
        "b/x.json", f"b/x{RECORD_SUFFIX}",
    ]
    assert (out / "a" / "x.json").read_bytes() != (out / "b" / "x.json").read_bytes()
    expected = json.loads(_single_file_json(folder / "b" / "x.wav", tmp_path / "single"))
    assert json.loads((out / "b" / "x.json").read_text()) == expected


def _single_file_json(song: Path, out: Path) -> str:
    assert main(["transcribe", str(song), "-o", str(out), "-k", "1", "--format", "json", "-q"]) == 0
    return (out / f"{song.stem}.json").read_text()


def test_skip_existing_redoes_only_what_is_missing_changed_or_made_otherwise(tmp_path, tones, capsys):
    out = tmp_path / "out"
    base = ["transcribe", str(tones), "-o", str(out), "-k", "1", "--format", "midi,json", "--log-json"]

    def statuses(*extra: str) -> dict[str, str]:
        main([*base, *extra])
        return {Path(line["input"]).name: line["status"]
                for line in map(json.loads, capsys.readouterr().out.splitlines())}

    assert statuses("--skip-existing") == {"a.wav": "done", "b.wav": "done", "c.flac": "done"}
    assert statuses("--skip-existing") == {"a.wav": "skipped", "b.wav": "skipped", "c.flac": "skipped"}
    (out / "a.json").unlink()  # one output missing
    (out / "b.mid").write_bytes((out / "b.mid").read_bytes()[:-1])  # one output cut short
    write_tone(tones / "c.flac", 70)  # the input changed
    assert statuses("--skip-existing") == {"a.wav": "done", "b.wav": "done", "c.flac": "done"}
    assert statuses("--skip-existing", "--min-note-ms", "40") == {"a.wav": "done", "b.wav": "done", "c.flac": "done"}
    assert statuses("--skip-existing", "--min-note-ms", "40") == {"a.wav": "skipped", "b.wav": "skipped", "c.flac": "skipped"}
    # Fewer formats than were made: still complete. Another format: made now.
    assert statuses("--skip-existing", "--min-note-ms", "40", "--format", "json")["a.wav"] == "skipped"
    assert statuses("--skip-existing", "--min-note-ms", "40", "--format", "csv")["a.wav"] == "done"
    # Without the flag everything is made again.
    assert set(statuses("--min-note-ms", "40").values()) == {"done"}


def test_log_json_stdout_holds_only_json_lines_where_the_ci_variable_is_set(tmp_path, tones):
    # pyfluidsynth, imported by pretty_midi to write MIDI, prints a line on stdout when CI is set.
    out = tmp_path / "out"
    run = subprocess.run([*CLI, str(tones), "-o", str(out), "-k", "1", "--log-json"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "CI": "1"})
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["status"] for line in lines] == ["done"] * 3
    assert sorted(p.name for p in out.glob("*.mid")) == ["a.mid", "b.mid", "c.mid"]


def test_log_json_has_one_line_per_file_with_every_field(tmp_path, tones, capsys):
    (tones / "broken.wav").write_text("no audio\n")
    out = tmp_path / "out"
    assert main(["transcribe", str(tones), "-o", str(out), "-k", "1", "--log-json"]) == 1
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [Path(line["input"]).name for line in lines] == ["a.wav", "b.wav", "broken.wav", "c.flac"]
    for line in lines:
        assert set(line) >= {"input", "outputs", "duration", "notes", "seconds", "status", "error"}
    done = lines[0]
    assert done["status"] == "done" and done["outputs"] == [str(out / "a.mid")] and done["error"] is None
    assert done["duration"] == pytest.approx(1.5, abs=0.01) and done["notes"] >= 1 and done["seconds"] > 0
    failed = lines[2]
    assert failed["status"] == "failed" and failed["outputs"] == [] and failed["error"].startswith("cannot read as audio")
    assert "broken.wav: failed: cannot read as audio" in captured.err


def test_quiet_prints_only_failures(tmp_path, tones, capsys):
    (tones / "broken.wav").write_text("no audio\n")
    assert main(["transcribe", str(tones), "-o", str(tmp_path / "out"), "-k", "1", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 2 and lines[1] == "timbrescribe: 1 of 4 files failed"
    assert lines[0].startswith(f"timbrescribe: {tones / 'broken.wav'}: failed: cannot read as audio")


def test_jobs_2_gives_the_same_outputs_as_jobs_1(tmp_path, tones):
    write_tone(tones / "d.wav", 52, seconds=4.0)
    one = run_cli(str(tones), "-o", str(tmp_path / "one"), "--format", "midi,json,csv")
    two = run_cli(str(tones), "-o", str(tmp_path / "two"), "--format", "midi,json,csv", "--jobs", "2")
    assert one.returncode == two.returncode == 0, two.stderr
    assert len(digests(tmp_path / "one")) == 16
    assert digests(tmp_path / "one") == digests(tmp_path / "two")
    assert len(one.stdout.splitlines()) == len(two.stdout.splitlines()) == 4


def _worker_pids(parent: int) -> list[int]:
    """Children of ``parent`` that have loaded onnxruntime (the workers, not the helper processes)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    workers = []
    for pid in map(int, children):
        try:
            if "onnxruntime" in Path(f"/proc/{pid}/maps").read_text():
                workers.append(pid)
        except OSError:
            pass
    return workers


def test_a_killed_worker_process_costs_a_retry_not_the_files(tmp_path):
    folder = tmp_path / "in"
    for index, pitch in enumerate((55, 57, 59, 60, 62, 64)):
        write_tone(folder / f"t{index}.wav", pitch, seconds=20.0)
    out = tmp_path / "out"
    run = subprocess.Popen([*CLI, str(folder), "-o", str(out), "-k", "1", "--jobs", "2", "--log-json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(f"*{RECORD_SUFFIX}")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _worker_pids(run.pid)
    assert run.poll() is None and workers, "no worker to kill"
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert "its worker process died; trying again (try 2)" in stderr
    assert sorted(json.loads(line)["status"] for line in stdout.splitlines()) == ["done"] * 6
    assert len(list(out.glob("*.mid"))) == 6 and not leftovers(out)
    assert_whole_sets(out, {})


def test_progress_bars_show_files_and_chunks_on_a_terminal(tmp_path):
    folder = tmp_path / "in"
    write_tone(folder / "long.wav", 57, seconds=40.0)  # 15-second chunks: 3 per pass
    write_tone(folder / "short.wav", 60)
    leader, follower = pty.openpty()  # standard error on a terminal, standard output not
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty has no width
    with tempfile.TemporaryFile("w+") as stdout:
        run = subprocess.Popen([*CLI, str(folder), "-o", str(tmp_path / "out"), "-k", "1"],
                               stdout=stdout, stderr=follower)
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)  # read as it comes: a full terminal would block the run
            except OSError:  # EIO: the run closed its end
                break
            if not chunk:
                break
            screen += chunk
        os.close(leader)
        assert run.wait(timeout=120) == 0
        stdout.seek(0)
        printed = stdout.read()
    text = screen.decode(errors="replace")
    assert "files:" in text and "2/2" in text  # the bar over files
    # the bar within the long file: 6 chunks (tqdm redraws at most every 0.1 s, so a fast run may
    # skip its last states)
    assert "long.wav:" in text and "0/6 [" in text and "chunk/s" in text
    assert "long.wav: " in printed and "\r" not in printed

    quiet = subprocess.run([*CLI, str(folder), "-o", str(tmp_path / "out"), "-k", "1", "-q"],
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""
