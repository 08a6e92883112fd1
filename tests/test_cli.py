"""The ``doascope`` command line: ``locate`` on generated recordings, ``profiles``, and one clear
error line (exit 2, no traceback) for every kind of bad input a user can give."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import azimuth_error, plane_wave

import doascope
from doascope.app.cli.main import main
from doascope.hardware_profiles import list_profiles, load_profile

PROFILE = "respeaker_usb_v2"   # 6 device channels, microphones on channels 1..4, 16 kHz
AZIMUTH = 123.4


def device_recording(azimuth=AZIMUTH, *, fs=16000, seconds=1.0, seed=3) -> np.ndarray:
    """(samples, 6) as the ReSpeaker USB delivers it: a plane wave on channels 1..4, unrelated
    noise on the processed-beam channel 0 and the playback reference 5."""
    p = load_profile(PROFILE)
    mics = plane_wave(p.positions, fs, azimuth, seconds=seconds, seed=seed)
    out = np.random.default_rng(seed + 100).standard_normal((mics.shape[0], p.channels)).astype(np.float32) * 0.05
    out[:, list(p.mic_channels)] = mics
    return out


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "scene.wav"
    sf.write(path, device_recording(), 16000, subtype="PCM_16")
    return path


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- locate --------------------------------------------------------------------------------------

def test_locate_jsonl(capsys, wav):
    rc, out, err = run(capsys, "locate", wav, "--profile", PROFILE)
    assert rc == 0, err
    blocks = jsonl(out)
    # 1 s at 16 kHz: blocks of 8 frames of 512 with hop 256 advance by 2048 samples
    assert len(blocks) == 7
    assert [b["t"] for b in blocks] == sorted(b["t"] for b in blocks)
    assert blocks[0]["t"] == pytest.approx((7 * 256 + 512) / 2 / 16000, abs=1e-4)
    for b in blocks:
        assert set(b) == {"t", "sources"} and len(b["sources"]) == 1
        src = b["sources"][0]
        assert set(src) == {"azimuth", "elevation", "power"}
        assert azimuth_error(src["azimuth"], AZIMUTH) < 2.0, b
        assert src["elevation"] == 0.0 and 0 < src["power"] <= 1.01


def test_main_in_process_leaves_the_garbage_collector_alone(capsys, wav):
    import gc

    before = (gc.isenabled(), gc.get_freeze_count())
    rc, _, err = run(capsys, "locate", wav, "--profile", PROFILE)
    assert rc == 0, err
    assert (gc.isenabled(), gc.get_freeze_count()) == before


def test_console_keeps_the_collector_off_while_starting_and_gives_it_back(capsys, monkeypatch, wav):
    # the console entry point holds the cyclic collector through imports and the localizer's set-up
    # (doascope.app.cli.startup), then freezes what set-up made and turns it back on for the analysis
    import gc

    from doascope.app.cli import commands
    from doascope.app.cli.main import console
    from doascope.app.runtime import audio

    seen = {}
    real_localizer, real_read = commands.localizer_for, audio.read_recording

    def localizer_for(*a, **k):
        seen["set-up"] = gc.isenabled()
        return real_localizer(*a, **k)

    def read_recording(*a, **k):
        seen["analysis"] = gc.isenabled()
        return real_read(*a, **k)

    monkeypatch.setattr(commands, "localizer_for", localizer_for)
    monkeypatch.setattr(audio, "read_recording", read_recording)
    monkeypatch.setattr(sys, "argv", ["doascope", "locate", str(wav), "--profile", PROFILE])
    frozen = gc.get_freeze_count()
    try:
        assert console() == 0
        assert seen == {"set-up": False, "analysis": True}
        assert gc.isenabled() and gc.get_freeze_count() > frozen
        assert len(jsonl(capsys.readouterr().out)) == 7
    finally:
        gc.enable()
        gc.unfreeze()


@pytest.mark.parametrize("method", ["srp-phat", "gcc-phat", "music", "normmusic"])
def test_locate_methods_and_mic_only_file(capsys, tmp_path, method):
    # a recording already reduced to the 4 microphone channels is accepted too
    path = tmp_path / "mics.wav"
    sf.write(path, device_recording(200.5)[:, 1:5], 16000, subtype="FLOAT")
    rc, out, err = run(capsys, "locate", path, "-p", PROFILE, "-m", method)
    assert rc == 0, err
    for b in jsonl(out):
        assert azimuth_error(b["sources"][0]["azimuth"], 200.5) < 2.0


def test_locate_csv_to_file_and_plot(capsys, tmp_path, wav):
    out_csv, png = tmp_path / "out.csv", tmp_path / "track.png"
    rc, out, err = run(capsys, "locate", wav, "--profile", PROFILE, "--format", "csv",
                       "--output", out_csv, "--plot", png)
    assert rc == 0, err
    assert out == ""
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == 7 and list(rows[0]) == ["t", "rank", "azimuth", "elevation", "power"]
    for r in rows:
        assert r["rank"] == "0" and azimuth_error(float(r["azimuth"]), AZIMUTH) < 2.0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_locate_csv_matches_jsonl(capsys, wav):
    _, out_j, _ = run(capsys, "locate", wav, "-p", PROFILE)
    _, out_c, _ = run(capsys, "locate", wav, "-p", PROFILE, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out_c)))
    for b, r in zip(jsonl(out_j), rows, strict=True):
        assert b["sources"][0]["azimuth"] == pytest.approx(float(r["azimuth"]), abs=0.01)
        assert b["t"] == pytest.approx(float(r["t"]), abs=1e-3)


def test_locate_silence_reports_no_sources(capsys, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((16000, 6), np.float32), 16000)
    rc, out, err = run(capsys, "locate", path, "-p", PROFILE)
    assert rc == 0, err
    blocks = jsonl(out)
    assert len(blocks) == 7 and all(b["sources"] == [] for b in blocks)
    rc, out, err = run(capsys, "locate", path, "-p", PROFILE, "--format", "csv")
    assert rc == 0 and all(line.endswith(",,,,") for line in out.splitlines()[1:])


def test_locate_resamples_48k_recording(capsys, tmp_path):
    path = tmp_path / "48k.wav"
    sf.write(path, device_recording(301.7, fs=48000, seed=5), 48000, subtype="FLOAT")
    rc, out, err = run(capsys, "locate", path, "-p", PROFILE)
    assert rc == 0, err
    blocks = jsonl(out)
    assert len(blocks) == 7   # 1 s, analysed at the profile's 16 kHz
    # the polyphase filter's start-up transient touches the first block only
    for b in blocks[1:]:
        assert azimuth_error(b["sources"][0]["azimuth"], 301.7) < 2.0, b


def test_locate_two_sources(capsys, tmp_path):
    from helpers import mixture

    p = load_profile("matrix_creator")
    path = tmp_path / "two.wav"
    sf.write(path, mixture(p.positions, p.sample_rate, [60.2, 150.2], seconds=0.5, seed=9),
             p.sample_rate, subtype="FLOAT")
    rc, out, err = run(capsys, "locate", path, "-p", "matrix_creator", "-m", "music", "-k", "2")
    assert rc == 0, err
    for b in jsonl(out):
        az = sorted(s["azimuth"] for s in b["sources"])
        assert len(az) == 2 and azimuth_error(az[0], 60.2) < 3 and azimuth_error(az[1], 150.2) < 3
        powers = [s["power"] for s in b["sources"]]
        assert powers == sorted(powers, reverse=True)   # strongest first


# --- profiles ------------------------------------------------------------------------------------

def test_profiles_table(capsys):
    rc, out, err = run(capsys, "profiles")
    assert rc == 0, err
    ids = [p.id for p in list_profiles()]
    assert len(ids) >= 10
    for pid in ids:
        assert pid in out


def test_profiles_json(capsys):
    rc, out, err = run(capsys, "profiles", "--json")
    assert rc == 0, err
    rows = jsonl(out)
    assert len(rows) >= 10 and [r["id"] for r in rows] == [p.id for p in list_profiles()]
    for r in rows:
        assert {"id", "name", "sample_rate", "channels", "mics", "geometry"} <= set(r)
        assert r["geometry"] in ("linear", "planar", "3d") and r["mics"] >= 2


def test_no_command_prints_help(capsys):
    rc, out, err = run(capsys)
    assert rc == 2 and "locate" in out


# --- bad input: one line, exit 2 -----------------------------------------------------------------

def _write_bad(kind: str, d: Path) -> tuple[list[str], str]:
    """Files for one kind of mistake; returns (argv, a word the error line must contain)."""
    good = d / "good.wav"
    sf.write(good, device_recording(seconds=0.5), 16000, subtype="FLOAT")
    args = lambda f, *more: ["locate", str(f), "--profile", PROFILE, *more]  # noqa: E731
    if kind == "missing file":
        return args(d / "nope.wav"), "no such file"
    if kind == "directory":
        return args(d), "directory"
    if kind == "random bytes":
        f = d / "noise.wav"
        f.write_bytes(np.random.default_rng(0).bytes(5000))
        return args(f), "cannot read"
    if kind == "truncated header":
        f = d / "trunc.wav"
        f.write_bytes(good.read_bytes()[:30])
        return args(f), "cannot read"
    if kind == "empty file":
        f = d / "empty.wav"
        f.write_bytes(b"")
        return args(f), "cannot read"
    if kind == "no frames":
        f = d / "noframes.wav"
        sf.write(f, np.zeros((0, 6), np.float32), 16000)
        return args(f), "no audio"
    if kind == "wrong channel count":
        f = d / "3ch.wav"
        sf.write(f, np.zeros((16000, 3), np.float32), 16000)
        return args(f), "3 channels"
    if kind in ("nan samples", "inf samples"):
        x = device_recording(seconds=0.5)
        x[1000:1010, 2] = np.nan if kind == "nan samples" else np.inf
        x[5000, 0] = -np.inf if kind == "inf samples" else np.nan
        f = d / "bad_values.wav"
        sf.write(f, x, 16000, subtype="FLOAT")
        return args(f), "NaN or infinite"
    if kind == "shorter than a block":
        f = d / "short.wav"
        sf.write(f, device_recording(seconds=0.05), 16000, subtype="FLOAT")
        return args(f), "shorter"
    if kind == "unknown profile":
        return ["locate", str(good), "--profile", "no_such_array"], "no_such_array"
    if kind == "profile toml does not parse":
        f = d / "broken.toml"
        f.write_text('name = "x"\npositions = [[0, 0\n')
        return ["locate", str(good), "--profile", str(f)], "not valid TOML"
    if kind == "profile toml is invalid":
        f = d / "invalid.toml"
        f.write_text('name = "x"\nsample_rate = 16000\nchannels = 2\nmic_channels = [0, 1]\n'
                     'positions = [[0.0, 0.0, 0.0]]\n')
        return ["locate", str(good), "--profile", str(f)], "positions"
    if kind == "profile path missing":
        return ["locate", str(good), "--profile", str(d / "missing" / "array.toml")], "does not exist"
    if kind == "unknown method":
        return args(good, "--method", "beamformer9000"), "beamformer9000"
    if kind == "zero sources":
        return args(good, "--sources", "0"), "sources"
    if kind == "unwritable output":
        return args(good, "--output", str(d)), "cannot write"
    raise AssertionError(kind)


BAD = ["missing file", "directory", "random bytes", "truncated header", "empty file", "no frames",
       "wrong channel count", "nan samples", "inf samples", "shorter than a block", "unknown profile",
       "profile toml does not parse", "profile toml is invalid", "profile path missing", "unknown method",
       "zero sources", "unwritable output"]


def _check_error(rc: int, err: str, word: str):
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert lines[0].startswith("doascope: error: ")
    assert word.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_in_process(capsys, tmp_path, kind):
    argv, word = _write_bad(kind, tmp_path)
    rc, out, err = run(capsys, *argv)
    _check_error(rc, err, word)
    assert out == ""


# --- a real process ------------------------------------------------------------------------------

def _subprocess(argv, cwd):
    # the doascope under test, whether installed or found through PYTHONPATH
    root = str(Path(doascope.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.run([sys.executable, "-m", "doascope.app.cli.main", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_subprocess_locate(tmp_path, wav):
    proc = _subprocess(["locate", str(wav), "--profile", PROFILE], tmp_path)
    assert proc.returncode == 0, proc.stderr
    blocks = jsonl(proc.stdout)
    assert len(blocks) == 7
    assert all(azimuth_error(b["sources"][0]["azimuth"], AZIMUTH) < 2.0 for b in blocks)


@pytest.mark.parametrize("kind", ["random bytes", "nan samples", "unknown profile", "profile toml does not parse"])
def test_subprocess_bad_input(tmp_path, kind):
    argv, word = _write_bad(kind, tmp_path)
    proc = _subprocess(argv, tmp_path)
    _check_error(proc.returncode, proc.stderr, word)
    assert proc.stdout == ""
