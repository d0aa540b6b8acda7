"""SFZ rendering through real sfizz (pysfizz), on a small instrument the tests write themselves."""
import numpy as np
import pytest

from sfz_instrument import HIGH_KEY, LAYERS, LOW_KEY, write_sfz_instrument
from timbrescribe.constants import SAMPLE_RATE
from timbrescribe.data import sfz
from timbrescribe.data.render import SilentStemError
from timbrescribe.data.render import render_part as render_gm
from timbrescribe.data.types import ControlEvent, Part
from timbrescribe.notes import Note

pytest.importorskip("pysfizz")
FLUTE = 73


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_sfz_instrument(tmp_path_factory.mktemp("sfz"))


def sounding_pitch(segment: np.ndarray) -> float:
    """Frequency of the strongest spectral peak (the fundamental, in these tones), in Hz."""
    padded = 8 * segment.size
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size), padded))
    return float(np.fft.rfftfreq(padded, 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def midi_hz(pitch: float) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def test_labels_match_the_audio_pitch_and_onset(tones):
    """Every labelled note sounds at its pitch (spectrum peak) from its onset (first sound)."""
    pitches = [45, 52, 60, 64, 71, 76]  # across the three roots, shifted up and down
    notes = [Note(0.3 + 0.6 * i, 0.6 + 0.6 * i, p, 90) for i, p in enumerate(pitches)]
    audio = sfz.render_part(Part(notes, program=FLUTE), sfz.SfzInstrument(str(tones)), level=False)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size == int(np.ceil((notes[-1].offset + 1.0) * SAMPLE_RATE))
    peak = np.abs(audio).max()
    for i, note in enumerate(notes):
        start = int(round(note.onset * SAMPLE_RATE))
        previous_end = int((notes[i - 1].offset + 0.15) * SAMPLE_RATE) if i else 0
        assert np.abs(audio[previous_end : start]).max() < 1e-6  # silent until the onset
        first = start + int(np.argmax(np.abs(audio[start:]) > 1e-3 * peak))
        assert abs(first - start) <= 0.002 * SAMPLE_RATE
        segment = audio[start + int(0.03 * SAMPLE_RATE) : int(note.offset * SAMPLE_RATE)]
        assert abs(sounding_pitch(segment) / midi_hz(note.pitch) - 1) < 0.01, note
        after = audio[int((note.offset + 0.12) * SAMPLE_RATE) : int((note.offset + 0.25) * SAMPLE_RATE)]
        assert np.abs(after).max() < 0.01 * peak  # released after the note-off


def test_rendering_is_deterministic_in_any_order(tones):
    instrument = sfz.SfzInstrument(str(tones))
    part = Part([Note(0.1, 0.5, 60, 70), Note(0.3, 0.9, 67, 110)], program=FLUTE,
                controls=[ControlEvent(0.2, "cc", 11, 90)])
    first = sfz.render_part(part, instrument, level=False)
    sfz.render_part(Part([Note(0.0, 1.0, 50, 120)], program=FLUTE), instrument, level=False)
    np.testing.assert_array_equal(first, sfz.render_part(part, instrument, level=False))


def test_velocity_layers_are_found_and_all_used(tones):
    info = sfz.instrument_info(str(tones))
    assert info["layers"] == list(LAYERS)
    assert info["keys"] == list(range(LOW_KEY, HIGH_KEY + 1))
    mapped = {sfz.velocity_map(v, info["layers"]) for v in range(35, 121)}
    for low, high in LAYERS:
        assert any(low <= v <= high for v in mapped)
    assert sfz.velocity_map(35, info["layers"]) == 1 and sfz.velocity_map(120, info["layers"]) == 127
    assert [sfz.velocity_map(v, info["layers"]) for v in (60, 80, 100)] == sorted(
        sfz.velocity_map(v, info["layers"]) for v in (60, 80, 100))
    # the soft and loud layers sound differently (their samples differ in level)
    instrument = sfz.SfzInstrument(str(tones))
    soft = sfz.render_part(Part([Note(0.1, 0.6, 60, 40)], program=FLUTE), instrument, level=False)
    loud = sfz.render_part(Part([Note(0.1, 0.6, 60, 100)], program=FLUTE), instrument, level=False)
    assert np.abs(loud).max() > 1.5 * np.abs(soft).max()


def test_prepare_part_drops_unmapped_keys_and_spreads_velocities(tones):
    instrument = sfz.SfzInstrument(str(tones), program=FLUTE, low=30, high=100)
    assert sfz.audible_keys(instrument) == frozenset(range(LOW_KEY, HIGH_KEY + 1))
    part = Part([Note(0.1, 0.4, 30, 35), Note(0.5, 0.8, 60, 35), Note(0.9, 1.2, 62, 120), Note(1.3, 1.5, 90, 80)],
                program=FLUTE)
    prepared = sfz.prepare_part(part, instrument)
    assert [(n.pitch, n.velocity) for n in prepared.notes] == [(60, 1), (62, 127)]
    with pytest.raises(SilentStemError):
        sfz.render_part(Part([Note(0.1, 0.4, 30, 80)], program=FLUTE), instrument)


def test_monophonic_instruments_trim_overlapping_labels():
    notes = [Note(0.0, 0.55, 60), Note(0.5, 1.0, 62), Note(1.0, 1.2, 64)]
    assert sfz.trim_overlaps(notes) == [Note(0.0, 0.5, 60), Note(0.5, 1.0, 62), Note(1.0, 1.2, 64)]


def test_pitch_bend_follows_the_instrument_bend_range(tmp_path):
    path = write_sfz_instrument(tmp_path, extra_global="bend_up=500 bend_down=-500")
    bent = Part([Note(0.0, 1.2, 69, 90)], program=FLUTE, controls=[ControlEvent(0.0, "pitchbend", 0, 1229)])
    audio = sfz.render_part(bent, sfz.SfzInstrument(str(path), bend_cents=500), level=False)
    # the engine's value means +30 cents with a 2-semitone range; rescaled, it stays +30 cents
    assert abs(sounding_pitch(audio[int(0.2 * SAMPLE_RATE) : int(1.1 * SAMPLE_RATE)]) - midi_hz(69.3)) < 3.0


def test_level_matches_the_fluidsynth_path(tones):
    """With its level gain the instrument plays about as loud as FluidR3's preset of its program."""
    part = Part([Note(0.1 + 0.5 * i, 0.5 + 0.5 * i, p, 100) for i, p in enumerate((60, 67, 72))], program=FLUTE)
    instrument = sfz.SfzInstrument(str(tones), program=FLUTE)
    ours = sfz.render_part(part, instrument)
    reference = render_gm(part, sfz.REFERENCE_SOUNDFONT)
    ratio_db = 20 * np.log10(np.sqrt(np.mean(ours**2)) / np.sqrt(np.mean(reference**2)))
    assert abs(ratio_db) < 4.0
    assert sfz.level_gain(instrument) != 1.0


def test_ram_wrapper_sits_beside_the_instrument(tones):
    wrapper = sfz.ram_wrapper(tones)
    assert wrapper.parent == tones.parent and wrapper.suffix == ".sfz"
    assert "hint_ram_based=1" in wrapper.read_text() and tones.name in wrapper.read_text()
    assert sfz.ram_wrapper(tones) == wrapper


DSPRESET = r"""<?xml version="1.0" encoding="UTF-8"?>
<DecentSampler minVersion="1.0.0">
  <ui width="812" height="375">
    <tab name="main">
      <labeled-knob x="1" y="1" textColor="ffffffff" label="Release" type="float" minValue="0.0" maxValue="20.0"
                    value="3.5" textColor="ffffffff">
        <binding type="amp" level="instrument" position="0" parameter="ENV_RELEASE" />
      </labeled-knob>
    </tab>
  </ui>
  <groups volume="-2dB">
    <group tuning="0.1">
      <sample path="Samples\tone_60_1.wav" loNote="54" hiNote="65" rootNote="60" volume="3dB"/>
      <sample path="Samples\tone_72_1.wav" loNote="66" hiNote="77" rootNote="72" trigger="release"/>
    </group>
  </groups>
  <effects><effect type="convolution" mix="0.5" irFile="IR/Studio.wav" /></effects>
</DecentSampler>
"""


def test_decentsampler_presets_convert_to_sfz_that_sfizz_plays(tmp_path):
    from timbrescribe.data.decentsampler import MAX_RELEASE_S, convert

    write_sfz_instrument(tmp_path)  # writes samples/tone_*.wav (lower-case folder, as in VPO)
    preset = tmp_path / "tones.dspreset"
    preset.write_text(DSPRESET)
    sfz_path = convert(preset)
    regions = [line for line in sfz_path.read_text().splitlines() if line.startswith("<region>")]
    assert len(regions) == 1  # the release-triggered sample is left out
    opcodes = dict(item.split("=", 1) for item in regions[0].split()[1:])
    assert opcodes["sample"] == "samples/tone_60_1.wav"  # backslashes and letter case resolved
    assert (opcodes["lokey"], opcodes["hikey"], opcodes["pitch_keycenter"]) == ("54", "65", "60")
    assert opcodes["tune"] == "10" and float(opcodes["volume"]) == 1.0
    assert float(opcodes["ampeg_release"]) == MAX_RELEASE_S  # the knob's 3.5 s, capped
    audio = sfz.render_part(Part([Note(0.1, 1.0, 62, 100)], program=FLUTE), sfz.SfzInstrument(str(sfz_path)),
                            level=False)
    assert abs(sounding_pitch(audio[int(0.2 * SAMPLE_RATE) : int(0.9 * SAMPLE_RATE)]) - midi_hz(62.1)) < 2.0
