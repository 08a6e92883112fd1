"""The DNN estimator: features, training, shipped weights, refusals, and the CLI path."""

import json
import os
from dataclasses import replace
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from doascope import DoascopeError, ParameterError
from doascope.dsp import Localizer, circle_grid, make_estimator, sphere_grid
from doascope.hardware_profiles import load_profile
from helpers import azimuth_error, plane_wave, plane_wave_file

torch.set_num_threads(1)
RESPEAKER = load_profile("respeaker_usb_v2")
UMA8 = load_profile("minidsp_uma8")


@pytest.mark.parametrize("spec", [dict(kind="gcc", n_bands=3), dict(kind="phase", pool=2)], ids=lambda d: d["kind"])
def test_symmetries_relabel_features_like_a_rotated_source(spec):
    from doascope.dsp import stft
    from doascope.models.features import FeatureSpec, make_features, symmetries

    pos = RESPEAKER.positions
    group = symmetries(pos)
    assert len(group) == 8  # the square: 4 rotations, each also mirrored
    feats = make_features(pos, FeatureSpec(16000, 512, (300.0, 3500.0), **spec))

    def f(az):
        x = plane_wave(pos, 16000, az, seconds=0.5, seed=3).astype(np.float32)
        return feats.features(feats.cross_spectra(np.ascontiguousarray(stft(x, nfft=512, hop=256)[:, :, :8])))

    assert f(40.0).shape == (feats.size,)
    for angle, mirrored, perm in group:
        az2 = ((-40.0 if mirrored else 40.0) + angle) % 360
        index, sign = feats.relabel(perm)
        moved = f(40.0)[index] * (1.0 if sign is None else sign)
        np.testing.assert_allclose(moved, f(az2), atol=1e-4)
        if angle or mirrored:
            assert not np.allclose(f(40.0), f(az2), atol=1e-2)  # the relabelling did real work


def test_tiny_model_lowers_the_loss_and_is_deterministic(tmp_path):
    from doascope.models.dnn import load_weights
    from doascope.models.training import TrainSettings, train

    settings = TrainSettings(scenes=3, epochs=4, duration=1.0, hidden=(32,), batch=16, lr=5e-3)
    a = train(RESPEAKER, tmp_path / "a.pt", settings, cache_dir=tmp_path / "cache")
    losses = [h["train_loss"] for h in a["history"]]
    assert losses[-1] < losses[0]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # cached
    b = train(RESPEAKER, tmp_path / "b.pt", settings, cache_dir=tmp_path / "cache")  # from the cache
    assert b["history"] == a["history"]
    # The cache holds cross-spectra: the other feature kind trains from the same shard.
    g = train(RESPEAKER, tmp_path / "g.pt", replace(settings, features="gcc"), cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert load_weights(tmp_path / "g.pt")[0]["features"]["kind"] == "gcc"
    assert g["history"][-1]["train_loss"] < g["history"][0]["train_loss"]
    meta, state = load_weights(tmp_path / "a.pt")
    assert meta["profile"] == "respeaker_usb_v2" and meta["features"]["fs"] == 16000
    assert meta["features"]["kind"] == "phase"
    np.testing.assert_allclose(meta["positions"], RESPEAKER.positions)
    assert all(torch.equal(v, load_weights(tmp_path / "b.pt")[1][k]) for k, v in state.items())


def test_per_frame_network_averages_its_answers_over_frames(tmp_path):
    from doascope.dsp import stft
    from doascope.models.training import TrainSettings, train

    settings = TrainSettings(scenes=2, epochs=2, duration=1.0, hidden=(16,), batch=64, per_frame=True)
    res = train(RESPEAKER, tmp_path / "f.pt", settings, cache_dir=tmp_path / "cache")
    assert res["examples"] > 50  # one example per active frame, not per block
    est = make_estimator("dnn", RESPEAKER.positions, fs=16000, nfft=512, weights=tmp_path / "f.pt")
    x = plane_wave(RESPEAKER.positions, 16000, 70.0, seconds=0.5, seed=1).astype(np.float32)
    X = np.ascontiguousarray(stft(x, nfft=512, hop=256)[:, :, :8])
    stats = est.statistics(X)
    assert stats.shape == (360,) and np.all((stats >= 0) & (stats <= 1))
    # the statistics are the mean of the per-frame answers
    frames = est.features.features(est.features.frame_cross_spectra(X))
    with torch.inference_mode():
        each = torch.sigmoid(est.model(torch.from_numpy(frames))).numpy()
    np.testing.assert_allclose(stats, each.mean(axis=0), atol=1e-6)
    assert est.spectrum(X).shape == (len(est.grid),)
    loc = Localizer(est, hop=256, n_sources=1, frames_per_block=8, smoothing=0.5)
    assert len(list(loc.locate(x, 16000))) >= 1


def test_block_network_answers_are_exactly_as_symmetric_as_the_array(tmp_path):
    from doascope.dsp import stft
    from doascope.models.training import TrainSettings, train

    settings = TrainSettings(scenes=2, epochs=1, duration=1.0, hidden=(16,), per_frame=False)
    train(RESPEAKER, tmp_path / "b.pt", settings, cache_dir=tmp_path / "cache")
    est = make_estimator("dnn", RESPEAKER.positions, fs=16000, nfft=512, weights=tmp_path / "b.pt")
    plain = make_estimator("dnn", RESPEAKER.positions, fs=16000, nfft=512, weights=tmp_path / "b.pt", symmetrize=False)

    def probs(e, az):
        x = plane_wave(RESPEAKER.positions, 16000, az, seconds=0.5, seed=3).astype(np.float32)
        return e.probabilities(e.statistics(np.ascontiguousarray(stft(x, nfft=512, hop=256)[:, :, :8])))

    p40, p130 = probs(est, 40.0), probs(est, 130.0)  # the square maps onto itself turned by 90 degrees
    np.testing.assert_allclose(np.roll(p40, 90), p130, atol=1e-4)
    assert not np.allclose(np.roll(probs(plain, 40.0), 90), probs(plain, 130.0), atol=1e-3)  # untrained: not by itself


def test_parallel_simulation_makes_the_same_shards(tmp_path, monkeypatch):
    from doascope.models import training
    from doascope.models.features import FeatureSpec

    monkeypatch.setattr(training, "SHARD_SCENES", 2)
    settings = training.TrainSettings(scenes=4, duration=1.0)
    spec = FeatureSpec(16000, 512, (300.0, 3500.0), kind="phase")
    one = training.make_dataset(RESPEAKER, spec, settings, tmp_path / "one", jobs=1)
    two = training.make_dataset(RESPEAKER, spec, settings, tmp_path / "two", jobs=2)
    assert len(list((tmp_path / "two").glob("*.npz"))) == 2
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert set(one[2].tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("profile", [RESPEAKER, UMA8], ids=lambda p: p.id)
def test_shipped_weights_find_a_reverberant_source(profile):
    from doascope.sim.scenes import SourceSpec, simulate_scene

    scene = simulate_scene(profile.positions, profile.sample_rate, [SourceSpec(azimuth=130.0, distance=1.5)],
                           duration=2.0, rt60=0.3, snr_db=20.0, room_dim=(6.0, 5.0, 3.0),
                           array_centre=(2.7, 2.4, 1.2), rotation_deg=20.0, seed=4)
    nfft = 512 if profile.sample_rate == 16000 else 2048
    est = make_estimator("dnn", profile.positions, fs=profile.sample_rate, nfft=nfft, grid=circle_grid(1.0))
    loc = Localizer(est, n_sources=1, smoothing=0.5)
    found = [r.peaks[0].azimuth for r in loc.locate(scene.audio, profile.sample_rate) if r.peaks]
    assert found
    assert azimuth_error(float(np.median(found)), scene.sources[0].azimuth) <= 10


def test_weights_for_another_geometry_are_refused_and_misfits_get_the_universal_network():
    from doascope.models.dnn import WEIGHTS_DIR

    w = WEIGHTS_DIR / "respeaker_usb_v2.pt"
    with pytest.raises(ParameterError, match="another array geometry.*doascope train"):
        make_estimator("dnn", UMA8.positions, fs=48000, nfft=2048, weights=w)
    with pytest.raises(ParameterError, match="trained at 16000 Hz"):
        make_estimator("dnn", RESPEAKER.positions, fs=48000, nfft=2048, weights=w)
    with pytest.raises(ParameterError, match="use --nfft 512"):  # per-bin features need the same FFT
        make_estimator("dnn", RESPEAKER.positions, fs=16000, nfft=1024, weights=w)
    with pytest.raises(ParameterError, match="circle grid"):
        make_estimator("dnn", RESPEAKER.positions, fs=16000, nfft=512, grid=sphere_grid(5.0, hemisphere=True),
                       weights=w)
    # without --weights, what the per-array network does not fit goes to the universal one
    odd = RESPEAKER.positions * 1.5  # no shipped profile has this geometry
    for pos, kw in ((odd, dict(fs=16000, nfft=512)), (RESPEAKER.positions, dict(fs=48000, nfft=2048)),
                    (RESPEAKER.positions, dict(fs=16000, nfft=1024)),
                    (RESPEAKER.positions, dict(fs=16000, nfft=512, grid=sphere_grid(5.0, hemisphere=True)))):
        assert type(make_estimator("dnn", pos, **kw)).__name__ == "UniversalDnn"


def test_locate_method_dnn_through_the_cli(tmp_path, capsys):
    from doascope.app.cli.main import main

    wav = plane_wave_file(str(tmp_path / "pw.wav"), "respeaker_usb_v2", azimuth=250.0, seconds=2.0)
    out = tmp_path / "out.jsonl"
    assert main(["locate", wav, "--profile", "respeaker_usb_v2", "--method", "dnn", "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    az = [r["sources"][0]["azimuth"] for r in rows if r["sources"]]
    assert az and azimuth_error(float(np.median(az)), 250.0) <= 10


def test_missing_torch_says_what_to_install(monkeypatch, tmp_path, capsys):
    from doascope.app.cli.main import main

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(DoascopeError, match=r"this needs doascope\[dnn\]: pip install 'doascope\[dnn\]'"):
        make_estimator("dnn", RESPEAKER.positions, fs=16000, nfft=512)
    wav = plane_wave_file(str(tmp_path / "pw.wav"), "respeaker_usb_v2", azimuth=30.0, seconds=1.0)
    assert main(["locate", wav, "--profile", "respeaker_usb_v2", "--method", "dnn"]) == 2
    assert "pip install 'doascope[dnn]'" in capsys.readouterr().err


def test_classical_path_never_imports_torch(tmp_path):
    wav = plane_wave_file(str(tmp_path / "pw.wav"), "respeaker_usb_v2", azimuth=30.0, seconds=1.0)
    code = ("import sys, doascope.dsp\n"
            "from doascope.app.cli.main import main\n"
            f"assert main(['locate', {wav!r}, '--profile', 'respeaker_usb_v2', '--method', 'srp-phat', "
            f"'-o', {str(tmp_path / 'o.jsonl')!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = dict(os.environ)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr


def test_train_command_makes_weights_that_locate_uses(tmp_path, capsys):
    from doascope.app.cli.main import main

    w = tmp_path / "w.pt"
    assert main(["train", "--profile", "matrix_voice", "--scenes", "2", "--epochs", "2", "--duration", "1",
                 "--hidden", "16", "--jobs", "1", "--out", str(w), "--cache", str(tmp_path / "cache"),
                 "--val-scenes", "1"]) == 0
    err = capsys.readouterr().err
    assert f"wrote {w}" in err and "--weights" in err
    assert "validation: the network" in err and "srp-phat" in err   # the held-out check, in one line
    wav = plane_wave_file(str(tmp_path / "pw.wav"), "matrix_voice", azimuth=100.0, seconds=1.0)
    assert main(["locate", wav, "--profile", "matrix_voice", "--method", "dnn", "--weights", str(w),
                 "-o", str(tmp_path / "o.jsonl")]) == 0
    assert (tmp_path / "o.jsonl").read_text().strip()  # a 2-room network locates nothing well; it runs
    assert main(["train", "--profile", "matrix_voice", "--hidden", "16,x", "--out", str(w)]) == 2
    assert "--hidden takes positive layer widths" in capsys.readouterr().err
