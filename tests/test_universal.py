"""The universal network: features against SRP-PHAT, invariance to mic order, any array/rate/grid,
random training arrays, a tiny resumable training run, and `train --from universal` with its check."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from doascope import ParameterError
from doascope.dsp import circle_grid, make_estimator, sphere_grid, stft
from doascope.dsp.gcc import pair_tdoas
from doascope.hardware_profiles import list_profiles, load_profile
from helpers import azimuth_error, plane_wave

torch.set_num_threads(1)
ODD = np.array([[0.031, -0.004, 0.0], [0.006, 0.042, 0.0], [-0.037, 0.018, 0.0], [-0.022, -0.035, 0.0],
                [0.012, -0.041, 0.01]])   # no profile has it: 5 mics, slightly 3-D


def _block(positions, fs, nfft, azimuth, elevation=0.0, seed=0):
    audio = plane_wave(positions, fs, azimuth=azimuth, elevation=elevation, seconds=0.5, seed=seed)
    return np.ascontiguousarray(stft(audio, nfft=nfft, hop=nfft // 2)[:, :, :8])


#: a layout other than the shipped one's: deeper pair and head networks, a mean context, 8 sub-bands
DEEPER = {"hidden": 12, "width": 10, "head": 16, "layers": 3, "head_layers": 2, "context": "max+mean", "n_bands": 8}


def _random_universal(path, arch):
    from doascope.models.universal import UNIVERSAL_FORMAT, build_network, full_arch
    from doascope.models.weight_files import save_weights

    torch.manual_seed(3)
    arch = full_arch(arch)
    save_weights(path, build_network(**arch), {"kind": "universal", "universal_format": UNIVERSAL_FORMAT,
                                               "n_bands": arch["n_bands"], "arch": arch})
    return str(path)


def test_sub_band_correlations_read_at_the_tdoas_are_srp_phat():
    """Mean over pairs and bands of the features, read where each direction's TDOAs fall, is a plain
    SRP-PHAT (a reference written here with numpy): both peak at the source."""
    from doascope.models.universal import UniversalFeatures

    X = _block(ODD, 16000, 512, 137.0)
    f = UniversalFeatures(ODD, fs=16000, nfft=512)
    grid = circle_grid(1.0)
    lo, frac = f.sampling(grid.vectors)
    r = f.features(f.cross_spectra(X)).mean(axis=1)                        # (P, L)
    rows = np.arange(f.n_pairs)[:, None]
    ours = (r[rows, lo] * (1 - frac) + r[rows, lo + 1] * frac).mean(axis=0)
    # reference: sum over band bins of Re(C e^{+j 2 pi f tau}) straight at each direction's TDOA
    C = f.cross_spectra(X)
    tau = pair_tdoas(ODD, grid.vectors, f.pairs)                           # (P, G)
    ref = np.einsum("pb,pbg->g", C, np.exp(2j * np.pi * f.gcc.freqs[None, :, None] * tau[:, None, :])).real
    assert azimuth_error(float(grid.azimuth[np.argmax(ours)]), 137.0) <= 2
    assert azimuth_error(float(grid.azimuth[np.argmax(ref)]), 137.0) <= 2
    assert np.corrcoef(ours, ref)[0, 1] > 0.95


@pytest.mark.parametrize("layout", [None, DEEPER])
def test_spectrum_does_not_depend_on_the_order_of_the_mics(layout, tmp_path):
    perm = np.array([3, 0, 4, 2, 1])
    opts = {} if layout is None else {"weights": _random_universal(tmp_path / "deeper.pt", layout)}
    X = _block(ODD, 16000, 512, 60.0, seed=1)
    a = make_estimator("dnn", ODD, fs=16000, nfft=512, grid=circle_grid(2.0), **opts).spectrum(X)
    b = make_estimator("dnn", ODD[perm], fs=16000, nfft=512, grid=circle_grid(2.0), **opts).spectrum(X[perm])
    np.testing.assert_allclose(a, b, atol=2e-4)


@pytest.mark.parametrize("fs,nfft", [(16000, 512), (44100, 1024), (48000, 2048)])
def test_any_array_and_rate_out_of_the_box(fs, nfft):
    est = make_estimator("dnn", ODD, fs=fs, nfft=nfft, grid=circle_grid(1.0))
    assert type(est).__name__ == "UniversalDnn"
    s = est.spectrum(_block(ODD, fs, nfft, 250.0, seed=2))
    assert s.shape == (360,) and np.all((s >= 0) & (s <= 1))
    assert azimuth_error(float(np.argmax(s)), 250.0) <= 10


def test_every_shipped_profile_gets_a_network_and_3d_arrays_a_sphere():
    from doascope.config import default_nfft

    for prof in list_profiles():
        est = make_estimator("dnn", prof.positions, fs=prof.sample_rate, nfft=default_nfft(prof.sample_rate))
        assert len(est.spectrum_from(est.statistics(_block(prof.positions, prof.sample_rate,
                                                             default_nfft(prof.sample_rate), 30.0)))) == len(est.grid)
    cma = load_profile("azimut_cma")
    grid = sphere_grid(5.0)
    s = make_estimator("dnn", cma.positions, fs=16000, nfft=512, grid=grid).spectrum(_block(cma.positions, 16000, 512, 100.0, 20.0))
    assert s.shape == (len(grid),) and azimuth_error(float(grid.azimuth[np.argmax(s)]), 100.0) <= 15


def test_per_array_weights_stay_where_they_fit_and_universal_is_chosen_by_name():
    from doascope.models.dnn import DnnEstimator

    usb = load_profile("respeaker_usb_v2")
    assert isinstance(make_estimator("dnn", usb.positions, fs=16000, nfft=512), DnnEstimator)
    assert type(make_estimator("dnn", usb.positions, fs=16000, nfft=512, weights="universal")).__name__ == "UniversalDnn"
    # the per-array UMA-8 network was trained at 48 kHz: 16 kHz audio goes to the universal one
    uma = load_profile("minidsp_uma8")
    assert type(make_estimator("dnn", uma.positions, fs=16000, nfft=512)).__name__ == "UniversalDnn"


def test_random_training_arrays_cover_the_stated_ranges():
    from doascope.dsp.grids import array_geometry
    from doascope.models.universal_training import random_array

    kinds, sizes = set(), set()
    for i in range(200):
        p = random_array(np.random.default_rng([5, i]))
        d = np.linalg.norm(p[:, None] - p[None], axis=2)
        assert 2 <= len(p) <= 16 and 0.029 <= d.max() <= 0.251
        assert np.allclose(p.mean(axis=0), 0.0, atol=0.2)
        kinds.add(array_geometry(p))
        sizes.add(len(p))
    assert kinds == {"linear", "planar", "3d"} and {2, 16} <= sizes


def test_tiny_training_runs_resumes_and_loads(tmp_path):
    from doascope.models.dnn import load_weights
    from doascope.models.universal_training import UniversalSettings, train_universal

    s = UniversalSettings(scenes=4, epochs=1, duration=1.0, val_scenes=1, hidden=8, width=4, head=8)
    out = tmp_path / "u.pt"
    res = train_universal(out, s, cache_dir=tmp_path / "cache", log=lambda line: None)
    assert res["examples"] > 0 and out.is_file()
    meta, _ = load_weights(out)
    assert meta["kind"] == "universal" and meta["arch"] == {"hidden": 8, "width": 4, "head": 8, "layers": 2,
                                                            "head_layers": 1, "context": "max", "n_bands": 6}
    est = make_estimator("dnn", ODD, fs=16000, nfft=512, weights=str(out), grid=circle_grid(1.0))
    assert est.spectrum(_block(ODD, 16000, 512, 10.0)).shape == (360,)
    # the cache is reused: a second run simulates nothing
    res2 = train_universal(tmp_path / "u2.pt", s, cache_dir=tmp_path / "cache", log=lambda line: None)
    assert res2["examples"] == res["examples"]


def test_a_multi_share_keeps_every_single_source_block_and_that_share_of_the_others():
    from doascope.models.universal_training import keep_blocks

    n = 4000
    az = np.full((n, 3), np.nan, np.float32)
    az[:, 0] = 10.0
    az[n // 2:, 1] = 50.0                                   # the second half holds two sources
    data = {"az": az, "scene": np.arange(n)}
    kept = keep_blocks(data, 0.6)
    single = np.isnan(kept["az"][:, 1])
    assert single.sum() == n // 2 and kept["scene"][single].tolist() == list(range(n // 2))
    assert 0.55 < (~single).sum() / (n // 2) < 0.65
    assert keep_blocks(data, 1.0) is data


def test_train_from_universal_fine_tunes_and_reports_the_check(tmp_path, capsys):
    from doascope.app.cli.main import main

    w = tmp_path / "ft.pt"
    assert main(["train", "--profile", "respeaker_usb_v2", "--from", "universal", "--scenes", "3", "--epochs", "1",
                 "--duration", "1", "--val-scenes", "1", "--jobs", "1", "--out", str(w),
                 "--cache", str(tmp_path / "cache")]) == 0
    err = capsys.readouterr().err
    assert f"wrote {w}" in err
    line = next(x for x in err.splitlines() if x.startswith("validation:"))
    assert "srp-phat" in line and "%" in line
    assert main(["train", "--profile", "respeaker_usb_v2", "--from", "universal", "--universal"]) == 2
    assert "use one of them" in capsys.readouterr().err
    assert main(["train", "--from", "universal"]) == 2
    assert "give --profile" in capsys.readouterr().err


def test_a_per_array_file_is_not_a_universal_start(tmp_path, capsys):
    from doascope.app.cli.main import main
    from doascope.models.dnn import WEIGHTS_DIR

    assert main(["train", "--profile", "respeaker_usb_v2", "--from", str(WEIGHTS_DIR / "respeaker_usb_v2.pt")]) == 2
    assert "holds a per-array one" in capsys.readouterr().err


def test_pairs_longer_than_the_lag_axis_are_refused_in_one_sentence():
    far = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.3, 0.0]])
    with pytest.raises(ParameterError, match="longest pair is 58 cm"):
        make_estimator("dnn", far, fs=16000, nfft=512)


def test_frame_votes_are_each_frames_own_network_maximum_and_tell_two_talkers_apart():
    """Each frame's vote is the maximum of the network's spectrum of that frame alone; two talkers
    that take turns within a block (each dominating its own frames, as speech does) 50 degrees apart
    are both found (the block's averaged spectrum alone blurs them: its two peaks land 20-30 degrees off)."""
    from doascope.dsp import Localizer

    est = make_estimator("dnn", ODD, fs=16000, nfft=512, grid=circle_grid(1.0), n_sources=2)
    X = _block(ODD, 16000, 512, 100.0, seed=3)
    points, values = est.frame_peaks(X)
    for k in (0, 5):
        s = est.spectrum(X[:, :, k:k + 1])
        assert points[k] == np.argmax(s) and values[k] == pytest.approx(float(s.max()), rel=1e-4)
    a = plane_wave(ODD, 16000, azimuth=40.0, seconds=0.6, seed=4)
    b = plane_wave(ODD, 16000, azimuth=90.0, seconds=0.6, seed=5)
    turns = np.concatenate([np.concatenate([a[i:i + 1024], b[i:i + 1024]]) for i in range(0, 8192, 1024)])
    loc = Localizer(est, hop=256, n_sources=2, frames_per_block=8)
    found = [sorted(p.azimuth for p in r.peaks) for r in loc.locate(turns, 16000)][-1]
    assert len(found) == 2
    assert azimuth_error(found[0], 40.0) <= 10 and azimuth_error(found[1], 90.0) <= 10


@pytest.mark.parametrize("layout", [None, DEEPER])
@pytest.mark.parametrize("positions", [ODD, 0.15 * ODD / np.abs(ODD).max()])
def test_the_estimator_gives_the_training_forward_on_the_whole_lag_axis(positions, layout, tmp_path):
    """The estimator runs the network on the lags its pairs can read (plus the convolutions' reach)
    and reads them with a sparse product; training's forward takes the whole lag axis and gathers:
    the same spectrum, for single frames (the votes) and blocks alike, for the shipped network and
    a deeper layout."""
    from doascope.models.universal import OUTPUT_POWER

    opts = {} if layout is None else {"weights": _random_universal(tmp_path / "deeper.pt", layout)}
    est = make_estimator("dnn", positions, fs=16000, nfft=512, grid=circle_grid(3.0), n_sources=2, **opts)
    X = _block(positions, 16000, 512, 70.0, seed=6)
    f = est.features
    Y = X[:, est.bins, :] / np.abs(X[:, est.bins, :])
    C = np.concatenate([est.statistics(X)[None],
                        (Y[f.pairs[:, 0]] * np.conj(Y[f.pairs[:, 1]])).transpose(2, 0, 1)[:3]])   # (4, P, B)
    lo, frac = f.sampling(est.grid.vectors)
    n, p = C.shape[:2]
    with torch.inference_mode():
        ref = torch.sigmoid(est.model(torch.from_numpy(f.features(C)), torch.from_numpy(f.geometry())[None].expand(n, -1, -1, -1),
                                      torch.from_numpy(lo)[None].expand(n, -1, -1), torch.from_numpy(frac)[None].expand(n, -1, -1),
                                      torch.ones(n, p))).numpy() ** OUTPUT_POWER
    np.testing.assert_allclose(est.spectra(C), ref, atol=2e-5)
    np.testing.assert_allclose(est.spectrum(X), ref[0], atol=2e-5)


def test_a_wider_deeper_network_grown_from_the_shipped_one_starts_with_its_output(tmp_path):
    """train_universal with ``init`` of a smaller layout grows it (grow_into): the same spectrum at
    the start, whatever channels, layers and context are added; other sub-bands, or a context it
    would lose, are refused."""
    from doascope.models.universal import UNIVERSAL_WEIGHTS, build_network, full_arch, grow_into, network_from
    from doascope.models.weight_files import load_weights

    meta, state = load_weights(UNIVERSAL_WEIGHTS)
    small = network_from(meta, state)
    gen = torch.Generator().manual_seed(0)
    n, p, L, G = 2, 6, 69, 40
    r, geo = torch.randn(n, p, 6, L, generator=gen), torch.rand(n, p, 2, L, generator=gen)
    lo, frac = torch.randint(0, L - 1, (n, p, G), generator=gen), torch.rand(n, p, G, generator=gen)
    mask = torch.ones(n, p)
    with torch.inference_mode():
        ref = small(r, geo, lo, frac, mask)
    for layout in ({**DEEPER, "hidden": 20, "width": 18, "head": 40, "n_bands": 6},
                   {"hidden": 24, "width": 20, "head": 48}):
        big = build_network(**full_arch(layout))
        grow_into(big, meta, state)
        with torch.inference_mode():
            torch.testing.assert_close(big.eval()(r, geo, lo, frac, mask), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ParameterError, match="same sub-bands"):
        grow_into(build_network(**full_arch(DEEPER)), meta, state)
    meta2, state2 = load_weights(_random_universal(tmp_path / "mean.pt", {**DEEPER, "n_bands": 6}))
    with pytest.raises(ParameterError, match="context"):
        grow_into(build_network(**full_arch({"hidden": 32, "width": 32, "head": 64, "layers": 3})), meta2, state2)
