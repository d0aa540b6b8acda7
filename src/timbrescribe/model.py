"""The networks (DESIGN.md §3): front end + note branch -> onset and frame maps; the timbre branch
-> one unit-length embedding per pitch-time cell; both together as the separation model.

Tensor axes are (batch, channel, frequency, time). Audio in, (B, 84, T) maps and (B, 12, 84, T)
embeddings out for MIDI 24..107. Every normalisation works within one frame, so a frame's outputs
do not depend on which chunk of a long file it is computed in.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import torch.nn.functional as F

from timbrescribe.constants import (
    BINS_PER_SEMITONE, DEPTH_HARMONIC_SHIFTS, EMBEDDING_DIM, HARMONIC_SHIFTS, N_HARMONICS, NOTE_LAYOUTS,
    TIMBRE_TIME_STRIDES,
)
from timbrescribe.errors import UserError
from timbrescribe.frontend import Frontend, harmonic_stack

# Initial scalar affine: maps the normalised log power (≈ -20 for the noise floor .. 0 for the
# loudest bins) to ≈ 0 .. 1, so the zero fill of harmonic stacking reads as "quiet".
AFFINE_SCALE_INIT = 0.05
AFFINE_BIAS_INIT = 1.0
IDENTITY_CALIBRATION = (1.0, 0.0)


def _conv_bn(c_in: int, c_out: int, kernel: tuple[int, int], **conv_args) -> nn.Sequential:
    """Convolution without bias (the batch norm supplies it) followed by batch norm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, bias=False, **conv_args), nn.BatchNorm2d(c_out))


class HarmonicAggregation(nn.Module):
    """Harmonic aggregation at depth, as a residual block on a (B, C, 252, T) hidden map: a 1x1
    conv projects it to ``maps`` maps, each is stacked at DEPTH_HARMONIC_SHIFTS (the cell's
    harmonics and the notes it would be a harmonic of), and a 3x3 conv + BN + ReLU brings the stack
    back to C channels. The input stack shows a cell its own harmonics once; repeated at depth, a
    cell also sees what the network already found an octave or a twelfth below or above."""

    def __init__(self, channels: int, maps: int = 3) -> None:
        super().__init__()
        self.project = nn.Conv2d(channels, maps, (1, 1))
        self.mix = nn.Sequential(
            _conv_bn(maps * len(DEPTH_HARMONIC_SHIFTS), channels, (3, 3), padding=(1, 1)), nn.ReLU()
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.mix(harmonic_stack(self.project(hidden), DEPTH_HARMONIC_SHIFTS))


class TimeContext(nn.Module):
    """A correction to one map's logits in every pitch row from that row's onset and frame
    probabilities over ±reach frames: three dilated convolutions of 9 taps along time, shared by
    all rows. The convolutions before it see ±9 frames, too little to tell a held note's quiet
    decay from a released one, or a new note from a bow change or vibrato inside a held one.
    The last layer starts at zero, so a model extended with it gives the maps it gave before.

    ``energy``: the first layer also sees the row's input level (the fundamental's normalised log
    power), through taps of its own that start at zero: a held note's decay falls smoothly from its
    attack, a released one drops, whatever the probabilities made of them.

    ``neighbours``: the first layer also sees, through taps of its own that start at zero, the
    strongest onset probability in the NEIGHBOUR_SEMITONES rows on either side (not the row's
    own): where a melodic line steps to a nearby pitch, the note it leaves ends, while a held
    note's decay and a released one's room tail look alike in the row itself."""

    def __init__(
        self, dilations: tuple[int, int, int], channels: int = 8, energy: bool = False, neighbours: bool = False
    ) -> None:
        super().__init__()
        self.reach = sum(4 * dilation for dilation in dilations)  # frames each way
        widths = (2, channels, channels)
        convs = [
            nn.Conv2d(width, channels, (1, 9), padding=(0, 4 * dilation), dilation=(1, dilation))
            for width, dilation in zip(widths, dilations)
        ]
        self.layers = nn.Sequential(*(module for conv in convs for module in (conv, nn.ReLU())))

        def side_taps() -> nn.Conv2d:
            """Taps of one more input into the first layer, starting at zero (passing nothing on)."""
            taps = nn.Conv2d(1, channels, (1, 9), padding=convs[0].padding, dilation=convs[0].dilation, bias=False)
            nn.init.zeros_(taps.weight)
            return taps

        self.energy = side_taps() if energy else None
        self.neighbours = side_taps() if neighbours else None
        self.out = nn.Conv2d(channels, 1, (1, 1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, onset_logits: torch.Tensor, note_logits: torch.Tensor, level: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The correction (B, 84, T) to add to the refined map's logits; ``level`` (B, 84, T) is
        the rows' input level, used when the context was built with ``energy``."""
        probabilities = torch.sigmoid(torch.stack([onset_logits, note_logits], dim=1))
        hidden = self.layers[0](probabilities)
        if self.energy is not None:
            hidden = hidden + self.energy(level.unsqueeze(1))
        if self.neighbours is not None:
            hidden = hidden + self.neighbours(neighbour_onsets(probabilities[:, :1]))
        return self.out(self.layers[1:](hidden)).squeeze(1)


NEIGHBOUR_SEMITONES = 5  # the composer's largest melodic step (data.composer.ComposerConfig.max_step)


def neighbour_onsets(onset: torch.Tensor) -> torch.Tensor:
    """(B, 1, 84, T) onset probabilities -> the largest of each cell's NEIGHBOUR_SEMITONES rows
    below and above it (its own row left out; rows past the ends count as 0)."""
    n = NEIGHBOUR_SEMITONES
    # Zero rows joined on, not padding: onnxruntime fuses a Pad into the pool's own pads, and
    # onnxruntime-web refuses pads as large as the kernel.
    zeros = torch.zeros_like(onset[:, :, :n])
    pooled = nn.functional.max_pool2d(torch.cat([zeros, onset, zeros], dim=2), (n, 1), stride=1)
    rows = onset.shape[2]
    return torch.maximum(pooled[:, :, :rows], pooled[:, :, n + 1 : n + 1 + rows])


# The frame map's refinement reaches ±40 frames (±0.46 s), the onset map's, after it, ±28 (±0.33 s).
FRAME_CONTEXT_DILATIONS = (2, 4, 4)
ONSET_CONTEXT_DILATIONS = (1, 2, 4)
# The sustain refinement, last, reaches ±120 frames (±1.39 s) more: a piano note held for a second
# has decayed far, and only its attack tells that it still sounds.
SUSTAIN_CONTEXT_DILATIONS = (5, 12, 13)  # co-prime steps: every frame within ±98 counts


class NoteBranch(nn.Module):
    """Harmonic stack (B, 8, 252, T) -> (onset logits, note logits), each (B, 84, T).

    ``layout`` "published": DESIGN.md §3's note branch (18,968 parameters). "harmonic": the dense
    dilated 25x3 octave context is replaced by harmonic aggregation repeated at two depths (after
    the first and after the last 16-channel layer), a 3x3 conv making the residual onto the input
    stack (21,918 parameters); its ONNX graph takes 1.48x the published one's one-thread CPU time
    (scripts/bench_agnostic.py): the stacking at depth is data movement (pad, slice, concat).
    "temporal": the published layout whose frame logits a TimeContext refines (+1,329 parameters;
    its graphs need 126 frames of chunk context instead of 96: export.context_frames).
    "light": the published layout with a 25x1 octave context (no time taps: 12,570 parameters),
    the conv that takes most of the published graph's time; its ONNX graph takes 0.64x the
    published one's network time (scripts/bench_graphs.py, docs/benchmarks.md).
    "light-temporal": light + that frame refinement (13,899 parameters). "light-temporal-onsets":
    light-temporal whose onset logits a second TimeContext refines after the frames (15,228
    parameters; 154 frames of chunk context). "light-temporal-energy-onsets": light-temporal-onsets
    whose two refinements also see each row's input level (TimeContext ``energy``; 15,372
    parameters). "light-temporal-energy-onsets-sustain": that with a third TimeContext, of the
    frame logits over ±1.39 s, after the other two (so the onset map stays as it was; 16,773
    parameters; 274 frames of chunk context). "light-temporal-energy-onsets-neighbours":
    light-temporal-energy-onsets whose frame refinement also sees the onsets of the nearby rows
    (TimeContext ``neighbours``; 15,444 parameters; the same chunk context).

    The stride-3 heads put output row k on stacked bin 3k+1 (MIDI 24+k): a kernel of odd height h
    centred there starts at 3k+1-h//2, i.e. symmetric frequency padding h//2 - 1, giving 84 rows.
    """

    def __init__(self, layout: str = "published") -> None:
        super().__init__()
        if layout not in NOTE_LAYOUTS:
            raise ValueError(f"unknown note branch layout {layout!r} (known: {', '.join(NOTE_LAYOUTS)})")
        self.layout = layout
        self.expand = nn.Sequential(_conv_bn(N_HARMONICS, 16, (5, 5), padding=(2, 2)), nn.LeakyReLU(0.01))
        if layout != "harmonic":
            # 25 taps dilated by 3 bins span ±36 bins: one octave each way; ±1 frame unless light.
            time_taps = 1 if layout.startswith("light") else 3
            self.octave_context = _conv_bn(
                16, N_HARMONICS, (25, time_taps), padding=(36, time_taps // 2), dilation=(3, 1)
            )
        else:
            self.harmonics_early = HarmonicAggregation(16)
            self.stack_residual = _conv_bn(16, N_HARMONICS, (3, 3), padding=(1, 1))
            self.harmonics_late = HarmonicAggregation(16)
        self.features = nn.Sequential(_conv_bn(N_HARMONICS, 16, (5, 5), padding=(2, 2)), nn.ReLU())
        self.note_head = nn.Conv2d(16, 1, (5, 5), stride=(3, 1), padding=(2 - 1, 2))
        self.onset_features = nn.Sequential(
            _conv_bn(16, 7, (7, 3), stride=(3, 1), padding=(3 - 1, 1)), nn.ReLU()
        )
        self.onset_head = nn.Conv2d(8, 1, (3, 5), padding=(1, 2))
        self.refines_frames = "temporal" in layout
        self.contexts_see_level = "energy" in layout
        if self.refines_frames:
            self.frame_context = TimeContext(
                FRAME_CONTEXT_DILATIONS, energy=self.contexts_see_level, neighbours="neighbours" in layout
            )
        self.refines_onsets = "onsets" in layout
        if self.refines_onsets:
            self.onset_context = TimeContext(ONSET_CONTEXT_DILATIONS, energy=self.contexts_see_level)
        self.refines_sustain = layout.endswith("sustain")
        if self.refines_sustain:
            self.sustain_context = TimeContext(SUSTAIN_CONTEXT_DILATIONS, energy=True)

    def forward(self, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.layout != "harmonic":
            hidden = torch.relu(self.octave_context(self.expand(stacked)) + stacked)
            hidden = self.features(hidden)
        else:
            hidden = self.harmonics_early(self.expand(stacked))
            hidden = torch.relu(self.stack_residual(hidden) + stacked)
            hidden = self.harmonics_late(self.features(hidden))
        note_logits = self.note_head(hidden)
        onset_input = torch.cat([self.onset_features(hidden), torch.sigmoid(note_logits)], dim=1)
        onset_logits = self.onset_head(onset_input).squeeze(1)
        note_logits = note_logits.squeeze(1)
        # The fundamental's level at each output row's stacked bin (3k + 1), (B, 84, T).
        level = stacked[:, HARMONIC_SHIFTS.index(0), 1::BINS_PER_SEMITONE] if self.contexts_see_level else None
        if self.refines_frames:
            note_logits = note_logits + self.frame_context(onset_logits, note_logits, level)
        if self.refines_onsets:
            onset_logits = onset_logits + self.onset_context(onset_logits, note_logits, level)
        if self.refines_sustain:
            note_logits = note_logits + self.sustain_context(onset_logits, note_logits, level)
        return onset_logits, note_logits

    def time_reach(self) -> int:
        """Frames each way that the time contexts add to the convolutions' reach (0 without)."""
        return sum(context.reach for context in self.time_contexts())

    def time_contexts(self) -> list[TimeContext]:
        """The layout's time contexts (refinements of the maps), in the order they run."""
        return [module for module in self.children() if isinstance(module, TimeContext)]


class AgnosticModel(nn.Module):
    """Audio (B, N) at 22050 Hz -> onset and frame maps (B, 84, n_frames(N)).

    ``log_scale`` (B,) is the energy statistic of the whole file (frontend.log_scale); when None
    each clip uses its own. The CQT kernels are buffers, not parameters.
    """

    def __init__(self, layout: str = "published") -> None:
        super().__init__()
        self.frontend = Frontend()
        self.affine_scale = nn.Parameter(torch.tensor(AFFINE_SCALE_INIT))
        self.affine_bias = nn.Parameter(torch.tensor(AFFINE_BIAS_INIT))
        self.note_branch = NoteBranch(layout)
        # (scale, shift) of the onset logits before their sigmoid: Platt scaling fitted on
        # validation data after training (onset_calibration.py); (1, 0) leaves them as trained.
        self.register_buffer("onset_calibration", torch.tensor(IDENTITY_CALIBRATION))

    def calibrated_onset(self, onset_logits: torch.Tensor) -> torch.Tensor:
        """Onset probabilities sigmoid(scale * logits + shift)."""
        scale, shift = self.onset_calibration.unbind()
        return torch.sigmoid(onset_logits * scale + shift)

    def logits(
        self, audio: torch.Tensor, log_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(onset logits, frame logits), each (B, 84, T)."""
        spectrum = self.frontend(audio, log_scale) * self.affine_scale + self.affine_bias
        return self.note_branch(harmonic_stack(spectrum.unsqueeze(1)))

    def forward(
        self, audio: torch.Tensor, log_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(onset probabilities, calibrated; frame probabilities), each (B, 84, T)."""
        onset_logits, frame_logits = self.logits(audio, log_scale)
        return self.calibrated_onset(onset_logits), torch.sigmoid(frame_logits)


class FrameGroupNorm(nn.Module):
    """Group normalisation over (channels of a group, frequency), separately for every frame, with
    a per-channel scale and (optionally) bias. Unlike nn.GroupNorm and nn.InstanceNorm2d, which
    pool over time, a frame's output depends only on that frame: chunked inference of a long file
    gives the same values as one pass. ``groups == channels`` is per-channel instance normalisation
    over frequency."""

    def __init__(self, groups: int, channels: int, bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"{channels} channels do not split into {groups} groups")
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        grouped = x.reshape(b, self.groups, c // self.groups * f, t)
        mean = grouped.mean(dim=2, keepdim=True)
        var = (grouped - mean).pow(2).mean(dim=2, keepdim=True)
        x = ((grouped - mean) * torch.rsqrt(var + self.eps)).reshape(b, c, f, t)
        x = x * self.weight[:, None, None]
        return x if self.bias is None else x + self.bias[:, None, None]


class CellLayerNorm(nn.Module):
    """Layer normalisation over the channels of each pitch-time cell (scale and bias per channel)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TimbreBranch(nn.Module):
    """Normalised log CQT (B, 288, T) -> unit-length embeddings (B, EMBEDDING_DIM, 84, T).

    Its own scalar affine and harmonic stack, then (DESIGN.md §3): conv 8->16 5x5 + group norm(4) +
    LeakyReLU -> dilated 25x3 conv 16->8 (± one octave) + residual with the stack -> group norm(2)
    -> conv 8->16 5x5 + PReLU -> residual block (cell LayerNorm, 3x3 16->24, ReLU, 3x3 24->16) ->
    instance norm without bias -> conv 16->12 3x5 stride (3,1) onto the semitone rows -> L2 norm.

    With ``time_stride`` 2 the first conv steps two frames at a time, so everything after it runs
    on frames 0, 2, 4, ... (the residual takes the stack at those frames), and each embedding is
    held for its frame and the next: the same parameters at half the cost. Frame 2j then depends
    on where the even frames are, so chunked inference must start its chunks on even frames
    (inference.CHUNK_FRAME_MULTIPLE). The stride is stored with the weights (``time_stride``).
    """

    def __init__(self, time_stride: int = 1) -> None:
        super().__init__()
        if time_stride not in TIMBRE_TIME_STRIDES:
            raise ValueError(f"time_stride must be one of {TIMBRE_TIME_STRIDES}, got {time_stride}")
        self.stride = time_stride
        self.register_buffer("time_stride", torch.tensor(time_stride))
        self.affine_scale = nn.Parameter(torch.tensor(AFFINE_SCALE_INIT))
        self.affine_bias = nn.Parameter(torch.tensor(AFFINE_BIAS_INIT))
        self.expand = nn.Sequential(
            nn.Conv2d(N_HARMONICS, 16, (5, 5), padding=(2, 2), stride=(1, time_stride)), FrameGroupNorm(4, 16),
            nn.LeakyReLU(0.01),
        )
        self.octave_context = nn.Conv2d(16, N_HARMONICS, (25, 3), padding=(36, 1), dilation=(3, 1))
        self.context_norm = FrameGroupNorm(2, N_HARMONICS)
        self.features = nn.Sequential(nn.Conv2d(N_HARMONICS, 16, (5, 5), padding=(2, 2)), nn.PReLU())
        self.residual = nn.Sequential(
            CellLayerNorm(16), nn.Conv2d(16, 24, (3, 3), padding=(1, 1)), nn.ReLU(),
            nn.Conv2d(24, 16, (3, 3), padding=(1, 1)),
        )
        self.out_norm = FrameGroupNorm(16, 16, bias=False)
        self.head = nn.Conv2d(16, EMBEDDING_DIM, (3, 5), stride=(3, 1), padding=(0, 2))

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        stacked = harmonic_stack((spectrum * self.affine_scale + self.affine_bias).unsqueeze(1))
        kept = stacked if self.stride == 1 else stacked[..., :: self.stride]
        hidden = self.context_norm(self.octave_context(self.expand(stacked)) + kept)
        hidden = self.features(hidden)
        hidden = self.out_norm(hidden + self.residual(hidden))
        embedding = F.normalize(self.head(hidden), dim=1, eps=1e-6)
        if self.stride == 1:
            return embedding
        held = embedding.unsqueeze(-1).expand(*embedding.shape, self.stride).flatten(-2)
        return held[..., : spectrum.shape[-1]]


class SeparationModel(nn.Module):
    """Audio (B, N) -> onset, frame (B, 84, T) and embedding (B, EMBEDDING_DIM, 84, T).

    The note model and the timbre branch share only the normalised spectrogram."""

    def __init__(self, agnostic: AgnosticModel | None = None, timbre: TimbreBranch | None = None) -> None:
        super().__init__()
        self.agnostic = agnostic if agnostic is not None else AgnosticModel()
        self.timbre = timbre if timbre is not None else TimbreBranch()

    def forward(
        self, audio: torch.Tensor, log_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        agnostic = self.agnostic
        spectrum = agnostic.frontend(audio, log_scale)
        stacked = harmonic_stack((spectrum * agnostic.affine_scale + agnostic.affine_bias).unsqueeze(1))
        onset_logits, frame_logits = agnostic.note_branch(stacked)
        return agnostic.calibrated_onset(onset_logits), torch.sigmoid(frame_logits), self.timbre(spectrum)


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def read_weights(path: str | Path) -> dict:
    """The state dict at ``path``: a plain one (torch.save) or a training checkpoint's (last.pt,
    whose "model" entry holds it)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own files
    return dict(state["model"] if "optimizer" in state else state)


def weights_layout(state: dict) -> str:
    """The note branch layout (NOTE_LAYOUTS) of an AgnosticModel state dict."""
    octave = state.get("note_branch.octave_context.0.weight")
    if octave is None:
        return "harmonic"
    light = octave.shape[-1] == 1
    if "note_branch.frame_context.neighbours.weight" in state:
        return "light-temporal-energy-onsets-neighbours"
    if "note_branch.sustain_context.out.weight" in state:
        return "light-temporal-energy-onsets-sustain"
    if "note_branch.onset_context.energy.weight" in state:
        return "light-temporal-energy-onsets"
    if "note_branch.onset_context.out.weight" in state:
        return "light-temporal-onsets"
    if "note_branch.frame_context.out.weight" in state:
        return "light-temporal" if light else "temporal"
    return "light" if light else "published"


def load_agnostic_model(path: str | Path) -> AgnosticModel:
    """An AgnosticModel in eval mode with the state dict saved at ``path`` (torch.save), of the
    note branch layout those weights have."""
    state = read_weights(path)
    layout = weights_layout(state)
    # Weights saved by training are uncalibrated: the calibration is fitted afterwards.
    state.setdefault("onset_calibration", torch.tensor(IDENTITY_CALIBRATION))
    model = AgnosticModel(layout)
    model.load_state_dict(state)
    return model.eval()


def load_timbre_branch(path: str | Path) -> TimbreBranch:
    """A TimbreBranch in eval mode with the state dict saved at ``path`` (torch.save), at the frame
    stride stored with it (weights saved before strides existed run at every frame)."""
    state = read_weights(path)
    state.setdefault("time_stride", torch.tensor(1))
    branch = TimbreBranch(int(state["time_stride"]))
    branch.load_state_dict(state)
    return branch.eval()
