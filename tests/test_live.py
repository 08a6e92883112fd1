"""Live capture through a real audio server: PulseAudio with an N-channel null sink (the shared
virtual-array tool), captured by `doascope run` through sounddevice/PortAudio like a USB array.

.ci/run installs PulseAudio; the tests start the server and sink themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from doascope.dsp.metrics import azimuth_errors
from doascope.hardware_profiles import load_profile

pytestmark = pytest.mark.live

TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "virtual-array"


def _env(channels: int, rate: int, name: str, runtime: str) -> dict:
    """Start (or reuse) the PulseAudio server whose socket is in ``runtime`` with an N-channel sink.

    Each test gets its own server: killing it (as one test does) must not pull the audio out from
    under anything else on the machine, and other users' servers must not get in the way."""
    if not TOOL.exists():
        pytest.skip(f"the virtual-array tool is not at {TOOL}")
    if shutil.which("pactl") is None or shutil.which("pulseaudio") is None:
        pytest.skip("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    env = dict(os.environ, PULSE_RUNTIME_PATH=runtime, PULSE_STATE_PATH=runtime)
    env.pop("PULSE_SERVER", None)
    out = subprocess.run([str(TOOL), "up", str(channels), str(rate), name], capture_output=True, text=True,
                         timeout=60, env=env)
    if out.returncode != 0:
        pytest.skip(f"no PulseAudio server could be started: {out.stderr.strip()}")
    for word in out.stdout.split():
        if "=" in word:
            k, v = word.split("=", 1)
            env[k] = v
    return env


@pytest.fixture
def pulse_runtime():
    """A private folder for a PulseAudio server's socket (short: a UNIX socket path has ~100 bytes),
    and the server stopped afterwards."""
    runtime = tempfile.mkdtemp(prefix="doascope-pa-")
    yield runtime
    subprocess.run(["pulseaudio", "-k"], env=dict(os.environ, PULSE_RUNTIME_PATH=runtime, PULSE_STATE_PATH=runtime),
                   capture_output=True, timeout=30)
    shutil.rmtree(runtime, ignore_errors=True)


def _wait_for(condition, timeout: float, what: str, proc=None):
    """Poll ``condition`` until it holds (returning its value) or ``timeout`` seconds pass; a deadline
    for a busy machine, not a measurement. Fails at once if ``proc`` has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"`doascope run` ended (exit {proc.returncode}) while waiting for {what}")
        time.sleep(0.05)
    pytest.fail(f"no {what} within {timeout:.0f} s")


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


class _Stderr:
    """Collects a process's stderr on a thread, so that tests can wait for a line."""

    def __init__(self, proc):
        self.text = ""
        self._t = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._t.start()

    def _read(self, fh):
        for line in fh:
            self.text += line

    def join(self):
        self._t.join(timeout=30)
        return self.text


@pytest.fixture(scope="module")
def two_talkers(tmp_path_factory):
    """A 6 s two-talker room for the ReSpeaker USB v2 (6 device channels, mics on 1..4)."""
    from doascope.sim.scenes import SourceSpec, simulate_scene

    prof = load_profile("respeaker_usb_v2")
    scene = simulate_scene(prof.positions, prof.sample_rate,
                           [SourceSpec(70.0, distance=1.5), SourceSpec(230.0, distance=1.5)],
                           duration=6.0, rt60=0.3, snr_db=25.0, seed=4)
    dev = np.zeros((scene.audio.shape[0], prof.channels), np.float32)
    dev[:, list(prof.mic_channels)] = scene.audio
    path = tmp_path_factory.mktemp("live") / "scene.wav"
    sf.write(path, dev, prof.sample_rate)
    return path, [s.azimuth for s in scene.sources]


def _run(env, args):
    return subprocess.Popen([sys.executable, "-m", "doascope.app.cli.main", "run", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _confirmed_azimuths(frames, after: float):
    az = {}
    for f in frames:
        if f["t"] >= after:
            for tr in f["tracks"]:
                az.setdefault(tr["id"], []).append(tr["azimuth"])
    return {k: float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(v)))))) % 360 for k, v in az.items()
            if len(v) > 20}


def test_run_tracks_two_talkers_played_through_the_virtual_array(two_talkers, tmp_path, pulse_runtime):
    wav, truth = two_talkers
    env = _env(6, 16000, "doascope_live6", pulse_runtime)
    out = tmp_path / "frames.jsonl"
    raw = tmp_path / "raw.flac"
    # --duration is only a cap; the test ends the run with SIGTERM (a clean stop, exit 0) once the scene
    # has been played and analysed.
    # SRP-PHAT with frame votes, the default: two talkers 160 degrees apart on this 6.4 cm ring push
    # NormMUSIC's estimates ~10 degrees apart (see README, Tracks), the votes' by a few.
    proc = _run(env, ["--profile", "respeaker_usb_v2", "--device", "pulse", "--method", "srp-phat",
                      "--sources", "2", "--duration", "120", "--output", str(out), "--record", str(raw)])
    err = _Stderr(proc)
    try:
        _wait_for(lambda: len(_lines(out)) >= 5, 180, "frames from the device", proc)  # capturing silence
        play = subprocess.run([str(TOOL), "play", str(wav)], env=env, capture_output=True, text=True, timeout=120)
        assert play.returncode == 0, play.stderr
        played = len(_lines(out))
        _wait_for(lambda: len(_lines(out)) >= played + 30, 180, "frames after the scene", proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.join()
    assert proc.returncode == 0, text
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(frames) > 100
    # Both talkers are tracked: some confirmed track near each true direction. Two talkers 160
    # degrees apart on this 6.4 cm ring push each other's estimates apart by several degrees (the
    # 70-degree talker here reads 59-66 degrees, offline as live; `doascope bench --tracking`
    # measures that push), so "near" is 15 degrees, not 10: issue 13 is still open on this.
    tracks = _confirmed_azimuths(frames, after=0.0)
    assert tracks, "no confirmed track"
    errs = azimuth_errors(list(tracks.values()), truth)
    assert np.all(errs < 15), (tracks, truth)

    # The raw recording holds what was captured, and `locate` on it agrees with the live run.
    rec, fs = sf.read(raw, dtype="float32")
    assert rec.shape[1] == 6 and fs == 16000 and rec.shape[0] > 6 * fs
    off = subprocess.run([sys.executable, "-m", "doascope.app.cli.main", "locate", str(raw), "--profile",
                          "respeaker_usb_v2", "--method", "srp-phat", "--sources", "2"],
                         capture_output=True, text=True, timeout=300)
    assert off.returncode == 0, off.stderr
    peaks = [s["azimuth"] for line in off.stdout.splitlines() for s in json.loads(line)["sources"]]
    for live_az in tracks.values():
        near = [p for p in peaks if azimuth_errors([p], [live_az])[0] < 15]
        assert len(near) > 10
        assert azimuth_errors([float(np.median(near))], [live_az])[0] < 5


def test_run_survives_the_audio_server_going_away(tmp_path, pulse_runtime):
    """The device disappears mid-stream (its server is killed): `run` says so in one line, keeps what
    it wrote, reconnects when the server is back, frames resume, and a clean stop exits 0."""
    env = _env(4, 16000, "doascope_live4", pulse_runtime)
    out = tmp_path / "frames.jsonl"
    raw = tmp_path / "raw.wav"
    proc = _run(env, ["--profile", "respeaker_4mic_hat", "--device", "pulse", "--duration", "120",
                      "--output", str(out), "--record", str(raw)])
    err = _Stderr(proc)
    try:
        _wait_for(lambda: len(_lines(out)) >= 10, 180, "frames from the device", proc)
        subprocess.run(["pulseaudio", "-k"], env=env, timeout=30)
        _wait_for(lambda: "no audio from" in err.text, 90, "line about the lost device", proc)
        before = [json.loads(line) for line in _lines(out)]   # what was written is kept, whole lines
        assert before and len(before) >= 10
        assert sf.info(str(raw)).frames > 0                   # and the recording is readable as it is
        _env(4, 16000, "doascope_live4", pulse_runtime)       # the server and the sink come back
        _wait_for(lambda: len(_lines(out)) >= len(before) + 30, 180, "frames after reconnecting", proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.join()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    lost = [line for line in text.splitlines() if "no audio from" in line]
    # One line per outage. Killing the server is one; on a loaded machine the server coming back (it
    # starts, then the tool loads the sink) can starve the reopened stream once more, and that is a
    # second outage, said and recovered from in the same way: every one of them is said once, and the
    # summary counts as many recoveries.
    assert lost and all("device 0: pulse since" in line and line.endswith("retrying") for line in lost), lost
    assert f"reconnected {len(lost)}x" in text, (lost, text[-2000:])
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    ts = [f["t"] for f in frames]
    assert ts == sorted(ts) and len(set(f["seq"] for f in frames)) == len(frames)
    rec, fs = sf.read(raw, dtype="float32")
    assert rec.shape[1] == 4 and rec.shape[0] >= ts[-1] * fs
