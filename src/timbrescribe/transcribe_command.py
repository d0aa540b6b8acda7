"""``timbrescribe transcribe``: audio files or directories -> MIDI (and JSON, CSV, PNG) per file.

Exit status: 0 when every file was transcribed (or skipped as up to date); 2 for a usage problem
found before any work (missing input, bad option value, unusable model file, output folder that
cannot be written, two inputs with the same output name); 1 when some files failed (the others are
still transcribed; a failed file keeps its previous outputs); 128 + the signal number when SIGTERM
or SIGINT stopped the run (130 for Ctrl-C), every output set being then either the old or the new.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from timbrescribe import storage_urls
from timbrescribe.errors import UserError
from timbrescribe.storage_urls import is_url

if TYPE_CHECKING:
    from timbrescribe.batch import FileResult, Job

FORMATS = ("midi", "json", "csv")  # choices of --format; the plot has its own flag
ENGINES = ("local", "ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``timbrescribe transcribe``."""
    parser.add_argument(
        "inputs", nargs="+", type=storage_urls.location, metavar="INPUT",
        help="audio file, or directory whose audio files (wav, flac, ogg, mp3) are transcribed in "
        "name order: only those directly inside it, or the whole tree with --recursive; either may "
        "be a storage URL (s3://bucket/key, s3://bucket/prefix/, any fsspec protocol installed)",
    )
    parser.add_argument(
        "-o", "--output-dir", required=True, type=storage_urls.location, metavar="OUTDIR",
        help="directory (or storage URL, e.g. s3://bucket/out/) for the results, created if missing: "
        "OUTDIR/<input name>.mid etc. and OUTDIR/<input name>.timbrescribe, a record of how they "
        "were made; the previous results of an input are replaced as a whole set, and only when the "
        "new set is complete (in object storage: uploaded object by object, the record last)",
    )
    parser.add_argument(
        "--format", default="midi", metavar="LIST",
        help=f"comma-separated output formats among {', '.join(FORMATS)} (default: midi)",
    )
    parser.add_argument(
        "--plot", action="store_true",
        help="also draw the notes over the model's frame activations as OUTDIR/<input name>.png",
    )
    parser.add_argument(
        "-k", "--instruments", default="auto", metavar="N|auto",
        help="number of instruments, one MIDI track each: a number 1..15, or auto to estimate it "
        "(default: auto); 1 gives a single track from the note model alone",
    )
    parser.add_argument(
        "--onset-threshold", type=float, metavar="X",
        help="onset probability a note needs to start, 0 < X < 1; lower finds more notes "
        "(default: the tuned value)",
    )
    parser.add_argument(
        "--frame-threshold", type=float, metavar="X",
        help="frame probability a note needs to go on sounding, 0 < X < 1; lower gives longer notes "
        "(default: the tuned value)",
    )
    parser.add_argument(
        "--min-note-ms", type=float, metavar="MS",
        help="drop notes shorter than MS milliseconds, MS > 0 (default: the tuned value)",
    )
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads of each model session, 1 to 4 x the cores (default: onnxruntime's choice "
        "with one job, 1 per worker with --jobs or --engine ray)",
    )
    parser.add_argument(
        "--model", type=Path, metavar="PATH",
        help="ONNX model to use instead of the one shipped with timbrescribe: a separation model, or "
        "a note model with --instruments 1 (checked before any file is transcribed)",
    )
    batch = parser.add_argument_group("batches")
    batch.add_argument(
        "-r", "--recursive", action="store_true",
        help="search directories to any depth and mirror their tree under OUTDIR "
        "(DIR/a/x.wav -> OUTDIR/a/x.mid), so files of the same name in different folders do not clash",
    )
    batch.add_argument(
        "-j", "--jobs", type=int, metavar="N",
        help="transcribe N files at a time, each in its own worker process with a single-threaded "
        "session (default: 1, in this process; with --engine ray: the cluster's CPUs)",
    )
    batch.add_argument(
        "--skip-existing", action="store_true",
        help="skip inputs whose complete set of outputs is already in OUTDIR, made from the same "
        "input by the same model and settings (as its .timbrescribe record says): a stopped batch "
        "goes on where it stopped",
    )
    batch.add_argument(
        "--engine", choices=ENGINES, default="local",
        help="where the workers run: local (this machine) or ray (a Ray cluster; needs "
        "pip install 'timbrescribe[ray]'); default: local",
    )
    batch.add_argument(
        "--address", metavar="ADDR",
        help="with --engine ray: the cluster to join (e.g. auto, or HEAD_IP:6379); default: a Ray "
        "instance already running here, else a new local one",
    )
    batch.add_argument(
        "-q", "--quiet", action="store_true",
        help="no progress bars and no line per transcribed file; failures are still reported",
    )
    batch.add_argument(
        "--log-json", action="store_true",
        help="print one JSON object per finished file on standard output instead of the summary "
        "line: input, status (done, skipped, failed), outputs, duration, notes, tracks, seconds, error",
    )


def output_kinds(format_list: str, plot: bool) -> list[str]:
    """Output kinds (keys of batch.OUTPUTS) from the --format list and the --plot flag."""
    kinds = [name.strip().lower() for name in format_list.split(",") if name.strip()]
    unknown = [name for name in kinds if name not in FORMATS]
    if unknown or not kinds:
        raise UserError(f"--format: expected a comma-separated list of {', '.join(FORMATS)}, got {format_list!r}")
    return list(dict.fromkeys(kinds)) + (["plot"] if plot else [])


def collect_inputs(
    paths: list[Path | str], audio_extensions: tuple[str, ...], recursive: bool = False
) -> list[tuple[Path | str, Path]]:
    """(file, output name) of every file to transcribe, the output name relative to the output
    folder and without suffix. Files count as given; a directory gives the audio files directly
    inside it (name order), or with ``recursive`` those of its whole tree, named by their path
    inside it. Storage URLs count the same way, a key prefix as a directory. The same file named
    twice counts once; two different files whose outputs would have the same name are an error."""
    found: list[tuple[Path | str, Path]] = []
    for path in paths:
        if _kind(path) == "directory":
            in_dir = _audio_files(path, audio_extensions, recursive)
            if not in_dir:
                where = "in this directory tree" if recursive else "directly in this directory"
                raise UserError(f"{path}: no audio files ({', '.join(audio_extensions)}) {where}")
            found.extend((storage_urls.child(path, file), file.with_name(file.stem)) for file in in_dir)
        else:
            found.append((path, Path(Path(path).stem)))
    by_name: dict[str, tuple[Path | str, Path]] = {}
    for file, name in found:
        other = by_name.setdefault(name.as_posix().casefold(), (file, name))[0]
        if other is not file and not _same_file(other, file):
            hint = "rename one" if recursive else "rename one, or use --recursive to mirror the folders"
            raise UserError(f"{other} and {file} would both write results named '{name}'; {hint}")
    return list(by_name.values())


def _kind(path: Path | str) -> str:
    """"file" or "directory"; UserError when ``path`` is neither."""
    if is_url(path):
        return storage_urls.kind(path)
    if path.is_dir():
        return "directory"
    if path.is_file():
        return "file"
    raise UserError(f"{path}: no such file or directory")


def _same_file(a: Path | str, b: Path | str) -> bool:
    if is_url(a) or is_url(b):
        return a == b
    return a.resolve() == b.resolve()


def _audio_files(folder: Path | str, audio_extensions: tuple[str, ...], recursive: bool) -> list[Path]:
    """The audio files in ``folder`` as paths relative to it, folder by folder in name order (a
    folder's own files before its subfolders)."""
    if is_url(folder):
        files = [Path(name) for name in storage_urls.files_in(folder, recursive)]
    elif recursive:
        files = [Path(root, name).relative_to(folder) for root, _, names in os.walk(folder) for name in names]
    else:
        files = [Path(p.name) for p in folder.iterdir() if p.is_file()]
    return sorted((p for p in files if p.suffix.lower() in audio_extensions), key=lambda p: (p.parts[:-1], p.name))


def prepare_output_dir(path: Path | str) -> None:
    """Create the output folder if needed and prove that files can be written in it (UserError if not)."""
    import tempfile

    if is_url(path):
        storage_urls.prepare_folder(path)
        return
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".timbrescribe-write-test-"):
            pass
    except OSError as err:
        raise UserError(f"{path}: cannot write in the output directory ({err.strerror or err})") from None


class Display:
    """What the user sees: progress bars on a terminal (files, and chunks within each running
    file), one line per finished file, or JSON lines."""

    def __init__(self, jobs: list[Job], quiet: bool, log_json: bool, instruments: int | None) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._quiet, self._log_json, self._instruments = quiet, log_json, instruments
        self._stdout = sys.stdout  # kept: an engine may send other programs' prints elsewhere
        self._bars = not quiet and sys.stderr.isatty()
        self._files = tqdm(total=len(jobs), unit="file", desc="files", file=sys.stderr, dynamic_ncols=True,
                           disable=not self._bars or len(jobs) < 2)
        self._first_slot = 0 if self._files.disable else 1
        self._chunks: dict[int, tuple[tqdm, int]] = {}  # running job index -> its bar and line
        self.failed = 0

    def progress(self, job: Job, done: int, total: int) -> None:
        if not self._bars:
            return
        if job.index not in self._chunks:
            taken = {line for _, line in self._chunks.values()}
            line = next(line for line in range(self._first_slot, self._first_slot + len(taken) + 1) if line not in taken)
            bar = self._tqdm(total=total, unit="chunk", desc=Path(job.name).name, file=sys.stderr, leave=False,
                             position=line, dynamic_ncols=True)
            self._chunks[job.index] = (bar, line)
        bar = self._chunks[job.index][0]
        bar.update(done - bar.n)

    def retrying(self, job: Job, reason: str, attempt: int) -> None:
        self._tqdm.write(f"timbrescribe: {job.name}: {reason}; trying again (try {attempt})", file=sys.stderr)

    def result(self, job: Job, result: FileResult) -> None:
        if job.index in self._chunks:
            self._chunks.pop(job.index)[0].close()
        if result.status == "failed":
            self.failed += 1
            self._tqdm.write(f"timbrescribe: {job.name}: failed: {result.error}", file=sys.stderr)
        if self._log_json:
            self._tqdm.write(result.json_line(), file=self._stdout)
            self._stdout.flush()
        elif not self._quiet and result.status != "failed":
            self._tqdm.write(self._summary(result), file=self._stdout)
        self._files.update()

    def _summary(self, result: FileResult) -> str:
        outputs = ", ".join(result.outputs)
        if result.status == "skipped":
            return f"{result.input}: skipped, outputs up to date -> {outputs}"
        hint = "" if result.notes else " (no pitched notes found: is the audio silent?)"
        tracks = f"{result.tracks} track{'s' * (result.tracks != 1)}"
        if self._instruments != 1:
            tracks += " (estimated)" if result.instruments_estimated else " (given)"
        return (f"{result.input}: {result.notes} notes, {tracks}, in {result.duration:.1f} s of audio{hint}, "
                f"took {result.seconds:.1f} s -> {outputs}")

    def close(self) -> None:
        for bar, _ in self._chunks.values():
            bar.close()
        self._files.close()


def run(args: argparse.Namespace) -> int:
    """Transcribe every input; returns the exit status (see the module docstring)."""
    from timbrescribe import batch
    from timbrescribe.audio import AUDIO_EXTENSIONS
    from timbrescribe.options import check_count, check_threads, open_session, usable_cores
    from timbrescribe.transcription import decoder_overrides, parse_instruments

    # Check every option, input and the model before doing any work.
    kinds = output_kinds(args.format, args.plot)
    decoder_overrides(args.onset_threshold, args.frame_threshold, args.min_note_ms)
    instruments = parse_instruments(args.instruments)
    threads = check_threads(args.threads)
    if args.address is not None and args.engine != "ray":
        raise UserError("--address goes with --engine ray")
    if args.jobs is not None:
        cores = usable_cores()
        upper, why = (None, "") if args.engine == "ray" else (4 * cores, f" (4 x the {cores} cores here)")
        check_count("--jobs", args.jobs, upper, why)
    files = collect_inputs(args.inputs, AUDIO_EXTENSIONS, args.recursive)
    jobs = []
    for index, (file, name) in enumerate(files):
        output = storage_urls.child(args.output_dir, name)
        jobs.append(batch.Job(index, str(file), storage_urls.absolute(file), storage_urls.absolute(output), output))
    workers = min(args.jobs or 1, len(jobs))
    in_process = args.engine == "local" and workers == 1
    if not in_process and threads is None:
        threads = 1  # one single-threaded session per worker
    session = open_session(instruments, args.model, threads)
    config = batch.make_config(kinds, args.instruments, args.onset_threshold, args.frame_threshold,
                               args.min_note_ms, args.model, threads)
    prepare_output_dir(args.output_dir)

    done_before = {job.index: batch.up_to_date(job, config) for job in jobs} if args.skip_existing else {}
    todo = [job for job in jobs if done_before.get(job.index) is None]

    display = Display(jobs, args.quiet, args.log_json, instruments)
    stopped = None
    try:
        with batch.stop_on_sigterm():
            # The engine first: a Ray cluster that cannot be joined is a usage error (status 2).
            engine = _engine(args, config, session, display, todo, in_process, min(workers, len(todo))) if todo else None
            for job in jobs:
                if done_before.get(job.index) is not None:
                    display.result(job, done_before[job.index])
            if engine is not None:
                batch.run_batch(todo, engine, display.result, display.retrying)
    except batch.Stopped as stop:
        stopped = stop.signum
    finally:
        display.close()
    if stopped is not None:
        print(f"timbrescribe: stopped by signal {stopped}: each input has its whole old or whole new set of "
              "outputs; run again with --skip-existing to go on", file=sys.stderr)
        return 128 + stopped
    if display.failed:
        print(f"timbrescribe: {display.failed} of {len(jobs)} files failed", file=sys.stderr)
        return 1
    return 0


def _engine(args, config, session, display: Display, todo: list[Job], in_process: bool, workers: int):
    from timbrescribe import batch

    if args.engine == "ray":
        from timbrescribe.ray_engine import RayEngine

        return RayEngine(config, args.jobs, args.address, display.progress)
    if in_process:
        return batch.InlineEngine(config, session, display.progress)
    return batch.ProcessEngine(config, workers, display.progress, todo)
