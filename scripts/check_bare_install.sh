#!/usr/bin/env bash
# CI: a bare `pip install .` (no extras) in its own venv. `locate` and the Python API must work, and
# every optional part must end in one line naming its pip extra, with exit code 2.
#
#   bash scripts/check_bare_install.sh       # uses .venv-bare (made afresh each run)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv-bare
py=${PYTHON:-python3}
rm -rf "$venv"
"$py" -m venv "$venv"
echo "bare install: pip install . (no extras) into $venv" >&2
"$venv/bin/python" -m pip -q --disable-pip-version-check install "$root" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
bin=$venv/bin
fail() { echo "bare install: FAILED: $*" >&2; exit 1; }

for pkg in pyroomacoustics matplotlib torch PySide6 pyqtgraph websockets jsonschema h5py; do
  "$bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$pkg') is not None)" \
    || fail "the bare install pulled $pkg"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"   # not the source tree: the installed package is what runs
"$bin/python" - <<'PY'
import numpy as np, soundfile as sf
from doascope.hardware_profiles import load_profile
p = load_profile("respeaker_usb_v2")
rng = np.random.default_rng(0)
src = np.fft.rfft(rng.standard_normal(p.sample_rate))
f = np.fft.rfftfreq(p.sample_rate, 1 / p.sample_rate)
u = np.array([0.0, 1.0, 0.0])                                   # a plane wave from azimuth 90
mics = np.fft.irfft(src * np.exp(-2j * np.pi * f * (-(p.positions @ u) / 343.0)[:, None]), p.sample_rate).T
dev = np.zeros((mics.shape[0], p.channels), np.float32)
dev[:, list(p.mic_channels)] = 0.3 * mics / np.abs(mics).max()
sf.write("one.wav", dev, p.sample_rate)
PY

"$bin/doascope" locate one.wav --profile respeaker_usb_v2 > out.jsonl || fail "locate exited $?"
[ "$(wc -l < out.jsonl)" -ge 5 ] || fail "locate printed $(wc -l < out.jsonl) lines"
"$bin/python" -c "
import numpy as np, doascope
r = doascope.locate('one.wav', 'respeaker_usb_v2')
az = float(np.nanmedian(r.azimuth))
assert abs(az - 90.0) < 5, az
" || fail "doascope.locate from Python"

expect_extra() {  # extra, then the command's arguments
  local extra=$1; shift
  set +e
  "$bin/doascope" "$@" > stdout.txt 2> stderr.txt
  local rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "doascope $* exited $rc, not 2: $(cat stderr.txt)"
  [ "$(grep -c . stderr.txt)" -eq 1 ] || fail "doascope $* printed more than one line: $(cat stderr.txt)"
  grep -qF "this needs doascope[$extra]: pip install 'doascope[$extra]'" stderr.txt \
    || fail "doascope $* said: $(cat stderr.txt)"
  echo "bare install: doascope $* -> $(cat stderr.txt)" >&2
}
expect_extra gui gui
expect_extra net serve --profile respeaker_usb_v2 --file one.wav
expect_extra sim run --profile respeaker_usb_v2 --sim two-talkers
expect_extra plot locate one.wav --profile respeaker_usb_v2 --plot az.png
expect_extra dnn locate one.wav --profile respeaker_usb_v2 --method dnn
[ ! -e az.png ] || fail "--plot wrote a file without matplotlib"
echo "bare install: ok; venv $(du -sm "$venv" | cut -f1) MB" >&2
