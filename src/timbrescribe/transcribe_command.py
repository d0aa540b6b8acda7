"""``timbrescribe transcribe``: audio files or directories -> MIDI (and JSON, CSV, PNG) per file.

Exit status: 0 when every file was transcribed; 2 for a usage problem found before any work
(missing input, bad option value, two inputs with the same name); 1 when some files failed (the
others are still transcribed; a failed file leaves none of its outputs behind).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from timbrescribe.errors import UserError

if TYPE_CHECKING:
    from timbrescribe.transcription import Transcription

# Output kind -> (file suffix, Transcription method that writes it).
OUTPUTS = {
    "midi": (".mid", "write_midi"),
    "json": (".json", "write_json"),
    "csv": (".csv", "write_csv"),
    "plot": (".png", "write_plot"),
}
FORMATS = ("midi", "json", "csv")  # choices of --format; the plot has its own flag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``timbrescribe transcribe``."""
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT",
        help="audio file, or directory whose audio files (wav, flac, ogg, mp3) directly inside it "
        "are transcribed in name order; subdirectories are not searched",
    )
    parser.add_argument(
        "-o", "--output-dir", required=True, type=Path, metavar="OUTDIR",
        help="directory for the results, created if missing: OUTDIR/<input name>.mid etc.; "
        "existing files of the same name are replaced",
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
        help="CPU threads for the model, N >= 1 (default: onnxruntime's choice)",
    )
    parser.add_argument(
        "--model", type=Path, metavar="PATH",
        help="ONNX model to use instead of the one shipped with timbrescribe: a separation model, or "
        "a note model with --instruments 1",
    )


def output_kinds(format_list: str, plot: bool) -> list[str]:
    """Output kinds (keys of OUTPUTS) from the --format list and the --plot flag."""
    kinds = [name.strip().lower() for name in format_list.split(",") if name.strip()]
    unknown = [name for name in kinds if name not in FORMATS]
    if unknown or not kinds:
        raise UserError(f"--format: expected a comma-separated list of {', '.join(FORMATS)}, got {format_list!r}")
    return list(dict.fromkeys(kinds)) + (["plot"] if plot else [])


def collect_inputs(paths: list[Path], audio_extensions: tuple[str, ...]) -> list[Path]:
    """Files to transcribe: files as given, directories expanded to the audio files directly inside
    them (sorted by name). The same file named twice counts once; two different files whose
    outputs would have the same name are an error."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in audio_extensions)
            if not found:
                raise UserError(f"{path}: no audio files ({', '.join(audio_extensions)}) in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or directory")
    by_name: dict[str, Path] = {}
    for file in files:
        other = by_name.setdefault(file.stem.casefold(), file)
        if other is not file and other.resolve() != file.resolve():
            raise UserError(f"{other} and {file} would both write results named '{file.stem}'; rename one")
    return list(by_name.values())


def _prepare_output_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create the output directory ({err.strerror})") from None


def write_outputs(result: Transcription, base: Path, kinds: list[str]) -> list[Path]:
    """Write ``result`` as ``base`` + each kind's suffix; if one write fails, remove the others."""
    written: list[Path] = []
    try:
        for kind in kinds:
            suffix, method = OUTPUTS[kind]
            path = base.with_name(base.name + suffix)
            getattr(result, method)(path)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def run(args: argparse.Namespace) -> int:
    """Transcribe every input; returns the exit status (see the module docstring)."""
    from tqdm import tqdm

    from timbrescribe.audio import AUDIO_EXTENSIONS
    from timbrescribe.inference import AgnosticSession, SeparationSession
    from timbrescribe.transcription import decoder_settings, parse_instruments, transcribe

    # Check every option and input before doing any work.
    kinds = output_kinds(args.format, args.plot)
    decoder_settings(args.onset_threshold, args.frame_threshold, args.min_note_ms)
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    instruments = parse_instruments(args.instruments)
    files = collect_inputs(args.inputs, AUDIO_EXTENSIONS)
    kind = AgnosticSession if instruments == 1 else SeparationSession
    session = kind(model_path=args.model, threads=args.threads)
    _prepare_output_dir(args.output_dir)

    failed: list[Path] = []
    with tqdm(total=len(files), unit="file", disable=len(files) < 2, file=sys.stderr) as bar:
        for path in files:
            started = time.perf_counter()
            try:
                result = transcribe(
                    path, session=session, instruments=args.instruments, onset_threshold=args.onset_threshold,
                    frame_threshold=args.frame_threshold, min_note_ms=args.min_note_ms,
                )
                written = write_outputs(result, args.output_dir / path.stem, kinds)
            except (UserError, OSError) as err:
                failed.append(path)
                reason = str(err).removeprefix(f"{path}: ")
                tqdm.write(f"timbrescribe: {path}: failed: {reason}", file=sys.stderr)
            else:
                seconds = time.perf_counter() - started
                hint = "" if result.notes else " (no pitched notes found: is the audio silent?)"
                tracks = len(result.tracks)
                how = "estimated" if result.instruments_estimated else "given"
                counted = f"{tracks} track{'s' * (tracks != 1)} ({how})" if instruments != 1 else "1 track"
                tqdm.write(
                    f"{path}: {len(result.notes)} notes, {counted}, in {result.duration_s:.1f} s of audio{hint}, "
                    f"took {seconds:.1f} s -> {', '.join(str(p) for p in written)}",
                    file=sys.stdout,
                )
            bar.update()
    if failed:
        print(f"timbrescribe: {len(failed)} of {len(files)} files failed", file=sys.stderr)
        return 1
    return 0
