"""ClipDataset on a rendered smoke dataset: shapes, crops, padding, determinism, label alignment."""
import json

import numpy as np
import pytest
import soundfile
import torch

from timbrescribe.constants import HOP, N_PITCHES
from timbrescribe.data.dataset import FAMILY_INDEX, ClipDataset
from timbrescribe.data.storage import MANIFEST, load_notes
from timbrescribe.data.engine import render_dataset
from timbrescribe.data.labels import piano_rolls_from_arrays
from timbrescribe.data.presets import PRESETS
from timbrescribe.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    render_dataset(PRESETS["smoke"], out, PRESETS["smoke"].count_for_hours(), seed=5, workers=1, progress=False)
    return out


def records(root):
    return json.loads((root / MANIFEST).read_text())["examples"]


def test_items_have_the_documented_shapes_and_types(root):
    dataset = ClipDataset(root, clip_frames=120, max_parts=4, seed=0)
    assert len(dataset) == len(records(root))
    for index, record in enumerate(records(root)):
        item = dataset[index]
        assert item["audio"].shape == (120 * HOP,) and item["audio"].dtype == torch.float32
        for key in ("onset", "frame"):
            assert item[key].shape == (4, N_PITCHES, 120) and item[key].dtype == torch.float32
        n_parts = len(record["programs"])
        assert item["part_mask"].tolist() == [True] * n_parts + [False] * (4 - n_parts)
        assert item["program"].tolist() == record["programs"] + [-1] * (4 - n_parts)
        assert item["family"].tolist() == [FAMILY_INDEX[f] for f in record["families"]] + [-1] * (4 - n_parts)
        assert item["onset"][n_parts:].sum() == 0 and item["frame"][n_parts:].sum() == 0
        assert torch.all(item["onset"] <= item["frame"])  # every onset frame is also a sounding frame


def test_crop_is_the_mix_slice_and_targets_are_the_label_slice(root):
    dataset = ClipDataset(root, clip_frames=100, seed=1)
    record = records(root)[0]
    base = root / record["file"]
    mix = soundfile.read(str(base.with_suffix(".flac")), dtype="float32")[0][:, 0]
    notes = load_notes(base.with_suffix(".npz"))
    full_frames = record["n_samples"] // HOP + 1
    starts = set()
    for _ in range(6):
        item = dataset[0]
        start = int(item["start_frame"])
        starts.add(start)
        np.testing.assert_array_equal(item["audio"].numpy(), mix[start * HOP : start * HOP + 100 * HOP])
        for part in range(len(record["programs"])):
            mine = notes["note_part"] == part
            onset, frame = piano_rolls_from_arrays(
                notes["note_onset"][mine], notes["note_offset"][mine], notes["note_pitch"][mine], full_frames
            )
            np.testing.assert_array_equal(item["frame"][part].numpy(), frame[:, start : start + 100])
            np.testing.assert_array_equal(item["onset"][part].numpy(), onset[:, start : start + 100])
    assert len(starts) > 1  # the offset is random per call


def test_seeded_crops_are_reproducible(root):
    first = [ClipDataset(root, clip_frames=100, seed=7)[i]["start_frame"].item() for i in (0, 1, 0, 2)]
    again = [ClipDataset(root, clip_frames=100, seed=7)[i]["start_frame"].item() for i in (0, 1, 0, 2)]
    other = [ClipDataset(root, clip_frames=100, seed=8)[i]["start_frame"].item() for i in (0, 1, 0, 2)]
    assert first == again and first != other


def test_short_examples_are_zero_padded(root):
    dataset = ClipDataset(root, clip_frames=600, seed=0)  # 7 s, longer than any smoke example
    record = records(root)[0]
    item = dataset[0]
    assert item["start_frame"] == 0
    assert torch.all(item["audio"][record["n_samples"] :] == 0)
    assert item["audio"][: record["n_samples"]].abs().max() > 0.1
    last_frame = record["n_samples"] // HOP + 1
    assert item["frame"][:, :, last_frame:].sum() == 0


def test_folder_without_manifest_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="render the dataset first"):
        ClipDataset(tmp_path)


def test_too_many_parts_for_max_parts_is_refused(root):
    if max(len(r["programs"]) for r in records(root)) < 2:
        pytest.skip("smoke dataset has no mixture")
    with pytest.raises(ValueError, match="max_parts"):
        ClipDataset(root, max_parts=1)


def test_dataloader_with_workers_batches_items(root):
    loader = torch.utils.data.DataLoader(ClipDataset(root, clip_frames=64, seed=0), batch_size=3, num_workers=2)
    batch = next(iter(loader))
    assert batch["audio"].shape == (3, 64 * HOP) and batch["onset"].shape == (3, 4, N_PITCHES, 64)
    assert batch["part_mask"].dtype == torch.bool


def stem_rise_frame(stem: np.ndarray) -> int:
    """Frame nearest the first sample where the stem reaches 0.1% of its peak (-60 dB)."""
    return int(round(np.argmax(np.abs(stem) > 1e-3 * np.abs(stem).max()) / HOP))


def frame_energy(stem: np.ndarray, n_frames: int) -> np.ndarray:
    """Energy of a HOP-long window centred on each frame."""
    padded = np.pad(stem, (HOP // 2, HOP))
    return np.array([np.sum(padded[k * HOP : k * HOP + HOP] ** 2) for k in range(n_frames)])


def test_part_labels_line_up_with_energy_rises_in_its_stem(root):
    """Each part's stem starts to sound at its first labelled onset and is silent before it; and
    wherever the part rests and its stem has fallen silent (-30 dB; pads and strings ring on long
    after the note-off), a labelled onset brings the sound back."""
    parts = entries = 0
    for record in records(root):
        base = root / record["file"]
        audio = soundfile.read(str(base.with_suffix(".flac")), dtype="float32")[0]
        notes = load_notes(base.with_suffix(".npz"))
        n_frames = record["n_samples"] // HOP + 1
        for part in range(len(record["programs"])):
            stem = audio[:, 1 + part]
            mine = notes["note_part"] == part
            onset, frame = piano_rolls_from_arrays(
                notes["note_onset"][mine], notes["note_offset"][mine], notes["note_pitch"][mine], n_frames
            )
            onset_frames = np.flatnonzero(onset.any(axis=0))
            assert abs(stem_rise_frame(stem) - onset_frames[0]) <= 2, (record["id"], part)
            assert np.abs(stem[: max(0, (onset_frames[0] - 2) * HOP)]).max(initial=0) < 1e-3 * np.abs(stem).max()
            energy = frame_energy(stem, n_frames)
            sounding = frame.any(axis=0)
            for k in onset_frames[(onset_frames >= 6) & (onset_frames < n_frames - 12)]:
                before = energy[k - 3 : k].mean()
                if not sounding[k - 6 : k].any() and before < 1e-3 * energy.max():
                    assert energy[k : k + 12].max() > 3 * before, (record["id"], part, k)
                    entries += 1
            parts += 1
    assert parts >= 6 and entries >= 1
