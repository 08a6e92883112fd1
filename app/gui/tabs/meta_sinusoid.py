"""Panel A of the meta-learning tab: MAML, Reptile and joint pre-training on few-shot sinusoid
regression. It opens on the shipped result (drawn as soon as it is read); "Meta-train" trains
the three networks live, with progress and the time left. Background work runs as a
:class:`~doascope.app.gui.jobs.Job`; torch is imported by the job, never when this module is.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from doascope.app.gui.jobs import Job, JobHandle, ShippedResultPanel
from doascope.models.meta_config import SINUSOID_ITERATIONS
from PySide6 import QtCore, QtWidgets

METHODS = ("maml", "reptile", "pretrained")
LABELS = {"maml": "MAML", "reptile": "Reptile", "pretrained": "pre-trained (joint)"}
COLOURS = {"maml": "#e6194b", "reptile": "#3cb44b", "pretrained": "#4363d8"}
STEP_STYLES = {0: QtCore.Qt.DotLine, 1: QtCore.Qt.DashLine, 10: QtCore.Qt.SolidLine}
SHIPPED = Path(__file__).resolve().parents[3] / "models" / "weights" / "meta_sinusoid.pt"
N_EVAL_TASKS = 100

HONEST_NOTE = (
    "<b>What to expect.</b> With K = 10 points and one SGD step, MAML's initialisation moves straight to "
    "the right sinusoid: it was trained for exactly that. Reptile gets there in a few more steps. The "
    "jointly pre-trained network learned the average task (a weak sinusoid: phases in [0, π] only "
    "partly cancel): one small step barely changes it, and even ten steps leave it far behind. "
    "<b>Where meta-learning does not help:</b> with many examples or many steps, plain fine-tuning "
    "catches up; on a task outside the training family (say amplitude 10, or a square wave), the "
    "meta-learned prior is wrong and a few shots cannot fix it; and the gain is bought with "
    "task-structured training data and several times the training cost.")


def _work(job: JobHandle, *, iterations: int, seed: int, threads: int, path: Path | None,
          n_eval_tasks: int = N_EVAL_TASKS) -> None:
    """Meta-train (``path`` None) or load a checkpoint, then evaluate on held-out tasks."""
    import torch
    from doascope.models import meta_sinusoid as ms

    torch.set_num_threads(threads)
    if path is not None:
        run = ms.load_checkpoint(path)
        # checkpoints keep the running mean of every 10th iteration (meta_sinusoid.save_checkpoint)
        job.publish(losses={m: list(v) for m, v in run.losses.items()}, smoothed=True, stride=10)
    else:
        losses: dict[str, list[float]] = {m: [] for m in METHODS}
        start = time.perf_counter()
        last = [0.0]

        def progress(method, it, total, loss):
            losses[method].append(loss)
            now = time.perf_counter()
            if now - last[0] > 0.25 or it == total:
                last[0] = now
                done = METHODS.index(method) * iterations + it
                job.publish(losses={m: list(v) for m, v in losses.items()}, method=method, done=done,
                            total=iterations * len(METHODS),
                            left=ms.seconds_left(method, it, iterations, now - start))

        run = ms.train_all(iterations=iterations, seed=seed, progress=progress, stop=job.stopped)
        if job.stopped() and len(run.models) < len(METHODS):
            return
    curves = ms.evaluate(run.models, n_tasks=n_eval_tasks, seed=seed)
    job.publish(models=run.models, curves=curves, seconds=dict(run.seconds))


class SinusoidPanel(ShippedResultPanel):
    """Panel A: controls, the three methods' predictions on a held-out task, MSE and loss curves."""

    def __init__(self, context, *, shipped: Path | None = SHIPPED):
        self.models: dict | None = None
        self.task_index = 0
        super().__init__(context, shipped)

    def _build(self) -> None:
        W = QtWidgets
        side = W.QWidget()
        form = W.QFormLayout(side)
        intro = W.QLabel(
            "Learning to learn (Finn et al. 2017): every task is a sinusoid A·sin(x − φ), A in [0.1, 5], "
            "φ in [0, π], x in [−5, 5]. A learner sees K = 10 points of a new task and takes SGD steps of "
            "0.01 on an MLP 1-40-40-1. MAML and Reptile meta-train the starting weights across tasks; "
            "the baseline pre-trains one network on all tasks pooled.")
        intro.setWordWrap(True)
        form.addRow(intro)
        self.iterations = W.QSpinBox()
        self.iterations.setRange(10, 200_000)
        self.iterations.setSingleStep(1000)
        self.iterations.setValue(SINUSOID_ITERATIONS)
        self.iterations.setToolTip("meta-iterations per method; 10000 take about a minute of one idle core, "
                                   "longer while other programs run (the progress shows the time left)")
        form.addRow("Iterations", self.iterations)
        self.seed = W.QSpinBox()
        self.seed.setRange(0, 1_000_000)
        form.addRow("Seed", self.seed)
        self.start_button = W.QPushButton("Meta-train")
        self.start_button.setCheckable(True)
        self.start_button.clicked.connect(lambda checked: self.start() if checked else self.stop())
        form.addRow(self.start_button)
        self.load_button = W.QPushButton("Show shipped result")
        self.load_button.setToolTip(f"{SHIPPED.name}, made by `doascope meta sinusoid`")
        self.load_button.setEnabled(SHIPPED.is_file())
        self.load_button.clicked.connect(lambda: self.load(SHIPPED))
        form.addRow(self.load_button)
        self.progress = W.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        form.addRow("Progress", self.progress)
        self.phase_label = W.QLabel("not trained")
        self.phase_label.setWordWrap(True)
        form.addRow(self.phase_label)
        new = W.QPushButton("New held-out task")
        new.clicked.connect(self.new_task)
        form.addRow(new)
        self.table = W.QLabel("")
        self.table.setTextFormat(QtCore.Qt.RichText)
        form.addRow(self.table)
        note = W.QLabel(HONEST_NOTE)
        note.setWordWrap(True)
        note.setTextFormat(QtCore.Qt.RichText)
        form.addRow(note)
        self.message = W.QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #ff6b6b")
        form.addRow(self.message)

        self.prediction_plots, self.prediction_curves = {}, {}
        self.true_curves, self.support_items = [], []
        row = W.QSplitter(QtCore.Qt.Horizontal)
        for m in METHODS:
            plot = pg.PlotWidget(title=LABELS[m])
            plot.addLegend(offset=(5, 5))
            plot.setLabel("bottom", "x")
            self.true_curves.append(plot.plot(pen=pg.mkPen("#e8eaed", width=2), name="true"))
            self.support_items.append(plot.plot(pen=None, symbol="t1", symbolSize=9, symbolBrush="#ffe119",
                                                name="K points"))
            self.prediction_curves[m] = {
                s: plot.plot(pen=pg.mkPen(COLOURS[m], width=2, style=STEP_STYLES[s]),
                             name=f"after {s} step{'s' if s != 1 else ''}") for s in (0, 1, 10)}
            self.prediction_plots[m] = plot
            row.addWidget(plot)
        self.true_curve, self.support_points = self.true_curves[0], self.support_items[0]

        self.mse_plot = pg.PlotWidget(title="held-out query MSE vs SGD steps (K = 10)")
        self.mse_plot.setLabel("bottom", "steps")
        self.mse_plot.addLegend(offset=(-5, 5))
        self.mse_curves = {m: self.mse_plot.plot(pen=pg.mkPen(COLOURS[m], width=2), symbol="o", symbolSize=5,
                                                 symbolBrush=COLOURS[m], name=LABELS[m]) for m in METHODS}
        self.loss_plot = pg.PlotWidget(title="meta-training loss (running mean)")
        self.loss_plot.setLabel("bottom", "iteration")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.addLegend(offset=(-5, 5))
        self.loss_curves = {m: self.loss_plot.plot(pen=pg.mkPen(COLOURS[m], width=1.5), name=LABELS[m])
                            for m in METHODS}
        bottom = W.QSplitter(QtCore.Qt.Horizontal)
        bottom.addWidget(self.mse_plot)
        bottom.addWidget(self.loss_plot)
        right = W.QSplitter(QtCore.Qt.Vertical)
        right.addWidget(row)
        right.addWidget(bottom)
        scroll = W.QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(300)
        layout = W.QHBoxLayout(self.widget)
        layout.addWidget(scroll)
        layout.addWidget(right, 1)

    # -- actions ----------------------------------------------------------------------------------

    def _launch(self, *, path: Path | None, threads: int) -> None:
        self.stop()
        self.show_error(None)
        self.loading = path is not None
        iterations, seed = self.iterations.value(), self.seed.value()
        self.job = Job(lambda h: _work(h, iterations=iterations, seed=seed, threads=threads, path=path),
                       on_update=self._show, on_finished=self._finished,
                       what="loading the meta-learning result" if path else "meta-learning",
                       parent=self.widget).start()

    def start(self, *, threads: int = 1) -> None:
        """Meta-train MAML, Reptile and the joint baseline in the background (one torch thread:
        these networks are tiny, and a second thread only waits on a busy machine)."""
        self._launch(path=None, threads=threads)
        self.progress.setRange(0, self.iterations.value() * len(METHODS))
        self.progress.setValue(0)
        self.phase_label.setText("starting (importing PyTorch)…")
        self.start_button.setChecked(True)
        self.start_button.setText("Stop")
        self.context.status("Meta-learning: training")

    def load(self, path) -> None:
        """Show a checkpoint written by ``doascope meta sinusoid`` (evaluated in the background)."""
        self._launch(path=Path(path), threads=1)
        self.progress.setRange(0, 0)
        self.phase_label.setText(f"loading {Path(path).name}…")

    def stop(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.stop(timeout=0 if self.loading else 10)  # a load cannot be interrupted: drop it unseen
        self.start_button.setChecked(False)
        self.start_button.setText("Meta-train")

    def shutdown(self) -> None:
        self.stop()

    def new_task(self) -> None:
        self.task_index += 1
        self._draw_predictions()

    def show_error(self, text: str | None) -> None:
        self.message.setText(text or "")
        if text:
            self.context.status(text, error=True)

    # -- drawing ----------------------------------------------------------------------------------

    def _draw_predictions(self) -> None:
        if not self.models:
            return
        from doascope.models import meta_sinusoid as ms

        ex = ms.example_predictions(self.models, seed=self.seed.value(), index=self.task_index)
        for true, support in zip(self.true_curves, self.support_items):
            true.setData(ex["x"], ex["true"])
            support.setData(ex["support_x"], ex["support_y"])
        for m, preds in ex["predictions"].items():
            for s, y in preds.items():
                self.prediction_curves[m][s].setData(ex["x"], y)
            self.prediction_plots[m].setTitle(f"{LABELS[m]}: task A = {ex['amplitude']:.2f}, "
                                              f"φ = {ex['phase']:.2f}")

    def _show(self, v: dict) -> None:
        if "done" in v and not self.loading:
            self.progress.setValue(v["done"])
            left = v.get("left")
            self.phase_label.setText(f"training {LABELS[v['method']]}: {v['done']} / {v['total']}"
                                     + (f", about {_duration(left)} left" if left is not None else ""))
        for m, values in v.get("losses", {}).items():
            if values:
                y = _smooth(values, 1 if v.get("smoothed") else 100)
                self.loss_curves[m].setData(np.arange(1, len(y) + 1) * v.get("stride", 1), np.maximum(y, 1e-4))
        curves = v.get("curves")
        if curves is not None:
            rows = []
            for m in METHODS:
                if m in curves:
                    mse = np.asarray(curves[m]["mse"])
                    self.mse_curves[m].setData(np.arange(len(mse)), mse)
                    rows.append(f"<tr><td>{LABELS[m]}</td><td>{mse[0]:.2f}</td><td>{mse[1]:.2f}</td>"
                                f"<td>{mse[-1]:.2f}</td></tr>")
            self.table.setText(f"<b>held-out MSE</b> ({N_EVAL_TASKS} tasks)<table cellspacing=4><tr><td></td>"
                               "<td>0 steps</td><td>1 step</td><td>10 steps</td></tr>" + "".join(rows) + "</table>")
        models = v.get("models")
        if models is not None and models is not self.models:
            self.models = models
            self._shown = True
            self._draw_predictions()

    def _finished(self, error: str | None) -> None:
        loaded = self.loading
        self.job = None
        self.start_button.setChecked(False)
        self.start_button.setText("Meta-train")
        self.progress.setRange(0, max(1, self.progress.maximum()))
        if error:
            self.show_error(error)
            return
        self.progress.setValue(self.progress.maximum())
        self.phase_label.setText("showing the shipped result (`doascope meta sinusoid`)" if loaded else "trained")
        self.context.status("Meta-learning: " + ("shipped result shown" if loaded else "trained"))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _smooth(values, width: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(v, 0, 0.0))
    end = np.arange(1, len(v) + 1)
    start = np.maximum(0, end - max(1, width))
    return (c[end] - c[start]) / (end - start)
