"""The fixed front end: CQT geometry and accuracy, energy normalisation, harmonic stacking, ONNX."""
import numpy as np
import pytest
import scipy.signal
import torch

from timbrescribe.constants import (
    DEPTH_HARMONIC_SHIFTS,
    HARMONIC_SHIFTS,
    HOP,
    N_BINS,
    N_STACKED_BINS,
    RELATIVE_LOG_FLOOR,
    SAMPLE_RATE,
    n_frames,
)
from timbrescribe.frontend import (
    CQT,
    Q,
    Frontend,
    bin_frequencies,
    cqt_kernel,
    frame_energy,
    harmonic_stack,
    log_scale,
    normalise_energy,
)

RNG = np.random.default_rng(1234)


@pytest.fixture(scope="module")
def cqt():
    return CQT().eval()


def _power(cqt, audio: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return cqt(torch.tensor(audio, dtype=torch.float32)[None])[0].double().numpy()


def _tone(midi: float, seconds: float, amplitude: float = 0.3, start: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    freq = 440.0 * 2.0 ** ((midi - 69) / 12)
    return np.where(t >= start, amplitude * np.sin(2 * np.pi * freq * t), 0.0)


@pytest.mark.parametrize("n", [1, 2, 127, 255, 256, 257, 511, 512, 513, 4097, 22050])
def test_frame_count_follows_formula(cqt, n):
    assert _power(cqt, RNG.standard_normal(n)).shape == (N_BINS, n_frames(n))
    assert n_frames(n) == (n - 1) // HOP + 1


def test_sine_peaks_on_its_semitone_bin_for_every_pitch(cqt):
    # All 84 pitches: the top one (MIDI 107, 3951 Hz) is far below Nyquist (11025 Hz).
    misplaced = {}
    for midi in range(24, 108):
        spectrum = _power(cqt, _tone(midi, 1.5))[:, 40:90].mean(axis=1)
        if spectrum.argmax() != 3 * (midi - 24) + 1:
            misplaced[midi] = int(spectrum.argmax())
    assert misplaced == {}


def test_frames_are_centred_on_hop_multiples(cqt):
    # A click at sample 40*HOP must peak in frame 40 in every octave (not shifted by decimation).
    audio = np.zeros(100 * HOP)
    audio[40 * HOP] = 1.0
    power = _power(cqt, audio)
    assert set(power.argmax(axis=1)) == {40}


def _direct_cqt(audio: np.ndarray) -> np.ndarray:
    """Reference CQT: every bin's kernel at the full sample rate (up to 35k taps), no decimation."""
    centres = np.arange(n_frames(len(audio))) * HOP
    power = np.zeros((N_BINS, len(centres)))
    for j, freq in enumerate(bin_frequencies()):
        length = 2 * int(np.ceil(Q * SAMPLE_RATE / freq / 2)) + 1
        kernel = cqt_kernel(freq, SAMPLE_RATE, length)
        padded = np.pad(audio, length // 2)
        response = scipy.signal.fftconvolve(padded, kernel[::-1], mode="valid")
        power[j] = np.abs(response[centres]) ** 2
    return power


def test_octave_cqt_matches_direct_cqt(cqt):
    audio = 0.001 * RNG.standard_normal(3 * SAMPLE_RATE)
    for midi in (28, 40, 47, 55, 64, 71, 83, 95, 104):
        audio += _tone(midi, 3.0, amplitude=0.2, start=RNG.uniform(0, 1.5))
    fast, direct = _power(cqt, audio), _direct_cqt(audio)
    # Differences come from the 7 cascaded half-band filters: passband ripple ≤ 1e-3 in amplitude
    # per stage (≤ 1.4 % in power after 7 stages) and a -60 dB stop band whose aliases only matter
    # in bins far below the peaks. Measured: max error 1.0 % of the peak power, ≤ 0.08 dB in bins
    # within 20 dB of the peak; the bounds leave about 2x margin.
    assert np.abs(fast - direct).max() <= 0.02 * direct.max()
    loud = direct > 0.01 * direct.max()
    assert np.abs(10 * np.log10(fast[loud] / direct[loud])).max() < 0.2


def test_energy_norm_is_gain_invariant(cqt):
    audio = _tone(57, 2.0, 0.9) + _tone(69, 2.0, 0.9, start=0.7) + 0.01 * RNG.standard_normal(2 * SAMPLE_RATE)
    loud, quiet = (torch.tensor(_power(cqt, g * audio))[None] for g in (1.0, 0.01))
    assert (log_scale(frame_energy(loud)) - log_scale(frame_energy(quiet))).item() == pytest.approx(
        np.log(1e4), abs=1e-4
    )
    # The floor is relative to the spread, so the whole normalised map moves by float32 rounding only,
    # in the noise floor as on the tones.
    loud_map, quiet_map = normalise_energy(loud), normalise_energy(quiet)
    assert (loud_map - quiet_map).abs().max().item() < 1e-3
    assert (loud_map > np.log(RELATIVE_LOG_FLOOR) + 5).sum() > 100  # the tones stand far above the floor


@pytest.mark.parametrize(
    "audio",
    [np.zeros(SAMPLE_RATE), np.full(SAMPLE_RATE, 0.5), np.full(1, 0.3), np.zeros(1), _tone(60, 0.01)],
    ids=["silence", "dc", "one-sample", "one-zero-sample", "one-frame-tone"],
)
def test_normalised_output_is_finite_on_degenerate_input(audio):
    with torch.no_grad():
        out = Frontend()(torch.tensor(audio, dtype=torch.float32)[None])
    assert out.shape == (1, N_BINS, n_frames(len(audio)))
    assert torch.isfinite(out).all()


def test_log_scale_is_finite_and_uses_whole_statistic():
    energies = torch.tensor([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0], [1.0, 3.0, 1.0]])
    scales = log_scale(energies)
    assert torch.isfinite(scales).all()
    # constant energy: the relative floor (0.1 * mean) replaces std = 0
    assert scales[1].item() == pytest.approx(np.log(0.2), rel=1e-5)
    assert scales[2].item() == pytest.approx(np.log(np.std([1.0, 3.0, 1.0])), rel=1e-5)
    # chunking a file must not change the statistic: moments of the whole sequence are used
    long = torch.rand(1, 1000)
    assert log_scale(long).item() == pytest.approx(np.log(long.numpy().std()), rel=1e-4)


def test_explicit_log_scale_overrides_clip_statistic(cqt):
    power = torch.tensor(_power(cqt, _tone(60, 1.0)))[None]
    shift = torch.tensor([3.0])
    expected = torch.log(power / np.exp(3.0) + RELATIVE_LOG_FLOOR)
    assert torch.allclose(normalise_energy(power, shift), expected)
    assert frame_energy(power).shape == (1, power.shape[-1])


def test_harmonic_stack_shifts_bins_and_zero_fills():
    spectrum = torch.arange(1, N_BINS + 1, dtype=torch.float32).view(1, 1, N_BINS, 1).repeat(2, 1, 1, 3)
    stacked = harmonic_stack(spectrum)
    assert stacked.shape == (2, len(HARMONIC_SHIFTS), N_STACKED_BINS, 3)
    for channel, shift in enumerate(HARMONIC_SHIFTS):
        source = np.arange(N_STACKED_BINS) + shift
        expected = np.where((source >= 0) & (source < N_BINS), source + 1, 0)
        assert np.array_equal(stacked[1, channel, :, 2].numpy(), expected)


def test_harmonic_stack_of_a_hidden_map_keeps_channels_and_bin_alignment():
    # At depth the input is a 252-bin map of several channels: block h of the output holds every
    # channel shifted by DEPTH_HARMONIC_SHIFTS[h], zero beyond either edge.
    hidden = torch.zeros(1, 2, N_STACKED_BINS, 1)
    hidden[0, 1, 120, 0] = 1.0
    stacked = harmonic_stack(hidden, DEPTH_HARMONIC_SHIFTS)
    assert stacked.shape == (1, 2 * len(DEPTH_HARMONIC_SHIFTS), N_STACKED_BINS, 1)
    for block, shift in enumerate(DEPTH_HARMONIC_SHIFTS):
        assert torch.nonzero(stacked[0, 2 * block, :, 0]).numel() == 0  # channel 0 stays empty
        assert torch.nonzero(stacked[0, 2 * block + 1, :, 0]).flatten().tolist() == [120 - shift]
    assert DEPTH_HARMONIC_SHIFTS == tuple(sorted({-s for s in HARMONIC_SHIFTS[2:]} | set(HARMONIC_SHIFTS[1:])))


@pytest.mark.slow
def test_frontend_onnx_matches_torch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    frontend = Frontend().eval()
    path = tmp_path / "frontend.onnx"
    torch.onnx.export(
        frontend,
        (torch.randn(1, 30000), torch.zeros(1)),
        str(path),
        input_names=["audio", "log_scale"],
        output_names=["spectrum"],
        dynamic_shapes={"audio": {1: torch.export.Dim("samples", min=1)}, "log_scale": None},
        dynamo=True,
        verbose=False,
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 257, 12345, 50000):
        audio = (0.1 * RNG.standard_normal((1, n))).astype(np.float32)
        scale = np.array([0.5], dtype=np.float32)
        (onnx_out,) = session.run(None, {"audio": audio, "log_scale": scale})
        with torch.no_grad():
            torch_out = frontend(torch.from_numpy(audio), torch.from_numpy(scale)).numpy()
        # float32 log-power of values spread over ~20 nats: different summation orders differ by ~1e-5
        np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4)


def test_cqt_stays_float32_under_autocast(cqt):
    audio = torch.tensor(_tone(60, 0.5) + _tone(91, 0.5), dtype=torch.float32)[None]
    with torch.no_grad():
        plain = cqt(audio)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = cqt(audio)
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, plain)
