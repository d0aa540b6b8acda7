"""How dense each part is, and how sure the note model is of its notes: the measurement behind the
train-sampled-chords preset (docs/data.md, docs/training.md).

For every part of a dataset (the evaluation layout, e.g. TRIOS, or a rendered dataset): how many of
its notes sound at once (mean over the frames where it sounds), and, with a model, the frame
probability of its notes in the full mix a quarter and half into each note, and the frame recall
of the notes decoded from the mix (every part merged, as the agnostic scores count them). Its
missed frames are split into those of notes decoded at some point of their span (cut short or
started late) and those of notes not decoded at all, and the frame recall inside the decoded
notes is given up to and from LATE_SECONDS after their onsets (how far a time context must reach).
A rendered dataset prints one summary line per instrument (GM name) instead of a line per part,
without the model. Both give how long the notes below C3 last (median, share over 1 s: how long
bass notes are held, the measurement behind the train-sampled-held preset) and those from C3 up,
and with a model the frame recall per register: the measurements behind train-sampled-sustained.

usage: python scripts/part_density.py DATASET [--model ONNX] [--decoder JSON] [--no-model]
       [--limit N]
"""
from __future__ import annotations

from bench_basic_pitch import run_script  # first: it limits numpy to one thread

import argparse  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from timbrescribe.constants import MIDI_MIN, N_PITCHES  # noqa: E402
from timbrescribe.evaluation.layout import SyntheticPiece, read_dataset  # noqa: E402
from timbrescribe.evaluation.metrics import FRAME_PERIOD, frame_roll, note_frames  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LATE_SECONDS = 0.46  # the reach of the frame refinement of the light-temporal layouts
LOW_PITCH = 48  # C3: notes below it count as bass notes
REGISTERS = (("<C3", 0, 48), ("C3-B3", 48, 60), ("C4-B4", 60, 72), (">=C5", 72, 128))
WEIGHTS = ROOT / "src" / "timbrescribe" / "weights"


def notes_at_once(notes) -> float:
    """Mean number of the notes sounding together, over the frames where any sounds."""
    if not notes:
        return 0.0
    sounding = frame_roll(notes, int(max(n.offset for n in notes) / FRAME_PERIOD) + 1).sum(axis=0)
    return float(sounding[sounding > 0].mean())


def describe_lengths(notes) -> str:
    """How long the notes below LOW_PITCH last (how long bass notes are held) and those from it up."""
    parts = []
    for name, bass in (("below C3", True), ("from C3", False)):
        lengths = [n.offset - n.onset for n in notes if (n.pitch < LOW_PITCH) == bass]
        parts.append(f"  {name}: none" if not lengths else
                     f"  {name}: {len(lengths)} notes, median {np.median(lengths):.2f} s, "
                     f"{np.mean(np.array(lengths) > 1.0):.0%} over 1 s")
    return "".join(parts)


def register_recall(reference: np.ndarray, estimate: np.ndarray) -> str:
    """Frame recall of a part per REGISTERS band (128-row rolls)."""
    parts = []
    for name, low, high in REGISTERS:
        labelled = int(reference[low:high].sum())
        if labelled:
            parts.append(f"{name} {(reference[low:high] & estimate[low:high]).sum() / labelled:.2f}")
    return "  recall by register: " + ", ".join(parts)


def probability_into_notes(frame: np.ndarray, notes, fraction: float) -> float:
    """Median frame probability of ``notes`` at ``fraction`` of each note's labelled length."""
    values = []
    for note in notes:
        row = note.pitch - MIDI_MIN
        index = int((note.onset + fraction * (note.offset - note.onset)) / FRAME_PERIOD)
        if 0 <= row < N_PITCHES and index < frame.shape[1]:
            values.append(frame[row, index])
    return float(np.median(values)) if values else float("nan")


def missed_frames(reference: np.ndarray, estimate: np.ndarray, notes) -> str:
    """Where ``notes`` (frame roll ``reference``) lose frames in the decoded roll ``estimate``."""
    cut = unfound = 0
    late = np.zeros(2, dtype=int)  # (decoded, labelled) frames of decoded notes from LATE_SECONDS on
    early = np.zeros(2, dtype=int)  # and before
    split = int(LATE_SECONDS / FRAME_PERIOD)
    for note in notes:
        first, end = note_frames(note)
        span = estimate[note.pitch, first : max(first, end)]
        if not span.any():
            unfound += span.size
            continue
        cut += int((~span).sum())
        early += (int(span[:split].sum()), span[:split].size)
        late += (int(span[split:].sum()), span[split:].size)
    total = max(int(reference.sum()), 1)
    return (f"  missed: in decoded notes {cut / total:.3f}, whole notes {unfound / total:.3f}"
            f"  recall in decoded notes <{LATE_SECONDS} s {early[0] / max(early[1], 1):.3f}, "
            f"later {late[0] / max(late[1], 1):.3f} ({late[1] / max(early[1] + late[1], 1):.0%} of their frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--model", type=Path, default=WEIGHTS / "agnostic.onnx")
    parser.add_argument("--decoder", type=Path, default=None, help="decoder settings (default: the model's)")
    parser.add_argument("--no-model", action="store_true", help="only count the notes at once")
    parser.add_argument("--limit", type=int, default=None, help="first N pieces only")
    args = parser.parse_args()

    pieces = read_dataset(args.dataset)[: args.limit]
    synthetic = isinstance(pieces[0], SyntheticPiece)
    session = settings = None
    if not (args.no_model or synthetic):
        from timbrescribe.decode import DecoderSettings, decode_notes
        from timbrescribe.inference import AgnosticSession

        session = AgnosticSession(str(args.model))
        settings = DecoderSettings.from_json(args.decoder or args.model.with_name("decoder.json"))
    by_instrument: dict[str, list[float]] = defaultdict(list)
    instrument_notes: dict[str, list] = defaultdict(list)
    for piece in pieces:
        frame = estimate = None
        if session is not None:
            onset, frame = session.activations(piece.load_mix())
            estimate = frame_roll(decode_notes(onset, frame, settings), frame.shape[1])
        for part, notes in piece.parts.items():
            density = notes_at_once(notes)
            if synthetic:
                instrument = part.rsplit("-", 1)[0]
                by_instrument[instrument].append(density)
                instrument_notes[instrument] += notes
                continue
            line = (f"{piece.name:12s} {part:10s} notes {len(notes):4d}  at once {density:.2f}"
                    + describe_lengths(notes))
            if frame is not None:
                reference = frame_roll(notes, frame.shape[1])
                recall = (estimate & reference).sum() / max(reference.sum(), 1)
                quarter, half = (probability_into_notes(frame, notes, f) for f in (0.25, 0.5))
                line += f"  frame prob at 1/4 {quarter:.2f}, 1/2 {half:.2f}  frame recall {recall:.3f}"
                line += missed_frames(reference, estimate, notes) + register_recall(reference, estimate)
            print(line)
    for name, values in sorted(by_instrument.items(), key=lambda item: -len(item[1])):
        print(f"{name:28s} parts {len(values):4d}  at once: mean {np.mean(values):.2f}, "
              f"90th percentile {np.percentile(values, 90):.2f}" + describe_lengths(instrument_notes[name]))


if __name__ == "__main__":
    run_script(main, "part_density")
