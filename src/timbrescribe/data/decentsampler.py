"""Convert a DecentSampler preset (.dspreset, XML) into an SFZ instrument that sfizz plays.

Only what the data engine needs is carried over: each sample's key range, root key, velocity
range, tuning, volume, start/end, loop points, round-robin position, and the amplitude envelope's
attack and release (from the preset's groups, or from the default value of its Attack / Release
knobs). Release-triggered samples (release noises) are left out, and the release is capped, so
that the sound ends near the labelled note-off. Effects (reverb impulse responses, chorus,
filters), modulators and CC bindings are dropped: stems stay dry, augmentation adds rooms later.

DecentSampler presets often repeat an attribute in their UI elements (invalid XML), so only the
``<groups>`` element is parsed as XML; knob defaults are read with a regular expression.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from timbrescribe.outputs import atomic_path

MAX_RELEASE_S = 1.0
DEFAULT_RELEASE_S = 0.3
# DecentSampler attribute -> SFZ opcode, for the attributes copied as they are
_DIRECT = {
    "loNote": "lokey", "hiNote": "hikey", "rootNote": "pitch_keycenter", "loVel": "lovel",
    "hiVel": "hivel", "start": "offset", "end": "end", "loopStart": "loop_start", "loopEnd": "loop_end",
    "seqPosition": "seq_position", "seqLength": "seq_length",
}


def _knob_default(text: str, parameter: str) -> float | None:
    """The default value of the UI knob bound to ``parameter`` (e.g. ENV_RELEASE), if any."""
    for knob in re.finditer(r"<labeled-knob\b(.*?)</labeled-knob>", text, re.S):
        if re.search(rf'parameter="{parameter}"', knob.group(1)):
            value = re.search(r'\bvalue="([^"]+)"', knob.group(1))
            if value:
                return float(value.group(1))
    return None


def _decibels(volume: str) -> float:
    """A DecentSampler volume ('-3dB' or a linear factor) in dB."""
    volume = volume.strip()
    if volume.lower().endswith("db"):
        return float(volume[:-2])
    linear = float(volume)
    return 20 * math.log10(linear) if linear > 0 else -144.0


def _resolve(folder: Path, path: str) -> str:
    """``path`` (backslashes, any letter case) relative to ``folder`` as the file system has it."""
    current = folder
    parts = []
    for part in re.split(r"[\\/]+", path):
        if not part or part == ".":
            continue
        entry = current / part
        if not entry.exists() and current.is_dir():
            matches = [p for p in current.iterdir() if p.name.lower() == part.lower()]
            entry = matches[0] if matches else entry
        parts.append(entry.name)
        current = entry
    return "/".join(parts)


def _region(attributes: dict[str, str], folder: Path) -> str | None:
    """One SFZ <region> line for a sample with its inherited attributes (None: left out)."""
    if attributes.get("trigger", "attack") == "release" or "path" not in attributes:
        return None
    opcodes = [f"sample={_resolve(folder, attributes['path'])}"]
    for name, opcode in _DIRECT.items():
        if name in attributes:
            opcodes.append(f"{opcode}={int(float(attributes[name]))}")
    if attributes.get("loopEnabled", "").lower() == "true":
        opcodes.append("loop_mode=loop_continuous")
    elif attributes.get("loopEnabled", "").lower() == "false":
        opcodes.append("loop_mode=no_loop")
    if "tuning" in attributes:
        opcodes.append(f"tune={int(round(float(attributes['tuning']) * 100))}")
    volume = sum(_decibels(v) for v in attributes.get("_volumes", []))
    if volume:
        opcodes.append(f"volume={volume:.2f}")
    if "attack" in attributes:
        opcodes.append(f"ampeg_attack={float(attributes['attack']):.4f}")
    if "release" in attributes:
        opcodes.append(f"ampeg_release={min(float(attributes['release']), MAX_RELEASE_S):.4f}")
    if attributes.get("trigger") in ("first", "legato"):
        opcodes.append(f"trigger={attributes['trigger']}")
    return "<region> " + " ".join(opcodes)


def convert(dspreset: str | Path, sfz: str | Path | None = None) -> Path:
    """Write the SFZ version of ``dspreset`` (default: beside it, same name, .sfz); its path."""
    dspreset = Path(dspreset)
    sfz = Path(sfz) if sfz is not None else dspreset.with_suffix(".sfz")
    text = dspreset.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"<groups\b.*?</groups>", text, re.S)
    if match is None:
        raise ValueError(f"{dspreset}: no <groups> element")
    groups = ElementTree.fromstring(match.group(0))
    attack = _knob_default(text, "ENV_ATTACK")
    release = _knob_default(text, "ENV_RELEASE")
    top = {"attack": f"{attack}"} if attack is not None else {}
    top["release"] = f"{release if release is not None else DEFAULT_RELEASE_S}"
    lines = [f"// {dspreset.name} converted by timbrescribe (data/decentsampler.py); samples unchanged", "<control>"]
    regions = 0
    for group in groups.iter("group"):
        for sample in group.iter("sample"):
            merged: dict = {**top}
            volumes = []
            for element in (groups, group, sample):
                for key, value in element.attrib.items():
                    if key == "volume":
                        volumes.append(value)
                    elif key == "tuning" and "tuning" in merged:
                        merged["tuning"] = str(float(merged["tuning"]) + float(value))
                    else:
                        merged[key] = value
            merged["_volumes"] = volumes
            line = _region(merged, dspreset.parent)
            if line is not None:
                lines.append(line)
                regions += 1
    if not regions:
        raise ValueError(f"{dspreset}: no playable samples")
    with atomic_path(sfz) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return sfz
