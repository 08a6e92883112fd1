"""`doascope run` and `doascope devices` as a user runs them: a subprocess, files on disk, signals.

(Capture from a real audio server is in test_live.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from doascope.hardware_profiles import load_profile

PROFILE = "respeaker_usb_v2"  # 16 kHz, 6 device channels, microphones on channels 1..4
CLI = [sys.executable, "-m", "doascope.app.cli.main"]


def _cli(*args, timeout=120, cwd=None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _frames(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    return [json.loads(line) for line in lines]  # every line a whole JSON object


def _check_frames(frames: list[dict]) -> None:
    for f in frames:
        assert {"t", "tracks", "peaks"} <= set(f)
        assert isinstance(f["t"], float)
        for tr in f["tracks"]:
            assert {"id", "azimuth", "elevation", "activity"} <= set(tr)
            assert isinstance(tr["id"], int) and tr["id"] >= 1
            assert 0 <= tr["azimuth"] < 360 and -90 <= tr["elevation"] <= 90 and 0 <= tr["activity"] <= 1
        for pk in f["peaks"]:
            assert {"azimuth", "elevation", "power"} <= set(pk)
    ts = [f["t"] for f in frames]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("doascope: error:")]


@pytest.fixture(scope="module")
def scene():
    """The two-talkers scene as `--sim` renders it (same seed), to compare recordings with."""
    from doascope.sim.presets import render_preset

    prof = load_profile(PROFILE)
    return render_preset("two-talkers", prof.positions, prof.sample_rate, seed=0).audio


def test_run_sim_fast_writes_frames_and_records_the_mic_channels(tmp_path, scene):
    out, raw = tmp_path / "frames.jsonl", tmp_path / "raw.flac"
    res = _cli("run", "--profile", PROFILE, "--sim", "two-talkers", "--fast", "--duration", "6",
               "--method", "normmusic", "--sources", "2", "--output", str(out), "--record", str(raw))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    frames = _frames(out)
    _check_frames(frames)
    # --duration is in audio time: about 6 s of frames at ~31 frames a second.
    assert 6.0 <= frames[-1]["t"] <= 10.0, frames[-1]["t"]
    assert len(frames) >= 6.0 * 16000 / 512 - 5
    # Both talkers (60 and 215 degrees) tracked by the end.
    late = [tr["azimuth"] for f in frames if f["t"] > frames[-1]["t"] - 1.0 for tr in f["tracks"]]
    assert any(abs((a - 60 + 180) % 360 - 180) < 12 for a in late), late[:10]
    assert any(abs((a - 215 + 180) % 360 - 180) < 12 for a in late), late[:10]

    info = sf.info(str(raw))
    assert info.format == "FLAC" and info.channels == 4 and info.samplerate == 16000  # a scene has mics only
    rec, _ = sf.read(str(raw), dtype="float32")
    assert rec.shape[0] >= 6.0 * 16000
    assert rec.shape[0] <= scene.shape[0]
    # The recording is the input from its first sample on, losslessly (24-bit FLAC). Only the
    # first second is compared: --fast does not wait for the recorder, which on a loaded machine
    # can lose audio later on (see test_engine.test_fast_replay_waits_for_the_raw_recorder).
    np.testing.assert_allclose(rec[:16000], scene[:16000], atol=2.0**-22)


def test_run_file_records_every_device_channel(tmp_path, scene):
    """A 6-channel device recording replayed with --record keeps all 6 channels, not just the mics."""
    n = 6 * 16000
    dev = np.zeros((n, 6), np.float32)
    dev[:, 1:5] = scene[:n]                                            # the four microphones
    t = np.arange(n) / 16000
    dev[:, 0] = 0.25 * np.sin(2 * np.pi * 440 * t)                    # e.g. the board's processed beam
    dev[:, 5] = 0.1 * np.sign(np.sin(2 * np.pi * 3 * t))              # e.g. its playback reference
    wav = tmp_path / "device.wav"
    sf.write(str(wav), dev, 16000, subtype="FLOAT")
    out, raw = tmp_path / "frames.jsonl", tmp_path / "raw.flac"
    # Paced at 8x rather than --fast: fast replay does not wait for the recorder (see
    # test_engine.test_fast_replay_waits_for_the_raw_recorder), so on a loaded machine it can lose audio.
    res = _cli("run", "--profile", PROFILE, "--file", str(wav), "--speed", "8", "--output", str(out),
               "--record", str(raw))
    assert res.returncode == 0, res.stderr
    _check_frames(_frames(out))
    rec, fs = sf.read(str(raw), dtype="float32")
    assert fs == 16000 and rec.ndim == 2 and rec.shape[1] == 6
    assert rec.shape[0] == n  # a finite file without --duration: recorded to its end
    np.testing.assert_allclose(rec, dev, atol=2.0**-22)


def test_sigterm_ends_a_real_time_run_cleanly_with_files_flushed(tmp_path):
    out, raw = tmp_path / "frames.jsonl", tmp_path / "raw.wav"
    proc = subprocess.Popen([*CLI, "run", "--profile", PROFILE, "--sim", "two-talkers", "--duration", "60",
                             "--output", str(out), "--record", str(raw)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Some frames of real-time analysis (a deadline for a busy machine, not a measurement), then stop.
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.read_text().count("\n") >= 30:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    frames = _frames(out)  # a truncated last line would fail to parse
    _check_frames(frames)
    assert frames[-1]["t"] < 30.0, frames[-1]["t"]  # stopped by the signal, long before --duration 60
    rec, fs = sf.read(str(raw), dtype="float32")  # a header left unfinished would not read back
    assert rec.shape[1] == 4 and fs == 16000
    assert rec.shape[0] >= frames[-1]["t"] * fs
    assert np.abs(rec).max() > 0.01


def test_unknown_device_is_one_error_line_and_exit_2(tmp_path):
    pytest.importorskip("sounddevice", reason="needs sounddevice and PortAudio")
    res = _cli("run", "--profile", PROFILE, "--device", "no such device", "--duration", "1", cwd=tmp_path)
    if "needs PortAudio" in res.stderr:
        pytest.skip("PortAudio is not installed")
    assert res.returncode == 2, res.stderr
    lines = _error_lines(res.stderr)
    assert len(lines) == 1 and "no such device" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_record_to_an_unsupported_format_is_a_clear_error(tmp_path):
    res = _cli("run", "--profile", PROFILE, "--sim", "two-talkers", "--fast", "--duration", "1",
               "--record", str(tmp_path / "x.mp3"))
    assert res.returncode == 2
    lines = _error_lines(res.stderr)
    assert len(lines) == 1 and ".flac" in lines[0] and "mp3" in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x.mp3").exists()


def test_devices_lists_inputs(tmp_path):
    pytest.importorskip("sounddevice", reason="needs sounddevice and PortAudio")
    res = _cli("devices", cwd=tmp_path)
    if "needs PortAudio" in res.stderr:
        pytest.skip("PortAudio is not installed")
    assert res.returncode == 0, res.stderr
    if "no audio input device found" in res.stderr:   # no sound server here: one line, no empty table
        assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
        return
    assert "Audio input devices" in res.stdout
    if os.environ.get("PULSE_SERVER") or Path(f"/run/user/{os.getuid()}/pulse/native").exists():
        assert "pulse" in res.stdout
