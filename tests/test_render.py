"""FluidSynth rendering (real soundfonts) and audio augmentation."""
import numpy as np
import pytest

from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.data.augment import NO_AUGMENTATION, AugmentConfig, augment_stem, coloured_noise, mix_stems
from timbrescribe.data.instruments import SOUNDFONTS
from timbrescribe.data.render import (
    SilentStemError,
    audible_pitches,
    drop_inaudible_notes,
    render_part,
)
from timbrescribe.data.types import ControlEvent, Part
from timbrescribe.notes import Note

FLUIDR3 = SOUNDFONTS["fluidr3"]
PIANO, ORGAN, FLUTE, CONTRABASS = 0, 16, 73, 43


def first_sound(audio: np.ndarray, relative: float = 1e-3) -> int:
    return int(np.argmax(np.abs(audio) > relative * np.abs(audio).max()))


# TimGM6mb's piano sample itself starts with ~5 ms of near-silence.
@pytest.mark.parametrize("font, tolerance_s", [("fluidr3", 0.003), ("timgm6mb", 0.008)])
def test_note_sounds_at_its_onset_and_not_before(font, tolerance_s):
    audio = render_part(Part([Note(0.5, 1.0, 69, 100)], program=PIANO), SOUNDFONTS[font])
    onset = int(0.5 * SAMPLE_RATE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(audio[: onset - 32] == 0.0)  # block rounding moves events by <= 32 samples
    assert abs(first_sound(audio) - onset) < tolerance_s * SAMPLE_RATE


def test_length_is_release_tail_after_last_note_or_as_asked():
    part = Part([Note(0.1, 0.6, 60)], program=PIANO)
    assert render_part(part, FLUIDR3).size == int(np.ceil(1.6 * SAMPLE_RATE))
    assert render_part(part, FLUIDR3, tail_s=0.25).size == int(np.ceil(0.85 * SAMPLE_RATE))
    assert render_part(part, FLUIDR3, n_samples=5000).size == 5000


def test_sound_stops_after_the_note_off():
    audio = render_part(Part([Note(0.1, 0.5, 60)], program=ORGAN), FLUIDR3, tail_s=1.0)
    peak = np.abs(audio).max()
    assert np.abs(audio[int(0.3 * SAMPLE_RATE) : int(0.5 * SAMPLE_RATE)]).max() > 0.3 * peak
    assert np.abs(audio[int(1.2 * SAMPLE_RATE) :]).max() < 0.01 * peak  # dry: no reverb tail


def test_pitch_is_right_at_22050_hz():
    audio = render_part(Part([Note(0.0, 1.5, 69)], program=FLUTE), FLUIDR3)
    segment = audio[int(0.3 * SAMPLE_RATE) : int(1.3 * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size)))
    freqs = np.fft.rfftfreq(segment.size, 1 / SAMPLE_RATE)
    assert abs(freqs[np.argmax(spectrum)] - 440.0) < 5.0


def test_pitch_bend_moves_the_pitch():
    bent = Part([Note(0.0, 1.5, 69)], program=FLUTE, controls=[ControlEvent(0.0, "pitchbend", 0, 1229)])
    audio = render_part(bent, FLUIDR3)
    segment = audio[int(0.3 * SAMPLE_RATE) : int(1.3 * SAMPLE_RATE)]
    freqs = np.fft.rfftfreq(segment.size, 1 / SAMPLE_RATE)
    peak = freqs[np.argmax(np.abs(np.fft.rfft(segment * np.hanning(segment.size))))]
    assert abs(peak - 440.0 * 2 ** (30 / 1200)) < 4.0  # +30 cents with the default 2-semitone range


def test_rendering_is_deterministic_across_calls():
    part = Part([Note(0.1, 0.7, 64, 90), Note(0.3, 0.9, 67, 70)], program=PIANO,
                controls=[ControlEvent(0.2, "cc", 11, 80)])
    first = render_part(part, FLUIDR3)
    render_part(Part([Note(0.0, 2.0, 40)], program=ORGAN), FLUIDR3)
    np.testing.assert_array_equal(first, render_part(part, FLUIDR3))


def test_repeated_key_is_not_cut_by_the_earlier_note_off():
    part = Part([Note(0.2, 1.0, 60), Note(0.6, 1.6, 60)], program=ORGAN)
    audio = render_part(part, FLUIDR3)
    peak = np.abs(audio).max()
    assert np.abs(audio[int(1.1 * SAMPLE_RATE) : int(1.5 * SAMPLE_RATE)]).max() > 0.3 * peak


def test_missing_samples_are_detected_and_dropped():
    audible = audible_pitches(str(FLUIDR3), CONTRABASS)
    assert 40 in audible and 60 not in audible  # FluidR3's contrabass has no sample above MIDI 58
    with pytest.raises(SilentStemError):
        render_part(Part([Note(0.1, 0.5, 60)], program=CONTRABASS), FLUIDR3)
    kept = drop_inaudible_notes(Part([Note(0.1, 0.5, 60), Note(0.1, 0.5, 40)], program=CONTRABASS), FLUIDR3)
    assert [n.pitch for n in kept.notes] == [40]


ALL_EFFECTS = AugmentConfig(reverb_prob=1.0, shelf_prob=1.0, highpass_prob=1.0, lowpass_prob=1.0, noise_prob=1.0)


def test_stem_effects_add_no_latency():
    audio = render_part(Part([Note(0.5, 1.0, 69)], program=PIANO), FLUIDR3)
    for seed in range(4):
        wet = augment_stem(audio, np.random.default_rng(seed), ALL_EFFECTS)
        assert wet.shape == audio.shape and wet.dtype == np.float32
        assert not np.array_equal(wet, audio)
        assert abs(first_sound(wet) - first_sound(audio)) <= 8


def test_mix_is_stem_sum_plus_noise_and_peak_normalised():
    rng = np.random.default_rng(0)
    stems = [rng.standard_normal(20000).astype(np.float32) * s for s in (0.1, 0.5, 2.0)]
    mix, scaled = mix_stems(stems, np.random.default_rng(1), NO_AUGMENTATION)
    assert scaled.shape == (3, 20000)
    np.testing.assert_allclose(mix, scaled.sum(axis=0), atol=1e-6)
    assert np.isclose(np.abs(mix).max(), 10 ** (-1 / 20), rtol=1e-5)
    noisy, noisy_stems = mix_stems(stems, np.random.default_rng(1), ALL_EFFECTS)
    residual = noisy - noisy_stems.sum(axis=0)
    snr_db = 10 * np.log10(np.mean(noisy_stems.sum(axis=0) ** 2) / np.mean(residual**2))
    assert ALL_EFFECTS.noise_snr_db[0] - 0.5 < snr_db < ALL_EFFECTS.noise_snr_db[1] + 0.5
    assert np.abs(noisy).max() <= 10 ** (-ALL_EFFECTS.headroom_db[0] / 20) + 1e-6


def test_pink_noise_has_more_low_than_high_energy():
    noise = coloured_noise(np.random.default_rng(0), 1 << 15, pink=True)
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    assert np.isclose(np.sqrt(np.mean(noise**2)), 1.0, rtol=1e-3)
    assert spectrum[10:100].mean() > 20 * spectrum[-1000:].mean()
    white = np.abs(np.fft.rfft(coloured_noise(np.random.default_rng(0), 1 << 15, pink=False))) ** 2
    assert white[10:100].mean() < 3 * white[-1000:].mean()


def test_augmentation_is_seeded():
    audio = render_part(Part([Note(0.1, 0.6, 72)], program=FLUTE), FLUIDR3)
    a = augment_stem(audio, np.random.default_rng(5), ALL_EFFECTS)
    b = augment_stem(audio, np.random.default_rng(5), ALL_EFFECTS)
    np.testing.assert_array_equal(a, b)
