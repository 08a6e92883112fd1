"""Panel B of the meta-learning tab: few-shot calibration of the DOA network to perturbed arrays.
It opens on the shipped result; "Run experiment" simulates, trains and evaluates live, as a
:class:`~doascope.app.gui.jobs.Job` (torch and pyroomacoustics are imported by the job).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from doascope.app.gui.jobs import Job, JobHandle, ShippedResultPanel
from PySide6 import QtCore, QtWidgets

SHIPPED_CALIBRATION = Path(__file__).resolve().parents[3] / "models" / "weights" / "meta_calibration.json"
CAL_METHODS = ("none", "pretrained", "maml", "reptile", "srp", "srp_offset")
CAL_LABELS = {"none": "no adaptation", "pretrained": "fine-tuned (joint)", "maml": "MAML", "reptile": "Reptile",
              "srp": "SRP-PHAT (nominal)", "srp_offset": "SRP-PHAT + offset from K"}
CAL_COLOURS = {"maml": "#e6194b", "reptile": "#3cb44b", "pretrained": "#4363d8", "none": "#a0a0a0",
               "srp": "#e8eaed", "srp_offset": "#f58231"}


def honest_calibration_text(results: dict) -> str:
    """What the measured numbers say: where meta-learning helps here and where it does not."""
    s = results["summary"]
    ks = list(results["curves"])
    k = "5" if "5" in ks else ks[len(ks) // 2]

    def pct(m, kk=k):
        return f"{s[m]['acc10'][kk]:.0%}"

    lines = [(f"<b>Measured</b> (held-out simulated arrays, K = {k}, accuracy within 10°): no adaptation "
              f"{pct('none')}, fine-tuned {pct('pretrained')}, MAML {pct('maml')}, Reptile {pct('reptile')}, "
              f"SRP-PHAT {pct('srp')}, SRP-PHAT + offset {pct('srp_offset')}.")]
    best_meta = max(s["maml"]["acc10"][k], s["reptile"]["acc10"][k])
    if best_meta > s["pretrained"]["acc10"][k]:
        lines.append(f"<b>Helps:</b> starting from the meta-learned weights, K = {k} labelled blocks recover more "
                     f"than fine-tuning the jointly pre-trained network ({best_meta:.0%} vs {pct('pretrained')}), "
                     f"and far more than the same network without adaptation ({pct('none')}).")
    else:
        lines.append(f"<b>Does not help here:</b> fine-tuning the jointly pre-trained network does as well as "
                     f"MAML/Reptile at K = {k}.")
    if s["srp_offset"]["acc10"][k] >= best_meta - 0.03:
        lines.append(f"<b>Does not beat the classical fix:</b> SRP-PHAT with a rotation offset fitted from the same "
                     f"K labels reaches {pct('srp_offset')}: the rotation offset is most of the perturbation and one "
                     f"number corrects it. Meta-learning earns its keep only where the network itself is wanted.")
    steps = np.asarray(results["curves"][k]["maml"]["acc10"])
    best = int(np.argmax(steps))
    if steps[best] - steps[-1] > 0.03:
        lines.append(f"<b>More steps overfit:</b> at K = {k} MAML is best after {best} step{'s' if best != 1 else ''} "
                     f"({steps[best]:.0%}) and drifts to {steps[-1]:.0%} after {len(steps) - 1}, the number in the "
                     "table: the K blocks are few and all from one room.")
    k1 = ks[0]
    if s["maml"]["mae"][k1] > s["none"]["mae"][k1]:
        lines.append(f"<b>Few shots can hurt:</b> with K = {k1} the adapted networks' mean error "
                     f"({s['maml']['mae'][k1]:.0f}° for MAML) is worse than no adaptation "
                     f"({s['none']['mae'][k1]:.0f}°): one block overfits a single direction.")
    kl = ks[-1]
    n_test = len(results.get("test_perturbations", [])) or "a few"
    lines.append(f"With K = {kl}: fine-tuning {pct('pretrained', kl)}, MAML {pct('maml', kl)}, SRP-PHAT + offset "
                 f"{pct('srp_offset', kl)}; the gap to plain fine-tuning shrinks as labels grow. Scored on {n_test} "
                 "held-out arrays: differences of a few points are noise. All of this is simulated rooms and "
                 "perturbations; a real array adds mismatch the simulator does not model.")
    return "<br>".join(lines)


def _work(job: JobHandle, *, config=None, path=None, threads: int = 1, cache_dir=None) -> None:
    """Run the calibration experiment (``path`` None) or load a results file."""
    from doascope.models import meta_calibration as mc

    if path is not None:
        job.publish(results=mc.load_results(path))
        return
    import torch

    torch.set_num_threads(threads)
    cfg = config or mc.CalibConfig()
    n_sim = cfg.train_tasks + cfg.test_tasks
    offsets = {"simulating": 0, "maml": n_sim, "reptile": n_sim + cfg.iterations,
               "pretrained": n_sim + 2 * cfg.iterations}

    def progress(what, it, total):
        if it % 20 == 0 or it == total:
            job.publish(phase=what, done=offsets[what] + it)

    results, _ = mc.run_experiment(cfg, cache_dir=cache_dir, progress=progress, stop=job.stopped)
    if not job.stopped():
        job.publish(results=results)


class CalibrationPanel(ShippedResultPanel):
    """Panel B: few-shot calibration of the DOA network to perturbed arrays."""

    def __init__(self, context, *, shipped: Path | None = SHIPPED_CALIBRATION):
        self.results: dict | None = None
        super().__init__(context, shipped)

    def _build(self) -> None:
        W = QtWidgets
        side = W.QWidget()
        form = W.QFormLayout(side)
        intro = W.QLabel(
            "Few-shot calibration: every task is a simulated room recorded by a ReSpeaker USB v2 whose real "
            "geometry is off (rotation ±30°, spacing ×0.85–1.15, ~3 mm per-mic errors) while the DOA network "
            "assumes the nominal one. A small GCC-PHAT network is meta-trained across tasks (MAML, Reptile) or "
            "jointly pre-trained; on a new array, K labelled blocks of a talker adapt it by SGD.")
        intro.setWordWrap(True)
        form.addRow(intro)
        self.tasks = W.QSpinBox()
        self.tasks.setRange(2, 500)
        self.tasks.setValue(48)
        form.addRow("Training arrays", self.tasks)
        self.iterations = W.QSpinBox()
        self.iterations.setRange(1, 100_000)
        self.iterations.setValue(1500)
        self.iterations.setToolTip("meta-iterations per method; the default takes about three minutes on two cores")
        form.addRow("Iterations", self.iterations)
        self.run_button = W.QPushButton("Run experiment")
        self.run_button.setCheckable(True)
        self.run_button.clicked.connect(lambda checked: self.start() if checked else self.stop())
        form.addRow(self.run_button)
        self.load_button = W.QPushButton("Show shipped result")
        self.load_button.setToolTip(f"{SHIPPED_CALIBRATION.name}, made by `doascope meta calibration`")
        self.load_button.setEnabled(SHIPPED_CALIBRATION.is_file())
        self.load_button.clicked.connect(lambda: self.load(SHIPPED_CALIBRATION))
        form.addRow(self.load_button)
        self.progress = W.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        form.addRow("Progress", self.progress)
        self.phase_label = W.QLabel("not run")
        form.addRow(self.phase_label)
        self.table = W.QLabel("")
        self.table.setTextFormat(QtCore.Qt.RichText)
        form.addRow(self.table)
        self.note = W.QLabel("")
        self.note.setWordWrap(True)
        self.note.setTextFormat(QtCore.Qt.RichText)
        form.addRow(self.note)
        self.message = W.QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #ff6b6b")
        form.addRow(self.message)

        def plot(title, bottom, left):
            p = pg.PlotWidget(title=title)
            p.setLabel("bottom", bottom)
            p.setLabel("left", left)
            for axis in ("left", "bottom"):
                p.getAxis(axis).enableAutoSIPrefix(False)
            p.addLegend(offset=(5, 5))
            return p

        def curves(p):
            return {m: p.plot(pen=pg.mkPen(CAL_COLOURS[m], width=2,
                                           style=QtCore.Qt.DashLine if m in ("none", "srp", "srp_offset")
                                           else QtCore.Qt.SolidLine),
                              symbol="o", symbolSize=6, symbolBrush=CAL_COLOURS[m], name=CAL_LABELS[m])
                    for m in CAL_METHODS}

        self.acc_plot = plot("accuracy within 10° vs K", "K labelled blocks", "share")
        self.mae_plot = plot("mean absolute error vs K", "K labelled blocks", "degrees")
        self.steps_plot = plot("accuracy vs SGD steps (K = 5)", "steps", "share")
        self.acc_curves, self.mae_curves, self.steps_curves = (curves(self.acc_plot), curves(self.mae_plot),
                                                               curves(self.steps_plot))
        top = W.QSplitter(QtCore.Qt.Horizontal)
        top.addWidget(self.acc_plot)
        top.addWidget(self.mae_plot)
        right = W.QSplitter(QtCore.Qt.Vertical)
        right.addWidget(top)
        right.addWidget(self.steps_plot)
        scroll = W.QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(300)
        layout = W.QHBoxLayout(self.widget)
        layout.addWidget(scroll)
        layout.addWidget(right, 1)

    def _launch(self, work, what: str) -> None:
        self.stop()
        self.message.setText("")
        self.job = Job(work, on_update=self._show, on_finished=self._finished, what=what, interval_ms=200,
                       parent=self.widget).start()

    def start(self, *, config=None, threads: int = 1, cache_dir=None) -> None:
        """Simulate (or load cached features), train and evaluate in the background."""
        if config is None:
            from doascope.models.meta_calibration import CalibConfig

            config = CalibConfig(train_tasks=self.tasks.value(), iterations=self.iterations.value())
        self.loading = False
        self._launch(lambda h: _work(h, config=config, threads=threads, cache_dir=cache_dir),
                     "calibration experiment")
        self.progress.setRange(0, config.train_tasks + config.test_tasks + 3 * config.iterations)
        self.progress.setValue(0)
        self.run_button.setChecked(True)
        self.run_button.setText("Stop")
        self.context.status("Calibration: simulating arrays and training (a few minutes)")

    def load(self, path) -> None:
        self.loading = True
        self._launch(lambda h: _work(h, path=Path(path)), "loading the calibration result")
        self.progress.setRange(0, 0)
        self.phase_label.setText(f"loading {Path(path).name}…")

    def stop(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.stop(timeout=0 if self.loading else 10)  # a load cannot be interrupted: drop it unseen
        self.run_button.setChecked(False)
        self.run_button.setText("Run experiment")

    def shutdown(self) -> None:
        self.stop()

    def show(self, results: dict) -> None:
        self.results = results
        self._shown = True
        ks = [int(k) for k in results["curves"]]
        s = results["summary"]
        for m in CAL_METHODS:
            if m not in s:
                continue
            self.acc_curves[m].setData(ks, [s[m]["acc10"][str(k)] for k in ks])
            self.mae_curves[m].setData(ks, [s[m]["mae"][str(k)] for k in ks])
        k = "5" if "5" in results["curves"] else str(ks[-1])
        self.steps_plot.setTitle(f"accuracy vs SGD steps (K = {k})")
        for m in CAL_METHODS:
            y = np.asarray(results["curves"][k][m]["acc10"])
            self.steps_curves[m].setData(np.arange(len(y)), y)
        head = "".join(f"<td>K={k}</td>" for k in ks)
        rows = "".join(f"<tr><td>{CAL_LABELS[m]}</td>" + "".join(
            f"<td>{s[m]['acc10'][str(k)]:.0%} / {s[m]['mae'][str(k)]:.0f}°</td>" for k in ks) + "</tr>"
            for m in CAL_METHODS)
        self.table.setText("<b>held-out arrays</b>: within 10° / MAE<table cellspacing=4><tr><td></td>"
                           f"{head}</tr>{rows}</table>")
        self.note.setText(honest_calibration_text(results))

    def _show(self, v: dict) -> None:
        if "done" in v and not self.loading:
            self.progress.setValue(v["done"])
            phase = v.get("phase", "")
            self.phase_label.setText(f"{CAL_LABELS.get(phase, phase)}: {v['done']} / {self.progress.maximum()}")
        results = v.get("results")
        if results is not None and results is not self.results:
            self.show(results)

    def _finished(self, error: str | None) -> None:
        loaded = self.loading
        self.job = None
        self.run_button.setChecked(False)
        self.run_button.setText("Run experiment")
        self.progress.setRange(0, 1)
        if error:
            self.message.setText(error)
            self.context.status(error, error=True)
            return
        self.progress.setValue(1)
        self.phase_label.setText("showing the shipped result (`doascope meta calibration`)" if loaded else "done")
