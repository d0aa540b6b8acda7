"""Fixed numbers of the signal chain (DESIGN.md §1–§2). Every module takes them from here."""

SAMPLE_RATE = 22050
HOP = 256
FRAME_RATE = SAMPLE_RATE / HOP  # 86.13 frames per second

BINS_PER_OCTAVE = 36
N_OCTAVES = 8
N_BINS = BINS_PER_OCTAVE * N_OCTAVES  # 288 CQT bins
BINS_PER_SEMITONE = BINS_PER_OCTAVE // 12  # 3
# C1 (MIDI 24, 32.7032 Hz) lowered by one third of a semitone, so that bin 3k+1 sits on MIDI 24+k.
FMIN = 440.0 * 2.0 ** ((24 - 69) / 12) * 2.0 ** (-1 / BINS_PER_OCTAVE)

MIDI_MIN = 24
N_PITCHES = 84
MIDI_MAX = MIDI_MIN + N_PITCHES - 1  # 107

# Harmonic stacking shifts in bins: sub-octave and harmonics 1..7, round(36*log2(h)).
HARMONIC_SHIFTS = (-36, 0, 36, 57, 72, 84, 93, 101)
N_HARMONICS = len(HARMONIC_SHIFTS)
# Shifts of the note branch's harmonic aggregation at depth: below (the cell as harmonic 7..2 of a
# lower note), the cell itself, above (its harmonics 2..7).
DEPTH_HARMONIC_SHIFTS = tuple(-s for s in reversed(HARMONIC_SHIFTS[2:])) + HARMONIC_SHIFTS[1:]
# The note branch's layouts (model.NoteBranch): DESIGN.md §3's ("published", the shipped weights),
# the one with harmonic aggregation at two depths ("harmonic", issue 7; trained, not shipped), the
# published one whose frame logits are refined over time ("temporal": model.TimeContext), and the
# published one without the octave context's time taps ("light"), also with that refinement, and
# with the onset logits refined over time after it ("light-temporal-onsets"), both refinements also
# seeing each pitch row's input level ("light-temporal-energy-onsets"), and that with a third,
# longer refinement of the frame logits last ("light-temporal-energy-onsets-sustain"), or with the
# frame refinement also seeing the onsets of the nearby pitch rows ("...-neighbours").
NOTE_LAYOUTS = ("published", "harmonic", "temporal", "light", "light-temporal", "light-temporal-onsets",
                "light-temporal-energy-onsets", "light-temporal-energy-onsets-sustain",
                "light-temporal-energy-onsets-neighbours")
N_STACKED_BINS = N_PITCHES * BINS_PER_SEMITONE  # 252

# Size of the timbre embedding of every pitch-time cell (DESIGN.md §3: 16 gave nothing over 12).
EMBEDDING_DIM = 12
# Frame strides the timbre branch may run at (model.TimbreBranch): 1 = every frame (DESIGN.md §3),
# 2 = every other frame, each embedding held for two frames (issue 6: half the branch's cost).
TIMBRE_TIME_STRIDES = (1, 2)

# Floor added to the spread-normalised power P/s before the log (DESIGN.md §2 adds ε = 1.01e-8 to P
# itself, which made quiet recordings lose notes). Relative to the clip's own spread s, so a gain
# change alters nothing. Chosen on the dev sets by scripts/tune_log_floor.py: 0.2 × ε / s at the
# median spread of the training mixes (log s = -5.97), where the shipped note model scores as it
# did with the absolute ε. Far above float32's underflow.
RELATIVE_LOG_FLOOR = 7.9e-7


def n_frames(n_samples: int) -> int:
    """Frames the front end produces for ``n_samples`` samples: floor((N - 1) / HOP) + 1."""
    if n_samples < 1:
        raise ValueError(f"need at least one sample, got {n_samples}")
    return (n_samples - 1) // HOP + 1


def frame_to_time(frame: float) -> float:
    """Start time in seconds of frame index ``frame`` (frame k is centred on sample k*HOP)."""
    return frame * HOP / SAMPLE_RATE


def time_to_frame(seconds: float) -> int:
    """Nearest frame index to a time in seconds."""
    return int(round(seconds * SAMPLE_RATE / HOP))
