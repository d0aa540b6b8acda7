#!/usr/bin/env bash
# Installs the Basic Pitch 0.4.0 baseline into a Python virtual environment (default: .venv) so that
# `timbrescribe evaluate --system basic-pitch` can run it on onnxruntime.
#
# basic-pitch 0.4.0 requires TensorFlow on Linux with Python >= 3.11; we install it with --no-deps
# and add only its runtime dependencies (its Requires-Dist without tensorflow / coremltools /
# tflite-runtime). Its ONNX model ships inside the wheel. The environment's numpy is pinned while
# installing, so the baseline never up- or downgrades what the rest of the project uses
# (checked with numpy 2.4.6, librosa 0.11.0, numba 0.68.1, onnxruntime 1.31.1).
# One deliberate deviation: basic-pitch pins resampy<0.4.3, but resampy 0.4.2 imports pkg_resources,
# which setuptools >= 81 no longer ships; resampy 0.4.3 fixes that. Basic Pitch uses resampy only to
# sonify MIDI, never to transcribe.
#
# usage: bash scripts/install_baseline.sh [VENV_DIR]
set -euo pipefail
venv="${1:-.venv}"
python="$venv/bin/python"
if [ ! -x "$python" ]; then
  echo "no Python at $python: create the environment first (python3 -m venv $venv)" >&2
  exit 1
fi
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
if "$python" -c "import numpy" 2>/dev/null; then
  "$python" -c "import numpy; print(f'numpy=={numpy.__version__}')" >"$constraints"
fi
"$python" -m pip install --quiet --no-warn-conflicts --constraint "$constraints" \
  "librosa>=0.8.0" "resampy==0.4.3" "mir-eval>=0.6" "pretty-midi>=0.2.9" \
  "scikit-learn" "scipy>=1.4.1" "typing-extensions" "numpy>=1.18" "onnxruntime"
"$python" -m pip install --quiet --no-warn-conflicts --no-deps "basic-pitch==0.4.0"
"$python" - <<'EOF'
import logging

logging.disable(logging.WARNING)  # basic_pitch warns that the TensorFlow backends are absent
import basic_pitch
from basic_pitch import inference  # noqa: F401  (imports librosa, resampy, pretty_midi)

assert basic_pitch.ONNX_PRESENT, "onnxruntime is not importable"
model = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
assert model.is_file(), f"the ONNX model is missing: {model}"
print(f"basic-pitch 0.4.0 ready (ONNX model {model.name})")
EOF
