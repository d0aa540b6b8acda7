"""``timbrescribe data devset bach-violin`` on a small fake of the dataset's git repository: cutting
movements out of a recording, aligned times (not score ticks), pitches, the evaluation layout,
licences, movements skipped (recording absent from the snapshot, baroque tuning) and the errors."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from timbrescribe.cli import main
from timbrescribe.data import bach_violin
from timbrescribe.errors import UserError
from timbrescribe.evaluation import layout
from timbrescribe.notes import Track
from timbrescribe.outputs import write_midi

SR = 48000
INFO_HEADER = ("filename,collection,violinist,violinist_name,work,title,mov,movement,source_filename,start,end,"
               "length,repeat1,repeat2,score_filename,baroque_tuning")
AUDIO_HEADER = "filename,collection,violinist,work,title,movements,start,end,length,source,license,url"

# Player "ann": one recording of a whole work (Opus), two movements cut out of it at 0-2 s and
# 2-4 s. Tones (absolute times in the recording): mov1 A4 0.5-1.0 s; mov2 E5 2.5-3.0 s, C5 3.0-3.5 s.
ANN_NOTES = {
    "ann_bwv1_mov1": ("onset,offset,pitch,velocity\n0,12,69,64\n", "start,end\n0.5,1.0\n"),
    # score ticks deliberately unlike the aligned times; times are from the start of the cut
    "ann_bwv1_mov2": ("onset,offset,pitch,velocity\n0,24,76,80\n24,48,72,64\n", "start,end\n0.5,1.0\n1.0,1.5\n"),
}


def tone(freq: float, start: float, end: float, total: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(round(total * sr))) / sr
    return np.where((t >= start) & (t < end), 0.3 * np.sin(2 * np.pi * freq * t), 0.0).astype(np.float32)


def hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_repository(root: Path) -> Path:
    """A clone-like repository of the dataset's layout, committed; returns its work tree."""
    base = root / "bach-violin"
    audio = base / "audio"
    # ann: CC BY, whole work in one stereo Opus file (left and right differ: the mix is their mean)
    mono = tone(hz(69), 0.5, 1.0, 4.0) + tone(hz(76), 2.5, 3.0, 4.0) + tone(hz(72), 3.0, 3.5, 4.0)
    (audio / "ann").mkdir(parents=True)
    soundfile.write(str(audio / "ann" / "ann_bwv1.opus"), np.stack([mono * 1.5, mono * 0.5], axis=1), SR,
                    format="OGG", subtype="OPUS")
    write(audio / "ann" / "LICENSE", "These recordings are attributed to Ann and licensed under CC BY 3.0.\n")
    # bob: CC BY-NC, one movement per MP3 file
    (audio / "bob").mkdir(parents=True)
    soundfile.write(str(audio / "bob" / "bob_bwv2_mov1.mp3"), tone(hz(67), 1.0, 1.5, 3.0, 44100), 44100,
                    format="MP3")
    write(audio / "bob" / "LICENSE", "Bob, CC BY-NC 3.0.\n")
    # cy: recording listed but its blob removed from the object store (as in partial snapshots)
    write(audio / "cy" / "cy_bwv3_mov1.mp3", "not really audio")
    write(audio / "cy" / "LICENSE", "Public domain.\n")
    # dee: baroque tuning; its "recording" is a real file, but the movement is skipped
    (audio / "dee").mkdir(parents=True)
    soundfile.write(str(audio / "dee" / "dee_bwv4_mov1.opus"), tone(hz(60), 0.2, 0.8, 1.0), SR,
                    format="OGG", subtype="OPUS")
    write(audio / "dee" / "LICENSE", "CC BY.\n")

    info = [INFO_HEADER,
            "ann_bwv1_mov1,ann,ann,Ann A,BWV1,Sonata,1,Adagio,ann_bwv1.opus,0:00:00,0:00:02,0:00:02,-,-,s1,0",
            "ann_bwv1_mov2,ann,ann,Ann A,BWV1,Sonata,2,Fuga,ann_bwv1.opus,0:00:02,0:00:04,0:00:02,-,-,s2,0",
            "bob_bwv2_mov1,bob,bob,Bob B,BWV2,Partita,1,Allemande,bob_bwv2_mov1.mp3,0:00:00,0:00:03,0:00:03,0,0,s3,0",
            "cy_bwv3_mov1,cy,cy,Cy C,BWV3,Sonata,1,Grave,cy_bwv3_mov1.mp3,0:00:00,0:00:03,0:00:03,-,-,s4,0",
            "dee_bwv4_mov1,dee,dee,Dee D,BWV4,Partita,1,Preludio,dee_bwv4_mov1.opus,0:00:00,0:00:01,0:00:01,-,-,s5,1"]
    write(base / "info.csv", "\n".join(info) + "\n")
    write(base / "audio.csv", "\n".join([
        AUDIO_HEADER,
        "ann_bwv1.opus,ann,Ann A,BWV1,Sonata,2,0:00:00,0:00:04,0:00:04,web,CC BY,http://x",
        "bob_bwv2_mov1.mp3,bob,Bob B,BWV2,Partita,1,0:00:00,0:00:03,0:00:03,web,CC BY-NC,http://x",
        "cy_bwv3_mov1.mp3,cy,Cy C,BWV3,Sonata,1,0:00:00,0:00:03,0:00:03,web,PD,http://x",
        "dee_bwv4_mov1.opus,dee,Dee D,BWV4,Partita,1,0:00:00,0:00:01,0:00:01,web,CC BY,http://x",
    ]) + "\n")
    notes = dict(ANN_NOTES)
    # bob: a note whose aligned end equals its start, a unison of two voices, and a same-pitch overlap
    notes["bob_bwv2_mov1"] = (
        "onset,offset,pitch,velocity\n0,12,67,64\n0,24,67,64\n12,24,71,64\n24,36,71,64\n36,48,74,64\n",
        "start,end\n1.0,1.5\n1.0,1.2\n1.6,2.0\n1.9,2.2\n2.4,2.4\n",
    )
    notes["cy_bwv3_mov1"] = ("onset,offset,pitch,velocity\n0,12,60,64\n", "start,end\n0.1,0.2\n")
    notes["dee_bwv4_mov1"] = ("onset,offset,pitch,velocity\n0,12,60,64\n", "start,end\n0.2,0.8\n")
    for name, (score, alignment) in notes.items():
        collection = name.split("_")[0]
        write(base / "notes" / collection / f"{name}.csv", score)
        write(base / "alignments" / collection / f"{name}.csv", alignment)
    write(root / "README.md", "fake bach violin dataset\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "data")
    return root


def remove_blob(repo: Path, path: str) -> None:
    sha = git(repo, "rev-parse", f"HEAD:{path}")
    (repo / ".git" / "objects" / sha[:2] / sha[2:]).unlink()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A folder laid out like /work/.mirror: <mirror>/salu133445+bach-violin-dataset/repo."""
    mirror = tmp_path_factory.mktemp("mirror")
    repo = make_repository(mirror / "salu133445+bach-violin-dataset" / "repo")
    remove_blob(repo, "bach-violin/audio/cy/cy_bwv3_mov1.mp3")
    return mirror


@pytest.fixture(scope="module")
def converted(mirror, tmp_path_factory):
    out = tmp_path_factory.mktemp("devset") / "bach-violin"
    lines = []
    index = bach_violin.convert(mirror, out, log=lines.append)
    return out, index, lines


def onset_of_energy(samples: np.ndarray, sr: int, threshold: float = 0.05) -> float:
    return float(np.argmax(np.abs(samples) > threshold) / sr)


def test_movements_with_their_recording_become_pieces(converted, mirror):
    out, index, lines = converted
    assert [p["piece"] for p in index["pieces"]] == ["ann_bwv1_mov1", "ann_bwv1_mov2", "bob_bwv2_mov1"]
    reasons = {s["piece"]: s["reason"] for s in index["skipped"]}
    assert sorted(reasons) == ["cy_bwv3_mov1", "dee_bwv4_mov1"]
    assert "absent from the snapshot" in reasons["cy_bwv3_mov1"]
    assert "baroque" in reasons["dee_bwv4_mov1"]
    commit = git(mirror / "salu133445+bach-violin-dataset" / "repo", "rev-parse", "HEAD")
    assert index["commit"] == commit and index["repo"] == bach_violin.REPO
    assert index["by_licence"]["CC BY"]["pieces"] == 2 and index["by_licence"]["CC BY-NC"]["notes"] == 4
    assert index["by_player"]["Ann A"]["minutes"] == pytest.approx(4 / 60, abs=0.01)
    assert json.loads((out / bach_violin.INDEX_FILE).read_text()) == index
    assert len(lines) == 3 and not list(out.rglob("*.tmp"))


def test_movements_are_cut_out_of_the_recording_and_mixed_to_mono(converted):
    out, _, _ = converted
    first, sr = soundfile.read(str(out / "ann_bwv1_mov1" / "mix.wav"))
    second, _ = soundfile.read(str(out / "ann_bwv1_mov2" / "mix.wav"))
    assert sr == SR and first.ndim == 1 and len(first) == len(second) == 2 * SR
    assert onset_of_energy(first, sr) == pytest.approx(0.5, abs=0.01)
    assert onset_of_energy(second, sr) == pytest.approx(0.5, abs=0.01)  # 2.5 s in the recording
    assert np.abs(second).max() == pytest.approx(0.3, abs=0.03)  # the mean of 1.5x and 0.5x
    bob, bob_sr = soundfile.read(str(out / "bob_bwv2_mov1" / "mix.wav"))
    assert bob_sr == 44100 and onset_of_energy(bob, bob_sr) == pytest.approx(1.0, abs=0.03)  # MP3


def test_notes_take_the_aligned_times_and_the_score_pitches(converted):
    out, _, _ = converted
    pieces = {piece.name: piece for piece in layout.read_dataset(out)}
    assert sorted(pieces) == ["ann_bwv1_mov1", "ann_bwv1_mov2", "bob_bwv2_mov1"]
    notes = pieces["ann_bwv1_mov2"].parts["violin"]
    assert [(n.pitch, n.velocity) for n in notes] == [(76, 80), (72, 64)]
    assert [n.onset for n in notes] == pytest.approx([0.5, 1.0], abs=2e-3)
    assert [n.offset for n in notes] == pytest.approx([1.0, 1.5], abs=2e-3)
    rows = (out / "ann_bwv1_mov2" / "violin.csv").read_text().splitlines()
    assert rows == ["onset,offset,pitch", "0.500000,1.000000,76", "1.000000,1.500000,72"]
    meta = json.loads((out / "ann_bwv1_mov2" / "meta.json").read_text())
    assert meta["pitched_instruments"] == ["violin"] and meta["player"] == "Ann A"
    assert meta["licence"] == "CC BY" and not meta["non_commercial"] and "CC BY 3.0" in meta["licence_text"]
    assert meta["source"]["audio_path"] == "bach-violin/audio/ann/ann_bwv1.opus"
    assert meta["source"]["cut_s"] == [2.0, 4.0] and len(meta["source"]["commit"]) == 40
    assert meta["stems"][0]["n_notes"] == 2 and meta["stems"][0]["pitch_range"] == [72, 76]


def test_label_fixes_for_degenerate_alignment_rows(converted):
    out, _, _ = converted
    notes = layout.read_dataset(out)[2].parts["violin"]
    times = [(round(n.onset, 3), round(n.offset, 3), n.pitch) for n in notes]
    # unison at 1.0 s kept once (the longer); 71 at 1.6 trimmed at the next 71 (1.9);
    # 74 aligned to zero length given one alignment frame (32 ms)
    assert times == [(1.0, 1.5, 67), (1.6, 1.9, 71), (1.9, 2.2, 71), (2.4, 2.432, 74)]
    meta = json.loads((out / "bob_bwv2_mov1" / "meta.json").read_text())
    assert meta["non_commercial"] is True
    assert meta["label_fixes"] == {"lengthened_to_one_frame": 1, "trimmed_at_next_same_pitch": 1,
                                   "clipped_at_audio_end": 0, "unisons_merged": 1}


def test_evaluate_reads_the_set_unchanged(converted, tmp_path):
    out, _, _ = converted
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for piece in layout.read_dataset(out):
        write_midi([Track("any", piece.parts["violin"])], predictions / f"{piece.name}.mid")
    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(out), "--predictions", str(predictions), "--json", str(report_path)]) == 0
    summary = json.loads(report_path.read_text())["summary"]["mix"]
    assert summary["agnostic"]["note"]["f"] == pytest.approx(1.0)


def test_aligned_notes_refuse_mismatched_files():
    with pytest.raises(ValueError, match="2 notes but 1 alignment rows"):
        bach_violin.aligned_notes("onset,offset,pitch,velocity\n0,1,60,64\n1,2,62,64\n", "start,end\n0.1,0.2\n", 5.0)
    with pytest.raises(ValueError, match="after the end of the audio"):
        bach_violin.aligned_notes("onset,offset,pitch,velocity\n0,1,60,64\n", "start,end\n6.0,6.5\n", 5.0)
    clipped = bach_violin.aligned_notes("onset,offset,pitch,velocity\n0,1,60,64\n", "start,end\n4.5,5.5\n", 5.0)
    assert clipped.notes[0].offset == 5.0 and clipped.clipped == 1


def test_the_command_line_and_its_errors(mirror, tmp_path, capsys):
    repo = mirror / "salu133445+bach-violin-dataset" / "repo"
    out = tmp_path / "set"
    # the git directory itself is accepted as --mirror too
    assert main(["data", "devset", "bach-violin", "--mirror", str(repo / ".git"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 pieces" in printed and "CC BY-NC: 1 pieces" in printed
    assert main(["data", "devset", "bach-violin", "--mirror", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(UserError, match="no git directory of salu133445/bach-violin-dataset"):
        bach_violin.convert(tmp_path, out)


def test_a_snapshot_without_any_recording_is_an_error(tmp_path):
    repo = make_repository(tmp_path / "repo")
    for path in ("ann/ann_bwv1.opus", "bob/bob_bwv2_mov1.mp3", "cy/cy_bwv3_mov1.mp3", "dee/dee_bwv4_mov1.opus"):
        remove_blob(repo, f"bach-violin/audio/{path}")
    with pytest.raises(UserError, match="no movement has its recording"):
        bach_violin.convert(repo, tmp_path / "out")
    assert not (tmp_path / "out").exists()
