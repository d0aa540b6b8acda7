#!/usr/bin/env bash
# Installs the Debian packages timbrescribe needs (FluidSynth and four General MIDI soundfonts for the
# synthetic data engine; venv support for Python; Chromium, Node.js and npm for the browser page's
# tests, `make test-web`). Does nothing when they are already there.
set -euo pipefail
packages=(fluidsynth libfluidsynth3 fluid-soundfont-gm musescore-general-soundfont-small timgm6mb-soundfont)
# A fourth General MIDI bank (public domain, 4 MB): the test split of the timbre sources (docs/data.md).
packages+=(csound-soundfont)
packages+=(chromium)
python3 -c "import ensurepip, venv" 2>/dev/null || packages+=(python3-venv)
# Node.js may come from elsewhere than Debian: only when the commands are missing.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
