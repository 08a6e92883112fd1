"""Meta-learning: MAML, Reptile and joint pre-training on sinusoid tasks; the headless command; the tab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from doascope.models import meta
from doascope.models import meta_sinusoid as ms


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return ms.train_all(iterations=700, seed=0, methods=("maml", "pretrained"))


def test_maml_after_one_step_beats_joint_pretraining_after_one_step(trained):
    tasks, _ = ms.held_out_tasks(7, 40)
    curves = {m: meta.adaptation_curve(model, tasks, steps=1, lr=ms.INNER_LR) for m, model in trained.models.items()}
    maml, pre = curves["maml"][:, 1], curves["pretrained"][:, 1]
    assert maml.mean() < 0.8 * pre.mean(), (maml.mean(), pre.mean())
    assert np.mean(maml < pre) > 0.6  # on most tasks, not only on average
    # MAML's initialisation is built to move: one step gains far more than it does for the pre-trained net
    assert (curves["maml"][:, 0] - maml).mean() > (curves["pretrained"][:, 0] - pre).mean()


def test_adapt_matches_a_hand_written_sgd_step():
    torch.manual_seed(0)
    model = ms.build_mlp()
    x, y = torch.randn(10, 1), torch.randn(10, 1)
    params = meta.adapt(model, x, y, steps=1, lr=0.1)
    ref = ms.build_mlp()
    ref.load_state_dict(model.state_dict())
    loss = torch.mean((ref(x) - y) ** 2)
    loss.backward()
    for name, p in ref.named_parameters():
        assert torch.allclose(params[name], p.detach() - 0.1 * p.grad, atol=1e-6)
    for name, p in model.named_parameters():  # the model itself is untouched
        assert torch.equal(p, ref.get_parameter(name).detach())


def test_vectorized_and_looped_maml_agree_and_second_order_differs():
    sampler = ms.SinusoidTasks()
    out = {}
    for key, first_order, vectorize in (("fo-vmap", True, True), ("fo-loop", True, False), ("so-vmap", False, True)):
        torch.manual_seed(1)
        model = ms.build_mlp()
        s = meta.MetaSettings(iterations=3, meta_batch=4, first_order=first_order, vectorize=vectorize, seed=3,
                              inner_lr=0.1)
        meta.train_maml(model, sampler, s)
        out[key] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(out["fo-vmap"], out["fo-loop"], atol=1e-5)
    assert not torch.allclose(out["fo-vmap"], out["so-vmap"], atol=1e-7)


def test_reptile_moves_towards_adapted_weights_and_learns():
    torch.manual_seed(2)
    model = ms.build_mlp()
    before = meta.adaptation_curve(model, ms.held_out_tasks(0, 20)[0], steps=10, lr=ms.INNER_LR)
    s = ms.default_settings(300, 0)["reptile"]
    losses = meta.train_reptile(model, ms.SinusoidTasks(), s)
    after = meta.adaptation_curve(model, ms.held_out_tasks(0, 20)[0], steps=10, lr=ms.INNER_LR)
    assert len(losses) == 300 and np.all(np.isfinite(losses))
    assert after[:, 10].mean() < before[:, 10].mean()


def test_checkpoint_round_trip(tmp_path, trained):
    size = ms.save_checkpoint(tmp_path / "m.pt", trained)
    assert size < 1_000_000
    back = ms.load_checkpoint(tmp_path / "m.pt")
    x = torch.linspace(-5, 5, 7)[:, None]
    for m in trained.models:
        assert torch.allclose(back.models[m](x), trained.models[m](x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ms.ParameterError, match="not a doascope"):
        ms.load_checkpoint(tmp_path / "bad.pt")


def test_shipped_checkpoint_shows_maml_and_reptile_ahead_after_one_step():
    if not ms.SHIPPED_CHECKPOINT.is_file():
        pytest.skip("no shipped sinusoid checkpoint")
    assert ms.SHIPPED_CHECKPOINT.stat().st_size < 1_000_000
    run = ms.load_checkpoint(ms.SHIPPED_CHECKPOINT)
    res = ms.evaluate(run.models, n_tasks=50, seed=11)
    assert res["maml"]["mse"][1] < res["pretrained"]["mse"][1]
    assert res["reptile"]["mse"][10] < res["pretrained"]["mse"][10]


def test_headless_sinusoid_writes_figures_and_results(tmp_path):
    import argparse

    from doascope.app.cli import meta as meta_cli

    parser = argparse.ArgumentParser()
    meta_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["meta", "sinusoid", "--out", str(tmp_path / "run"), "--steps", "40", "--threads", "1",
                              "--quiet"])
    assert meta_cli.cmd_meta(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for m in ("maml", "reptile", "pretrained"):
        for s in (1, 10):
            assert np.isfinite(results[f"{m}_mse"][str(s)])
        assert len(results["curves"][m]["mse"]) == ms.EVAL_STEPS + 1
    for name in ("predictions.png", "mse_vs_steps.png", "meta_training.png", "model.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 1000


def test_the_tab_module_does_not_import_torch():
    code = "import sys, doascope.app.gui.tabs.meta as m; assert m.MetaTab.unavailable() is None; " \
           "assert 'torch' not in sys.modules, 'torch imported'"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    run = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr


def test_tab_trains_offscreen_and_shows_data(qtbot):
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from doascope.app.gui.tabs.meta import MetaTab

    messages = []
    tab = MetaTab(SimpleNamespace(args=None, status=lambda text, error=False: messages.append((text, error))),
                  shipped=False)
    qtbot.addWidget(tab.widget)
    tab.widget.show()
    panel = tab.sinusoid
    panel.iterations.setValue(30)
    panel.start(threads=1)
    try:
        qtbot.waitUntil(lambda: panel.worker is None, timeout=180000)
    finally:
        tab.shutdown()
    assert panel.message.text() == "", panel.message.text()
    assert panel.progress.value() == panel.progress.maximum()
    x, y = panel.true_curve.getData()
    assert len(x) > 50 and np.all(np.isfinite(y))
    assert len(panel.support_points.getData()[0]) == ms.K_SHOT
    for m in ms.METHODS:
        for s in (0, 1, 10):
            assert np.all(np.isfinite(panel.prediction_curves[m][s].getData()[1]))
        assert len(panel.mse_curves[m].getData()[0]) == ms.EVAL_STEPS + 1
        assert len(panel.loss_curves[m].getData()[0]) > 0
    panel.new_task()
    assert len(panel.support_points.getData()[0]) == ms.K_SHOT


def test_tab_opens_on_the_shipped_results(qtbot):
    """Both panels draw their shipped result on opening, with no click."""
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    if not ms.SHIPPED_CHECKPOINT.is_file():
        pytest.skip("no shipped sinusoid checkpoint")
    from doascope.app.gui.tabs.meta import CAL_METHODS, SHIPPED, SHIPPED_CALIBRATION, MetaTab
    from doascope.models import meta_calibration as mc

    assert SHIPPED == ms.SHIPPED_CHECKPOINT and SHIPPED_CALIBRATION == mc.SHIPPED_RESULTS
    tab = MetaTab(SimpleNamespace(args=None, status=lambda text, error=False: None))
    qtbot.addWidget(tab.widget)
    panel, cal = tab.sinusoid, tab.calibration
    tab.activate()  # what the window does when the tab is first shown
    try:
        qtbot.waitUntil(lambda: panel.worker is None and cal.worker is None, timeout=180000)
    finally:
        tab.shutdown()
    assert panel.message.text() == "" and cal.message.text() == ""
    mse = {m: panel.mse_curves[m].getData()[1] for m in ms.METHODS}
    assert mse["maml"][1] < mse["pretrained"][1]
    assert "held-out MSE" in panel.table.text()
    assert len(panel.true_curve.getData()[0]) > 50 and len(panel.loss_curves["maml"].getData()[0]) > 10
    for m in CAL_METHODS:
        assert len(cal.mae_curves[m].getData()[0]) == 3
        assert len(cal.steps_curves[m].getData()[0]) > 1
    assert "Measured" in cal.note.text() and "MAML" in cal.table.text()


def test_time_left_follows_the_pace_so_far():
    # MAML half done after 10 s: the rest of MAML, then Reptile and pre-training at their relative cost
    c = ms.RELATIVE_COST
    left = ms.seconds_left("maml", 50, 100, 10.0)
    assert left == pytest.approx(10.0 / (0.5 * c["maml"]) * (0.5 * c["maml"] + c["reptile"] + c["pretrained"]))
    assert ms.seconds_left("pretrained", 100, 100, 30.0) == pytest.approx(0.0)
    assert ms.seconds_left("maml", 0, 100, 0.0) is None and ms.seconds_left("maml", 1, 10000, 0.5) is None


# -- Panel B: few-shot array calibration ----------------------------------------------------------

@pytest.fixture(scope="module")
def calibration_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("meta_calibration_cache")


@pytest.fixture(scope="module")
def calibration(calibration_cache):
    from doascope.models import meta_calibration as mc

    torch.set_num_threads(1)
    cfg = mc.tiny_config(seed=0, min_rotation=10.0)  # clearly perturbed arrays
    train_tasks, test_tasks = mc.make_tasks(cfg, calibration_cache)
    run = mc.train_all(cfg, train_tasks, methods=("maml", "pretrained"))
    return cfg, test_tasks, mc.evaluate(cfg, run.models, test_tasks)


def test_calibration_tasks_are_perturbed_arrays_and_cached(calibration, calibration_cache):
    from doascope.models import meta_calibration as mc

    cfg, test_tasks, _ = calibration
    rotations = [t["perturbation"]["rotation_deg"] for t in test_tasks]
    assert all(cfg.min_rotation <= abs(r) <= cfg.max_rotation for r in rotations)
    assert all(cfg.scale[0] <= t["perturbation"]["scale"] <= cfg.scale[1] for t in test_tasks)
    assert len(list(calibration_cache.glob("task-*.npz"))) == cfg.train_tasks + cfg.test_tasks
    again = mc.simulate_task(cfg, cfg.train_tasks, calibration_cache)  # from the cache
    assert np.allclose(again["x"], test_tasks[0]["x"], atol=1e-3) and np.array_equal(again["az"], test_tasks[0]["az"])


def test_calibration_maml_with_k5_beats_no_adaptation(calibration):
    _, _, curves = calibration
    k5 = curves["5"]
    none = k5["none"]["acc10"][0]
    maml = np.asarray(k5["maml"]["acc10"])
    assert maml[-1] > none + 0.05, (maml, none)
    assert maml[1:].mean() > none, (maml, none)
    for m in ("srp", "srp_offset", "pretrained"):
        assert all(np.isfinite(k5[m]["acc10"])) and all(np.isfinite(k5[m]["mae"]))


def test_headless_calibration_writes_figures_and_results(tmp_path, calibration_cache):
    import argparse

    from doascope.app.cli import meta as meta_cli

    parser = argparse.ArgumentParser()
    meta_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["meta", "calibration", "--out", str(tmp_path / "cal"), "--tasks", "4", "--test-tasks",
                              "2", "--iterations", "5", "--threads", "1", "--quiet", "--cache",
                              str(calibration_cache)])
    assert meta_cli.cmd_meta(args) == 0
    res = json.loads((tmp_path / "cal" / "results.json").read_text())
    for m in ("none", "pretrained", "maml", "reptile", "srp", "srp_offset"):
        for k in ("1", "5", "10"):
            assert 0 <= res["summary"][m]["acc10"][k] <= 1 and np.isfinite(res["summary"][m]["mae"][k])
    for name in ("accuracy_vs_k.png", "mae_vs_k.png", "vs_steps.png"):
        assert (tmp_path / "cal" / name).stat().st_size > 1000


def test_calibrate_writes_weights_that_the_dnn_method_uses(tmp_path, capsys):
    import soundfile as sf
    from doascope.app.cli.main import main
    from doascope.sim.scenes import SourceSpec, simulate_scene
    from doascope.hardware_profiles import load_profile
    from doascope.models.dnn import load_weights
    from doascope.models.meta_calibration import _rot

    prof = load_profile("respeaker_usb_v2")
    real = (prof.positions * 1.08) @ _rot(25.0).T  # the user's array: turned 25 degrees, 8 % wider
    seg = 1.5

    def recording(path, az, seed):
        sources = [SourceSpec(a, distance=1.5, start=i * seg, stop=(i + 1) * seg) for i, a in enumerate(az)]
        scene = simulate_scene(real, 16000, sources, duration=seg * len(az), rt60=0.3, snr_db=25, seed=seed)
        sf.write(path, scene.audio, 16000)
        return str(path)

    labelled = [20.0, 75.0, 160.0, 250.0]
    wav, csv = recording(tmp_path / "cal.wav", labelled, 3), tmp_path / "labels.csv"
    csv.write_text("start_s,end_s,azimuth_deg\n" + "".join(f"{i * seg + 0.1},{(i + 1) * seg - 0.1},{a}\n"
                                                           for i, a in enumerate(labelled)))
    out = tmp_path / "cal.pt"
    assert main(["calibrate", "--profile", "respeaker_usb_v2", "--file", wav, "--labels", str(csv),
                 "--out", str(out), "--threads", "1"]) == 0
    assert "--weights" in capsys.readouterr().out
    meta_, _ = load_weights(out)
    assert np.allclose(meta_["positions"], prof.positions) and meta_["calibration"]["blocks"] > 20

    def median_error(path, az, extra):
        o = tmp_path / "o.jsonl"
        assert main(["locate", path, "--profile", "respeaker_usb_v2", "--method", "dnn", "-o", str(o)] + extra) == 0
        errs = []
        for line in o.read_text().splitlines():
            r = json.loads(line)
            i = int(r["t"] // seg)
            if r["sources"] and i < len(az):
                errs.append(abs((r["sources"][0]["azimuth"] - az[i] + 180) % 360 - 180))
        assert errs
        return float(np.median(errs))

    before, after = median_error(wav, labelled, []), median_error(wav, labelled, ["--weights", str(out)])
    assert before > 10 and after < 0.5 * before, (before, after)
    # a fresh recording from directions between the labelled ones: better, though not fully calibrated
    fresh = [0.0, 85.0, 175.0, 265.0]
    path = recording(tmp_path / "fresh.wav", fresh, 9)
    before, after = median_error(path, fresh, []), median_error(path, fresh, ["--weights", str(out)])
    assert before > 15 and after < 0.75 * before, (before, after)


def test_calibrate_rejects_bad_labels(tmp_path):
    from doascope.app.cli.meta import read_labels
    from doascope.models.meta_calibration import ParameterError

    (tmp_path / "a.csv").write_text("start_s,end_s,azimuth_deg\n1.0,0.5,30\n")
    with pytest.raises(ParameterError, match="start_s < end_s"):
        read_labels(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("# nothing\n")
    with pytest.raises(ParameterError, match="no labelled segments"):
        read_labels(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("0,1,-30\n")
    assert read_labels(tmp_path / "c.csv") == [(0.0, 1.0, 330.0)]


def test_calibration_panel_runs_and_shows_data(qtbot, calibration_cache):
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    from doascope.app.gui.tabs.meta import CAL_METHODS, MetaTab
    from doascope.models import meta_calibration as mc

    tab = MetaTab(SimpleNamespace(args=None, status=lambda text, error=False: None), shipped=False)
    qtbot.addWidget(tab.widget)
    tab.widget.show()
    panel = tab.calibration
    assert tab.panels.count() == 2
    try:
        panel.start(config=mc.tiny_config(train_tasks=4, test_tasks=2, iterations=5), threads=1,
                    cache_dir=calibration_cache)
        qtbot.waitUntil(lambda: panel.worker is None, timeout=180000)
        assert panel.message.text() == "", panel.message.text()
        for m in CAL_METHODS:
            x, y = panel.acc_curves[m].getData()
            assert list(x) == [1, 5] and np.all(np.isfinite(y))
    finally:
        tab.shutdown()
