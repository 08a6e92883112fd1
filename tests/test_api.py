"""The Python API: doascope.locate (files, arrays) and the streaming doascope.Localizer give the
CLI's numbers; the doctests of the public modules hold."""

from __future__ import annotations

import doctest
import importlib
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from helpers import azimuth_error, plane_wave

import doascope
from doascope.app.cli.main import main
from doascope.hardware_profiles import load_profile

PROFILE = "respeaker_usb_v2"


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """(path, (samples, 6) device audio) of a plane wave from 75 degrees."""
    p = load_profile(PROFILE)
    mics = plane_wave(p.positions, p.sample_rate, 75.0, seconds=2.0, seed=5)
    dev = np.zeros((mics.shape[0], p.channels), np.float32)
    dev[:, list(p.mic_channels)] = 0.3 * mics / np.abs(mics).max()
    path = tmp_path_factory.mktemp("api") / "pw.wav"
    sf.write(path, dev, p.sample_rate, subtype="FLOAT")
    return path, dev


def test_import_doascope_is_light():
    code = "import sys, doascope; print('numpy' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_locate_file_matches_the_cli(recording, capsys):
    path, _ = recording
    res = doascope.locate(path, PROFILE, method="normmusic", sources=2)
    assert main(["locate", str(path), "--profile", PROFILE, "--method", "normmusic", "--sources", "2"]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert res.records() == cli
    assert res.t.shape == (len(cli),) and res.azimuth.shape == res.power.shape == (len(cli), 2)
    assert res.xyz is None and res.mode == "doa" and res.method == "normmusic"
    assert azimuth_error(float(np.nanmedian(res.azimuth[:, 0])), 75.0) < 3
    # NaN exactly where a block reports fewer sources
    counts = [len(r["sources"]) for r in cli]
    assert [int(np.count_nonzero(np.isfinite(row))) for row in res.azimuth] == counts


def test_locate_array_device_or_mic_channels_and_other_rates(recording):
    path, dev = recording
    p = load_profile(PROFILE)
    a = doascope.locate(dev, PROFILE)
    b = doascope.locate(dev[:, list(p.mic_channels)], p)
    assert np.array_equal(a.azimuth, b.azimuth, equal_nan=True)
    c = doascope.locate(path, PROFILE)
    np.testing.assert_allclose(a.azimuth, c.azimuth, atol=0.01)
    from doascope.app.runtime.audio import resample

    d = doascope.locate(resample(dev, 16000, 48000), PROFILE, fs=48000)
    assert azimuth_error(float(np.nanmedian(d.azimuth)), 75.0) < 3


@pytest.mark.parametrize("bad, match", [
    (np.zeros(16000, np.float32), "shape"),
    (np.zeros((16000, 3), np.float32), "channel"),
    (np.zeros((100, 6), np.float32), "shorter"),
    (np.full((16000, 6), np.nan, np.float32), "NaN"),
])
def test_locate_rejects_bad_arrays_in_one_sentence(bad, match):
    with pytest.raises(doascope.DoascopeError, match=match):
        doascope.locate(bad, PROFILE)


def test_locate_rejects_unknown_options_and_sources():
    x = np.zeros((16000, 6), np.float32)
    with pytest.raises(doascope.DoascopeError, match="unknown option"):
        doascope.locate(x, PROFILE, smothing=0.3)
    with pytest.raises(doascope.DoascopeError, match="sources"):
        doascope.locate(x, PROFILE, sources=0)
    assert doascope.locate(x, PROFILE, sources="auto").azimuth.shape[1] == 4


def test_streaming_localizer_gives_locate_results_whatever_the_chunks(recording):
    _, dev = recording
    whole = doascope.locate(dev, PROFILE, method="srp-phat", sources=2)
    loc = doascope.Localizer(PROFILE, method="srp-phat", sources=2)
    rng = np.random.default_rng(0)
    got, i = [], 0
    while i < dev.shape[0]:
        n = int(rng.integers(1, 3000))
        got += loc.process(dev[i:i + n])
        i += n
    assert [b.t for b in got] == [b.t for b in whole.blocks]
    for g, w in zip(got, whole.blocks):
        np.testing.assert_allclose(g.spectrum, w.spectrum, rtol=1e-4, atol=1e-6)
        assert [round(p.azimuth, 2) for p in g.peaks] == [round(p.azimuth, 2) for p in w.peaks]
    loc.reset()
    assert loc.process(dev[:100]) == []


@pytest.mark.parametrize("module", ["doascope.app.api", "doascope.dsp.evaluation", "doascope.app.cli.eval",
                                    "doascope.extras", "doascope.app.cli.train",
                                    "doascope.dsp.assignment"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_locate_position_mode_gives_metres(tmp_path):
    pytest.importorskip("pyroomacoustics")
    from doascope.sim.scenes import simulate_room

    p = load_profile("room_walls_6mic")
    rec = simulate_room(p.positions, p.sample_rate, np.array([[2.0, 3.0, 1.5]]),
                        room_dim=tuple(p.room[:, 1] - p.room[:, 0]), duration=2.0, rt60=0.3, snr_db=20, seed=1)
    res = doascope.locate(rec.audio, p, mode="position")
    assert res.mode == "position" and res.xyz.shape == (len(res), 1, 3) and np.all(np.isnan(res.azimuth))
    found = res.xyz[:, 0][np.isfinite(res.xyz[:, 0, 0])]
    assert len(found) > len(res) // 2
    assert np.median(np.linalg.norm(found - [2.0, 3.0, 1.5], axis=1)) < 0.3
    assert set(res.records()[-1]["sources"][0]) == {"x", "y", "z", "power"}
