"""Live capture through a real audio server: PulseAudio with an N-channel null sink (the shared
virtual-array tool), captured by `doascope run` through sounddevice/PortAudio like a USB array.

.ci/run installs PulseAudio; the tests start the server and sink themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from doascope.dsp.metrics import azimuth_errors
from doascope.hardware_profiles import load_profile

pytestmark = pytest.mark.live

TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "virtual-array"


def _env(channels: int, rate: int, name: str) -> dict:
    if not TOOL.exists():
        pytest.skip(f"the virtual-array tool is not at {TOOL}")
    if shutil.which("pactl") is None or shutil.which("pulseaudio") is None:
        pytest.skip("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    out = subprocess.run([str(TOOL), "up", str(channels), str(rate), name], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        pytest.skip(f"no PulseAudio server could be started: {out.stderr.strip()}")
    env = dict(os.environ)
    for word in out.stdout.split():
        if "=" in word:
            k, v = word.split("=", 1)
            env[k] = v
    return env


@pytest.fixture(scope="module")
def two_talkers(tmp_path_factory):
    """A 6 s two-talker room for the ReSpeaker USB v2 (6 device channels, mics on 1..4)."""
    from doascope.app.scenes import SourceSpec, simulate_scene

    prof = load_profile("respeaker_usb_v2")
    scene = simulate_scene(prof.positions, prof.sample_rate,
                           [SourceSpec(70.0, distance=1.5), SourceSpec(230.0, distance=1.5)],
                           duration=6.0, rt60=0.3, snr_db=25.0, seed=4)
    dev = np.zeros((scene.audio.shape[0], prof.channels), np.float32)
    dev[:, list(prof.mic_channels)] = scene.audio
    path = tmp_path_factory.mktemp("live") / "scene.wav"
    sf.write(path, dev, prof.sample_rate)
    return path, [s.azimuth for s in scene.sources]


def _run(env, args, timeout):
    return subprocess.Popen([sys.executable, "-m", "doascope.app.cli", "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _confirmed_azimuths(frames, after: float):
    az = {}
    for f in frames:
        if f["t"] >= after:
            for tr in f["tracks"]:
                az.setdefault(tr["id"], []).append(tr["azimuth"])
    return {k: float(np.degrees(np.angle(np.mean(np.exp(1j * np.radians(v)))))) % 360 for k, v in az.items()
            if len(v) > 20}


def test_run_tracks_two_talkers_played_through_the_virtual_array(two_talkers, tmp_path):
    wav, truth = two_talkers
    env = _env(6, 16000, "doascope_live6")
    out = tmp_path / "frames.jsonl"
    raw = tmp_path / "raw.flac"
    proc = _run(env, ["--profile", "respeaker_usb_v2", "--device", "pulse", "--method", "normmusic",
                      "--sources", "2", "--duration", "9", "--output", str(out), "--record", str(raw)], 60)
    time.sleep(2.5)  # start-up, then the stream is open and capturing silence
    play = subprocess.run([str(TOOL), "play", str(wav)], env=env, capture_output=True, text=True, timeout=30)
    assert play.returncode == 0, play.stderr
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    frames = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(frames) > 100
    # Both talkers are tracked: some confirmed track within 10 degrees of each true direction.
    tracks = _confirmed_azimuths(frames, after=0.0)
    assert tracks, "no confirmed track"
    errs = azimuth_errors(list(tracks.values()), truth)
    assert np.all(errs < 10), (tracks, truth)

    # The raw recording holds what was captured, and `locate` on it agrees with the live run.
    rec, fs = sf.read(raw, dtype="float32")
    assert rec.shape[1] == 6 and fs == 16000 and rec.shape[0] > 6 * fs
    off = subprocess.run([sys.executable, "-m", "doascope.app.cli", "locate", str(raw), "--profile",
                          "respeaker_usb_v2", "--method", "normmusic", "--sources", "2"],
                         capture_output=True, text=True, timeout=120)
    assert off.returncode == 0, off.stderr
    peaks = [s["azimuth"] for line in off.stdout.splitlines() for s in json.loads(line)["sources"]]
    for live_az in tracks.values():
        near = [p for p in peaks if azimuth_errors([p], [live_az])[0] < 15]
        assert len(near) > 10
        assert azimuth_errors([float(np.median(near))], [live_az])[0] < 5


def test_run_survives_the_audio_server_going_away(tmp_path):
    """The device disappears mid-stream (its server is killed): `run` says so, keeps what it wrote,
    reconnects when the server is back, and stops on time instead of hanging."""
    env = _env(4, 16000, "doascope_live4")
    out = tmp_path / "frames.jsonl"
    proc = _run(env, ["--profile", "respeaker_4mic_hat", "--device", "pulse", "--duration", "14",
                      "--output", str(out)], 60)
    try:
        time.sleep(3.5)
        subprocess.run(["pulseaudio", "-k"], env=env, timeout=30)
        time.sleep(4.0)
        _env(4, 16000, "doascope_live4")  # the server and the sink come back
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "no audio from" in err
    ts = [json.loads(line)["t"] for line in out.read_text().splitlines()]
    assert ts == sorted(ts)
    # About 2 s of audio came before the server died; the rest came after reconnecting.
    assert max(ts) > 5.0, max(ts)
