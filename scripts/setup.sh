#!/usr/bin/env bash
# doascope set-up on a fresh Debian machine, then one job.
#
#   bash scripts/setup.sh demo    # install what is missing, then run `doascope demo`
#   bash scripts/setup.sh test    # install what is missing, then run the whole test suite
#   bash scripts/setup.sh         # install only
#
# Installs Debian packages (with sudo when not root), a virtual environment in .venv, torch 2.13.0
# (the CPU build, never a CUDA one: without a CPU wheel the dnn extra is left out), then doascope
# with all its extras. Every step is skipped when already done, so running it again is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
job=${1:-install}
shift || true

apt_packages=(
  python3 python3-venv python3-dev gcc            # interpreter, venv, and headers for wheels that compile
  libportaudio2 libsndfile1                       # sounddevice (live capture), soundfile
  espeak-ng sox                                   # test speech and audio tools
  pulseaudio pulseaudio-utils libasound2-plugins  # the virtual mic array for live tests
  xvfb xauth                                      # a real X display for the GUI test
  libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0 libxcb-render-util0
  libxcb-image0 libxcb-xinerama0 libxcb-xfixes0 libxcb-sync1 libxcb-xkb1  # Qt's xcb platform
  chromium mosquitto                              # the live web page's and MQTT's tests (they run their own)
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The MQTT tests start a broker of their own on a free port: the system service is not wanted.
  if [[ " ${missing[*]} " == *" mosquitto "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
  fi
fi

py=${PYTHON:-python3}
vpy=.venv/bin/python
# Quiet: only errors, and no lines about index folders a machine's pip configuration lists but lacks.
pipq() {
  "$vpy" -m pip -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# torch: only ever the CPU build. "torch==X+cpu" can match nothing else: a local wheel (pip's
# find-links) or PyTorch's CPU index. PyPI's plain torch is the CUDA build (~3 GB of vendor wheels),
# so it is never asked for; where no CPU wheel can be had, the dnn extra is left out.
torch_version=2.13.0
have_torch() { "$vpy" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; }
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($py --version)" >&2
  $py -m venv .venv
  pipq install -U pip setuptools wheel
fi
if ! have_torch; then
  echo "setup: installing torch $torch_version (CPU build)" >&2
  pipq install --only-binary=:all: "torch==$torch_version+cpu" 2>/dev/null \
    || pipq install --only-binary=:all: --timeout 30 --retries 1 \
         --extra-index-url https://download.pytorch.org/whl/cpu "torch==$torch_version+cpu" 2>/dev/null \
    || echo "setup: no CPU build of torch $torch_version can be had here, so the dnn extra is not installed" \
            "(--method dnn, train, calibrate, clip, meta need it); everything else works" >&2
fi
if have_torch; then
  extras=all
else  # every extra but dnn (and all, which holds dnn)
  extras=$("$vpy" -c "import tomllib; x = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']
print(','.join(k for k in x if k not in ('all', 'dnn')))")
fi

# Dependencies change rarely: reinstall them only when pyproject.toml (or the extras) change.
stamp=.venv/.doascope-deps
want="$(sha256sum pyproject.toml | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (doascope[$extras])" >&2
  pipq install -U pip setuptools wheel
  pipq install ".[$extras]"
  echo "$want" > "$stamp"
fi
# The package itself is cheap to reinstall: always match the working tree.
pipq install --no-deps --no-build-isolation --force-reinstall .
# Compile (and cache) the Numba kernels now, so the first live block never waits for the JIT.
(cd /tmp && "$OLDPWD/$vpy" -c "import doascope.dsp as d; d.warmup()")

case "$job" in
  install) echo "setup: done; run .venv/bin/doascope --help" >&2 ;;
  demo) exec .venv/bin/doascope demo "$@" ;;
  test) exec bash scripts/test.sh "$@" ;;
  *) echo "setup: unknown job '$job' (use demo, test or nothing)" >&2; exit 2 ;;
esac
