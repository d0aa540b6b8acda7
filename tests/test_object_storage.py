"""Batches whose inputs and output folders are object-storage URLs: the real S3 protocol over
HTTP against moto's S3 server on a free loopback port, which the command reaches through
``AWS_ENDPOINT_URL`` as a user's would. The same files give the same outputs as on local
folders, with the local engine (in this process and in worker processes) and on Ray;
--recursive mirrors keys; --skip-existing reads the records in the store; every temporary file
goes; a bad URL stops the command before any work."""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import s3fs
from moto.server import ThreadedMotoServer

from test_batch import digests, leftovers, write_tone
from test_ray_engine import local_ray  # noqa: F401 - the fixture of the Ray test here
from timbrescribe import storage_urls
from timbrescribe.batch import RECORD_SUFFIX
from timbrescribe.cli import main

EXAMPLE = Path(__file__).parents[1] / "src" / "timbrescribe" / "examples" / "example.flac"
OPTIONS = ["-k", "1", "--format", "midi,json,csv", "--log-json"]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on a free loopback port, and the variables that point s3fs at it (set
    before any worker process or Ray instance of this module starts, so they inherit them)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on standard error
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ENDPOINT_URL", endpoint)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        s3fs.S3FileSystem.clear_instance_cache()  # none left bound to the server of an earlier set-up
        yield endpoint
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


@pytest.fixture
def store(s3_endpoint):
    """(file system for the test's own reads and writes, a new empty bucket)."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={"endpoint_url": s3_endpoint})
    bucket = f"ts-{secrets.token_hex(6)}"
    fs.mkdir(bucket)
    return fs, bucket


@pytest.fixture
def scratch(tmp_path_factory, monkeypatch) -> Path:
    """The temporary folder of this process and of the worker processes it starts. A short path
    (not under the test's own folder, named after the test): multiprocessing puts its sockets
    here, and a Unix socket's path may not exceed 107 bytes."""
    folder = tmp_path_factory.mktemp("s")
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def temporaries(scratch: Path) -> list[str]:
    """What is left in the temporary folder (but onnxruntime's own .ses file)."""
    return sorted(p.name for p in scratch.iterdir() if p.name != ".ses")


def upload_tree(fs, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(folder).as_posix()}")


def stored(fs, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``, by key relative to it."""
    fs.invalidate_cache()
    return {key[len(prefix) + 1:]: fs.cat_file(key) for key in sorted(fs.find(prefix))}


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def without_input_identity(files: dict[str, bytes]) -> dict[str, object]:
    """Outputs as they are, records less what they say of the input (local files have a
    modification time, objects an ETag)."""
    result = {}
    for name, content in files.items():
        if name.endswith(RECORD_SUFFIX):
            record = json.loads(content)
            del record["input"]
            result[name] = record
        else:
            result[name] = hashlib.sha256(content).hexdigest()
    return result


def log_lines(capsys, inputs: str, outputs: str) -> tuple[list[dict], list[str]]:
    """--log-json lines with inputs and outputs relative to their folders (or prefixes) and no
    timings, and the error lines with the input folder replaced by IN."""
    captured = capsys.readouterr()
    lines = []
    for line in map(json.loads, captured.out.splitlines()):
        line.pop("seconds")
        line["input"] = line["input"].removeprefix(inputs)
        line["outputs"] = [name.removeprefix(outputs) for name in line["outputs"]]
        if line["error"]:
            line["error"] = line["error"].replace(inputs, "IN/")
        lines.append(line)
    return lines, [line.replace(inputs, "IN/") for line in captured.err.splitlines()]


def example_folder(tmp_path: Path) -> Path:
    """The bundled example, a short tone and a file that is not audio."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "example.flac")
    write_tone(folder / "tone.wav", 60)
    (folder / "broken.wav").write_text("not audio\n")
    return folder


def test_s3_to_s3_with_worker_processes_gives_the_local_outputs(tmp_path, store, scratch, capsys):
    fs, bucket = store
    folder = example_folder(tmp_path)
    upload_tree(fs, folder, f"{bucket}/in")
    local = tmp_path / "local"

    assert main(["transcribe", str(folder), "-o", str(local), *OPTIONS]) == 1
    local_lines, local_errors = log_lines(capsys, f"{folder}/", f"{local}/")
    assert main(["transcribe", f"s3://{bucket}/in/", "-o", f"s3://{bucket}/out/", *OPTIONS, "--jobs", "2"]) == 1
    s3_lines, s3_errors = log_lines(capsys, f"s3://{bucket}/in/", f"s3://{bucket}/out/")

    outputs = stored(fs, f"{bucket}/out")
    assert sorted(outputs) == sorted(local_files(local)) and len(outputs) == 8  # 2 files x (3 outputs + record)
    assert without_input_identity(outputs) == without_input_identity(local_files(local))
    assert sorted(s3_lines, key=str) == sorted(local_lines, key=str)
    assert [line["status"] for line in sorted(s3_lines, key=lambda line: line["input"])] == ["failed", "done", "done"]
    assert s3_errors == local_errors and "timbrescribe: IN/broken.wav: failed: cannot read as audio" in s3_errors[0]
    record = json.loads(outputs[f"example{RECORD_SUFFIX}"])
    assert record["input"]["size"] == EXAMPLE.stat().st_size
    assert sorted(stored(fs, f"{bucket}/in")) == ["broken.wav", "example.flac", "tone.wav"]  # inputs untouched
    assert temporaries(scratch) == []  # every download and staged output set is gone, the failed one's too


def test_recursive_mirrors_keys_between_stores_and_local_folders(tmp_path, store, scratch, capsys):
    fs, bucket = store
    folder = tmp_path / "in"
    write_tone(folder / "b" / "x.wav", 60)
    write_tone(folder / "a" / "x.wav", 57)
    write_tone(folder / "b" / "deeper" / "y.flac", 64)
    write_tone(folder / "top.wav", 52)
    (folder / "b" / "notes.txt").write_text("not audio: ignored\n")
    upload_tree(fs, folder, f"{bucket}/in")
    options = ["-k", "1", "--format", "json", "--log-json", "-r"]
    expected = ["a/x.json", f"a/x{RECORD_SUFFIX}", "b/deeper/y.json", f"b/deeper/y{RECORD_SUFFIX}",
                "b/x.json", f"b/x{RECORD_SUFFIX}", "top.json", f"top{RECORD_SUFFIX}"]

    assert main(["transcribe", str(folder), "-o", str(tmp_path / "local"), *options]) == 0
    local_lines, _ = log_lines(capsys, f"{folder}/", f"{tmp_path / 'local'}/")
    runs = {  # inputs -> output folder: the other three ways round
        "s3 to s3": (f"s3://{bucket}/in", f"s3://{bucket}/out"),
        "s3 to local": (f"s3://{bucket}/in", str(tmp_path / "from_s3")),
        "local to s3": (str(folder), f"s3://{bucket}/from_local"),
    }
    for inputs, output in runs.values():
        assert main(["transcribe", inputs, "-o", output, *options]) == 0
        lines, errors = log_lines(capsys, f"{inputs}/", f"{output}/")
        assert lines == local_lines and errors == []  # same order too: a folder's files before its subfolders
    assert [line["input"] for line in local_lines] == ["top.wav", "a/x.wav", "b/x.wav", "b/deeper/y.flac"]

    made = without_input_identity(local_files(tmp_path / "local"))
    assert sorted(made) == expected
    assert without_input_identity(stored(fs, f"{bucket}/out")) == made
    assert without_input_identity(local_files(tmp_path / "from_s3")) == made
    assert without_input_identity(stored(fs, f"{bucket}/from_local")) == made
    assert not leftovers(tmp_path / "from_s3") and temporaries(scratch) == []

    # Without --recursive: only the objects directly under a prefix, and equal names clash.
    assert main(["transcribe", f"s3://{bucket}/in/a/", f"s3://{bucket}/in/b/", "-o", str(tmp_path / "flat"),
                 "-k", "1"]) == 2
    assert "would both write results named 'x'; rename one, or use --recursive" in capsys.readouterr().err
    assert main(["transcribe", f"s3://{bucket}/in/b/deeper/y.flac", f"s3://{bucket}/in/", "-o",
                 f"s3://{bucket}/flat", "-k", "1", "--format", "json", "--log-json"]) == 0
    assert sorted(line["input"] for line in log_lines(capsys, f"s3://{bucket}/in/", "")[0]) == [
        "b/deeper/y.flac", "top.wav"]


def test_skip_existing_reads_the_records_in_the_store(tmp_path, store, scratch, capsys, monkeypatch):
    fs, bucket = store
    folder = tmp_path / "in"
    for name, pitch in (("a.wav", 57), ("b.wav", 64), ("c.flac", 69)):
        write_tone(folder / name, pitch)
    upload_tree(fs, folder, f"{bucket}/in")
    out = f"{bucket}/out"
    base = ["transcribe", f"s3://{bucket}/in/", "-o", f"s3://{out}/", "-k", "1", "--format", "midi,json",
            "--log-json"]

    def statuses(*extra: str) -> dict[str, str]:
        main([*base, *extra])
        return {Path(line["input"]).name: line["status"] for line in map(json.loads, capsys.readouterr().out.splitlines())}

    assert statuses("--skip-existing") == {"a.wav": "done", "b.wav": "done", "c.flac": "done"}
    first = stored(fs, out)
    assert statuses("--skip-existing") == {"a.wav": "skipped", "b.wav": "skipped", "c.flac": "skipped"}
    assert stored(fs, out) == first  # nothing written again

    fs.rm_file(f"{out}/a{RECORD_SUFFIX}")  # a set without its record is not complete
    fs.pipe_file(f"{out}/b.mid", first["b.mid"][:-1])  # an output cut short
    write_tone(folder / "c.flac", 70)  # the input object changed
    fs.put_file(str(folder / "c.flac"), f"{bucket}/in/c.flac")
    assert statuses("--skip-existing") == {"a.wav": "done", "b.wav": "done", "c.flac": "done"}
    again = stored(fs, out)
    assert again["a.mid"] == first["a.mid"] and again["b.mid"] == first["b.mid"] and again["c.mid"] != first["c.mid"]

    # An upload that stops after the first output: the old record went first and no new one
    # came, so the set is not taken as complete and the next run makes it again.
    real_upload = storage_urls.upload
    uploads = []

    def upload_then_fail(source: Path, url: str) -> None:
        uploads.append(url)
        if len(uploads) == 2:
            raise ConnectionError("the network went down")
        real_upload(source, url)

    monkeypatch.setattr(storage_urls, "upload", upload_then_fail)
    fs.rm_file(f"{out}/c.json")
    assert statuses("--skip-existing") == {"a.wav": "skipped", "b.wav": "skipped", "c.flac": "failed"}
    assert uploads == [f"s3://{out}/c.mid", f"s3://{out}/c.json"]
    assert sorted(stored(fs, out)) == ["a.json", "a.mid", f"a{RECORD_SUFFIX}", "b.json", "b.mid",
                                       f"b{RECORD_SUFFIX}", "c.mid"]
    monkeypatch.setattr(storage_urls, "upload", real_upload)
    assert statuses("--skip-existing") == {"a.wav": "skipped", "b.wav": "skipped", "c.flac": "done"}
    assert stored(fs, out) == again and temporaries(scratch) == []


@pytest.mark.slow
def test_ray_engine_reads_and_writes_the_store(s3_endpoint, local_ray, store, tmp_path, capsys):
    # s3_endpoint comes first: the Ray instance starts with its variables, and so do its workers.
    fs, bucket = store
    folder = example_folder(tmp_path)
    upload_tree(fs, folder, f"{bucket}/in")
    inputs = f"s3://{bucket}/in/"

    assert main(["transcribe", inputs, "-o", f"s3://{bucket}/local/", *OPTIONS]) == 1
    local_lines, local_errors = log_lines(capsys, inputs, f"s3://{bucket}/local/")
    assert main(["transcribe", inputs, "-o", f"s3://{bucket}/ray/", *OPTIONS, "--engine", "ray"]) == 1
    ray_lines, ray_errors = log_lines(capsys, inputs, f"s3://{bucket}/ray/")
    assert sorted(ray_lines, key=str) == sorted(local_lines, key=str) and ray_errors == local_errors
    assert stored(fs, f"{bucket}/ray") == stored(fs, f"{bucket}/local")
    assert len(stored(fs, f"{bucket}/ray")) == 8

    fs.rm_file(f"{bucket}/ray/tone{RECORD_SUFFIX}")
    assert main(["transcribe", inputs, "-o", f"s3://{bucket}/ray/", *OPTIONS, "--engine", "ray",
                 "--skip-existing"]) == 1
    again, _ = log_lines(capsys, inputs, f"s3://{bucket}/ray/")
    assert {line["input"]: line["status"] for line in again} == {
        "broken.wav": "failed", "example.flac": "skipped", "tone.wav": "done"}
    assert stored(fs, f"{bucket}/ray") == stored(fs, f"{bucket}/local")


@pytest.mark.parametrize(
    "inputs, output, message",
    [("nosuch://{bucket}/in/", "s3://{bucket}/out/", "nosuch://{bucket}/in/: not a storage URL that fsspec knows"),
     ("s3://{bucket}-none/in/", "s3://{bucket}/out/", "s3://{bucket}-none/in/: no such bucket '{bucket}-none'\n"),
     ("s3://{bucket}/in/missing.wav", "s3://{bucket}/out/", "s3://{bucket}/in/missing.wav: no such object or folder"),
     ("s3://{bucket}/in/", "s3://{bucket}-none/out/", "s3://{bucket}-none/out/: no such bucket '{bucket}-none'\n"),
     ("s3://{bucket}/in/", "s3://{bucket}/in/a.wav", "s3://{bucket}/in/a.wav: exists and is not a folder")],
    ids=["unknown-protocol", "missing-input-bucket", "missing-input-object", "missing-output-bucket",
         "output-is-an-object"],
)
def test_bad_urls_stop_the_command_before_any_work(tmp_path, store, capsys, inputs, output, message):
    fs, bucket = store
    write_tone(tmp_path / "a.wav", 57)
    fs.put_file(str(tmp_path / "a.wav"), f"{bucket}/in/a.wav")
    assert main(["transcribe", inputs.format(bucket=bucket), "-o", output.format(bucket=bucket), "-k", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"timbrescribe: error: {message.format(bucket=bucket)}") and err.count("\n") == 1, err
    assert sorted(stored(fs, bucket)) == ["in/a.wav"]  # nothing written, no probe left
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}-none")  # no bucket made


def test_missing_credentials_are_named_before_any_work(tmp_path, store, capsys, monkeypatch):
    fs, bucket = store
    write_tone(tmp_path / "in" / "a.wav", 57)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))  # no ~/.aws either
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()  # the command's file system starts afresh, and again after
    try:
        assert main(["transcribe", str(tmp_path / "in"), "-o", f"s3://{bucket}/out/", "-k", "1"]) == 2
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert capsys.readouterr().err == (f"timbrescribe: error: s3://{bucket}/out/: cannot write in the output "
                                       "folder (Unable to locate credentials)\n")
    assert stored(fs, bucket) == {}


def test_a_protocol_whose_package_is_missing_is_named_with_its_install_command(tmp_path):
    blocked = ("import sys; sys.modules['s3fs'] = None; from timbrescribe.cli import main; "
               "sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", blocked, "transcribe", "s3://bucket/in/", "-o", str(tmp_path / "out"),
                          "-k", "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr == "timbrescribe: error: s3:// needs s3fs: pip install 'timbrescribe[s3]'\n"
    assert not (tmp_path / "out").exists()


def test_local_batches_never_import_fsspec(tmp_path):
    song = write_tone(tmp_path / "song.wav", 57)
    code = ("import sys; from timbrescribe.cli import main; status = main(sys.argv[1:]); "
            "print(sorted({'fsspec', 's3fs', 'torch'} & set(sys.modules))); sys.exit(status)")
    run = subprocess.run([sys.executable, "-c", code, "transcribe", str(song), "-o", str(tmp_path / "out"), "-k", "1",
                          "-q"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "[]\n" and digests(tmp_path / "out")  # it did transcribe, with none of them
