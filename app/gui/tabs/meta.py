"""The meta-learning tab: MAML, Reptile and joint pre-training on few-shot sinusoid regression
(panel A) and on few-shot calibration of the DOA network to perturbed arrays (panel B).

A worker thread meta-trains the three networks (or loads the shipped checkpoint), evaluates them on
held-out tasks and leaves curves and networks in a :class:`_Mailbox`; a timer on the GUI thread
draws them. No widget is touched off the GUI thread; torch is imported by the worker (and by the
GUI thread only once a worker has delivered networks), never when this module is imported.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from doascope import DoascopeError
from doascope.app.gui.tabs import Tab
from PySide6 import QtCore, QtWidgets

TORCH_HINT = "needs PyTorch: pip install 'doascope[dnn]'"
METHODS = ("maml", "reptile", "pretrained")
LABELS = {"maml": "MAML", "reptile": "Reptile", "pretrained": "pre-trained (joint)"}
COLOURS = {"maml": "#e6194b", "reptile": "#3cb44b", "pretrained": "#4363d8"}
STEP_STYLES = {0: QtCore.Qt.DotLine, 1: QtCore.Qt.DashLine, 10: QtCore.Qt.SolidLine}
SHIPPED = Path(__file__).resolve().parents[3] / "models" / "weights" / "meta_sinusoid.pt"
SHIPPED_CALIBRATION = Path(__file__).resolve().parents[3] / "models" / "weights" / "meta_calibration.json"
CAL_METHODS = ("none", "pretrained", "maml", "reptile", "srp", "srp_offset")
CAL_LABELS = {"none": "no adaptation", "pretrained": "fine-tuned (joint)", "maml": "MAML", "reptile": "Reptile",
              "srp": "SRP-PHAT (nominal)", "srp_offset": "SRP-PHAT + offset from K"}
CAL_COLOURS = {"maml": "#e6194b", "reptile": "#3cb44b", "pretrained": "#4363d8", "none": "#a0a0a0",
               "srp": "#e8eaed", "srp_offset": "#f58231"}

HONEST_NOTE = (
    "<b>What to expect.</b> With K = 10 points and one SGD step, MAML's initialisation moves straight to "
    "the right sinusoid: it was trained for exactly that. Reptile gets there in a few more steps. The "
    "jointly pre-trained network learned the average task (a weak sinusoid: phases in [0, π] only "
    "partly cancel): one small step barely changes it, and even ten steps leave it far behind. "
    "<b>Where meta-learning does not help:</b> with many examples or many steps, plain fine-tuning "
    "catches up; on a task outside the training family (say amplitude 10, or a square wave), the "
    "meta-learned prior is wrong and a few shots cannot fix it; and the gain is bought with "
    "task-structured training data and several times the training cost.")


class _Mailbox:
    """What the worker publishes, read by the GUI timer; one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.done = 0                  # meta-iterations finished, all methods together
        self.total = 1
        self.method = ""
        self.losses: dict[str, list[float]] = {m: [] for m in METHODS}
        self.models: dict | None = None
        self.curves: dict | None = None
        self.seconds: dict = {}
        self.error: str | None = None
        self.finished = False
        self.version = 0


class _Worker(threading.Thread):
    """Meta-trains (``path`` None) or loads a checkpoint, then evaluates on held-out tasks."""

    def __init__(self, box: _Mailbox, *, iterations: int, seed: int, threads: int = 2, path=None,
                 n_eval_tasks: int = 100):
        super().__init__(name="meta-trainer", daemon=True)
        self.box, self.iterations, self.seed, self.threads, self.path = box, iterations, seed, threads, path
        self.n_eval_tasks = n_eval_tasks
        self.stop_event = threading.Event()

    def run(self) -> None:
        box = self.box
        try:
            import torch
            from doascope.models import meta_sinusoid as ms

            torch.set_num_threads(self.threads)
            if self.path is not None:
                run = ms.load_checkpoint(self.path)
                with box.lock:
                    box.losses = {m: list(v) for m, v in run.losses.items()}
                    box.total = box.done = 1
            else:
                with box.lock:
                    box.total = self.iterations * len(METHODS)
                offset = {m: i * self.iterations for i, m in enumerate(METHODS)}

                def progress(method, it, total, loss):
                    with box.lock:
                        box.method, box.done = method, offset[method] + it
                        box.losses[method].append(loss)
                        if it % 25 == 0 or it == total:
                            box.version += 1

                run = ms.train_all(iterations=self.iterations, seed=self.seed, progress=progress,
                                   stop=self.stop_event.is_set)
            if self.stop_event.is_set() and len(run.models) < len(METHODS):
                return
            curves = ms.evaluate(run.models, n_tasks=self.n_eval_tasks, seed=self.seed)
            with box.lock:
                box.models, box.curves, box.seconds = run.models, curves, dict(run.seconds)
                if self.path is None:
                    box.done = box.total
        except (DoascopeError, Exception) as exc:  # noqa: BLE001 - shown in the window
            with box.lock:
                box.error = f"meta-learning failed: {exc}"
        finally:
            with box.lock:
                box.finished = True
                box.version += 1


class MetaTab(Tab):
    title = "Meta-learning"
    order = 60

    @classmethod
    def unavailable(cls) -> str | None:
        return None if importlib.util.find_spec("torch") is not None else TORCH_HINT

    def __init__(self, context):
        super().__init__(context)
        self.box = _Mailbox()
        self.worker: _Worker | None = None
        self.models: dict | None = None
        self.task_index = 0
        self.seen_version = -1
        self.widget = QtWidgets.QWidget()
        self._build()
        self.timer = QtCore.QTimer(self.widget)
        self.timer.setInterval(150)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    # -- layout -----------------------------------------------------------------------------------

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
        self.iterations.setValue(10_000)
        self.iterations.setToolTip("meta-iterations per method; 10000 take about two minutes on two cores")
        form.addRow("Iterations", self.iterations)
        self.seed = W.QSpinBox()
        self.seed.setRange(0, 1_000_000)
        form.addRow("Seed", self.seed)
        self.start_button = W.QPushButton("Meta-train")
        self.start_button.setCheckable(True)
        self.start_button.clicked.connect(lambda checked: self.start() if checked else self.stop())
        form.addRow(self.start_button)
        self.load_button = W.QPushButton("Load shipped result")
        self.load_button.setToolTip(f"{SHIPPED.name}, made by `doascope meta sinusoid`")
        self.load_button.setEnabled(SHIPPED.is_file())
        self.load_button.clicked.connect(lambda: self.load(SHIPPED))
        form.addRow(self.load_button)
        self.progress = W.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        form.addRow("Progress", self.progress)
        self.phase_label = W.QLabel("not trained")
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
        self.mse_plot.addLegend(offset=(5, 5))
        self.mse_curves = {m: self.mse_plot.plot(pen=pg.mkPen(COLOURS[m], width=2), symbol="o", symbolSize=5,
                                                 symbolBrush=COLOURS[m], name=LABELS[m]) for m in METHODS}
        self.loss_plot = pg.PlotWidget(title="meta-training loss (running mean)")
        self.loss_plot.setLabel("bottom", "iteration")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.addLegend(offset=(5, 5))
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
        panel_a = W.QWidget()
        layout = W.QHBoxLayout(panel_a)
        layout.addWidget(scroll)
        layout.addWidget(right, 1)
        self.panels = W.QTabWidget()
        self.panels.addTab(panel_a, "A: sinusoids")
        self.calibration = CalibrationPanel(self.context)
        self.panels.addTab(self.calibration.widget, "B: array calibration")
        outer = W.QVBoxLayout(self.widget)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.panels)

    # -- actions ----------------------------------------------------------------------------------

    def _launch(self, **kw) -> None:
        self.stop()
        self.show_error(None)
        self.box = _Mailbox()
        self.seen_version = -1
        self.worker = _Worker(self.box, iterations=self.iterations.value(), seed=self.seed.value(), **kw)
        self.worker.start()

    def start(self, *, threads: int = 2) -> None:
        """Meta-train MAML, Reptile and the joint baseline in the background."""
        self._launch(threads=threads)
        self.progress.setRange(0, self.iterations.value() * len(METHODS))
        self.progress.setValue(0)
        self.start_button.setChecked(True)
        self.start_button.setText("Stop")
        self.context.status("Meta-learning: training (the first step imports PyTorch)")

    def load(self, path) -> None:
        """Show a checkpoint written by ``doascope meta sinusoid`` (its evaluation runs in the background)."""
        self._launch(path=Path(path))
        self.progress.setRange(0, 1)
        self.phase_label.setText(f"loading {Path(path).name}")

    def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop_event.set()
            worker.join(timeout=10)
        self.start_button.setChecked(False)
        self.start_button.setText("Meta-train")

    def shutdown(self) -> None:
        self.timer.stop()
        self.stop()
        self.calibration.shutdown()

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

    def refresh(self) -> None:
        box = self.box
        with box.lock:
            if box.version == self.seen_version:
                return
            self.seen_version = box.version
            done, total, method = box.done, box.total, box.method
            losses = {m: list(v) for m, v in box.losses.items()}
            models, curves, error, finished = box.models, box.curves, box.error, box.finished
        if self.worker is not None and self.worker.path is None:
            self.progress.setValue(done)
            if method and not finished:
                self.phase_label.setText(f"training {LABELS[method]}: {done} / {total}")
        for m, v in losses.items():
            if v:
                y = _smooth(v, 100 if self.worker is None or self.worker.path is None else 1)
                self.loss_curves[m].setData(np.arange(1, len(y) + 1), np.maximum(y, 1e-4))
        if curves is not None:
            rows = []
            for m in METHODS:
                if m in curves:
                    mse = np.asarray(curves[m]["mse"])
                    self.mse_curves[m].setData(np.arange(len(mse)), mse)
                    rows.append(f"<tr><td>{LABELS[m]}</td><td>{mse[0]:.2f}</td><td>{mse[1]:.2f}</td>"
                                f"<td>{mse[-1]:.2f}</td></tr>")
            self.table.setText("<b>held-out MSE</b> (100 tasks)<table cellspacing=4><tr><td></td><td>0 steps</td>"
                               "<td>1 step</td><td>10 steps</td></tr>" + "".join(rows) + "</table>")
        if models is not None and models is not self.models:
            self.models = models
            self._draw_predictions()
        if error:
            self.show_error(error)
        if finished and self.worker is not None:
            loaded = self.worker.path is not None
            self.worker = None
            self.start_button.setChecked(False)
            self.start_button.setText("Meta-train")
            if not error:
                self.progress.setValue(self.progress.maximum())
                self.phase_label.setText("loaded the shipped result" if loaded else "trained")
                self.context.status("Meta-learning: " + ("loaded" if loaded else "trained"))


def _smooth(values, width: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(v, 0, 0.0))
    end = np.arange(1, len(v) + 1)
    start = np.maximum(0, end - max(1, width))
    return (c[end] - c[start]) / (end - start)


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


class _CalMailbox:
    def __init__(self):
        self.lock = threading.Lock()
        self.done, self.total, self.phase = 0, 1, ""
        self.results: dict | None = None
        self.error: str | None = None
        self.finished = False
        self.version = 0


class _CalWorker(threading.Thread):
    """Runs the calibration experiment (``path`` None) or loads a results file."""

    def __init__(self, box: _CalMailbox, *, config=None, path=None, threads: int = 2, cache_dir=None):
        super().__init__(name="meta-calibration", daemon=True)
        self.box, self.config, self.path, self.threads, self.cache_dir = box, config, path, threads, cache_dir
        self.stop_event = threading.Event()

    def run(self) -> None:
        box = self.box
        try:
            from doascope.models import meta_calibration as mc

            if self.path is not None:
                results = mc.load_results(self.path)
            else:
                import torch

                torch.set_num_threads(self.threads)
                cfg = self.config or mc.CalibConfig()
                n_sim = cfg.train_tasks + cfg.test_tasks
                offsets = {"simulating": 0, "maml": n_sim, "reptile": n_sim + cfg.iterations,
                           "pretrained": n_sim + 2 * cfg.iterations}
                with box.lock:
                    box.total = n_sim + 3 * cfg.iterations

                def progress(what, it, total):
                    with box.lock:
                        box.phase, box.done = what, offsets[what] + it
                        if it % 20 == 0 or it == total:
                            box.version += 1

                results, _ = mc.run_experiment(cfg, cache_dir=self.cache_dir, progress=progress,
                                               stop=self.stop_event.is_set)
                if self.stop_event.is_set():
                    return
            with box.lock:
                box.results = results
                box.done = box.total
        except (DoascopeError, Exception) as exc:  # noqa: BLE001 - shown in the window
            with box.lock:
                box.error = f"calibration experiment failed: {exc}"
        finally:
            with box.lock:
                box.finished = True
                box.version += 1


class CalibrationPanel:
    """Panel B: few-shot calibration of the DOA network to perturbed arrays."""

    def __init__(self, context):
        self.context = context
        self.box = _CalMailbox()
        self.worker: _CalWorker | None = None
        self.results: dict | None = None
        self.seen_version = -1
        self.widget = QtWidgets.QWidget()
        self._build()
        self.timer = QtCore.QTimer(self.widget)
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

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
        self.load_button = W.QPushButton("Load shipped result")
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
        self.note = W.QLabel("Run the experiment or load the shipped result to see what the numbers say.")
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

    def _launch(self, **kw) -> None:
        self.stop()
        self.message.setText("")
        self.box = _CalMailbox()
        self.seen_version = -1
        self.worker = _CalWorker(self.box, **kw)
        self.worker.start()

    def start(self, *, config=None, threads: int = 2, cache_dir=None) -> None:
        """Simulate (or load cached features), train and evaluate in the background."""
        if config is None:
            from doascope.models.meta_calibration import CalibConfig

            config = CalibConfig(train_tasks=self.tasks.value(), iterations=self.iterations.value())
        self._launch(config=config, threads=threads, cache_dir=cache_dir)
        self.progress.setRange(0, config.train_tasks + config.test_tasks + 3 * config.iterations)
        self.progress.setValue(0)
        self.run_button.setChecked(True)
        self.run_button.setText("Stop")
        self.context.status("Calibration: simulating arrays and training (a few minutes)")

    def load(self, path) -> None:
        self._launch(path=Path(path))
        self.phase_label.setText(f"loading {Path(path).name}")

    def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop_event.set()
            worker.join(timeout=10)
        self.run_button.setChecked(False)
        self.run_button.setText("Run experiment")

    def shutdown(self) -> None:
        self.timer.stop()
        self.stop()

    def show(self, results: dict) -> None:
        self.results = results
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

    def refresh(self) -> None:
        box = self.box
        with box.lock:
            if box.version == self.seen_version:
                return
            self.seen_version = box.version
            done, phase, results, error, finished = box.done, box.phase, box.results, box.error, box.finished
        if self.worker is not None and self.worker.path is None:
            self.progress.setValue(done)
            if phase and not finished:
                self.phase_label.setText(f"{CAL_LABELS.get(phase, phase)}: {done} / {self.progress.maximum()}")
        if results is not None and results is not self.results:
            self.show(results)
        if error:
            self.message.setText(error)
            self.context.status(error, error=True)
        if finished and self.worker is not None:
            loaded = self.worker.path is not None
            self.worker = None
            self.run_button.setChecked(False)
            self.run_button.setText("Run experiment")
            if not error:
                self.progress.setRange(0, 1)
                self.progress.setValue(1)
                self.phase_label.setText("loaded the shipped result" if loaded else "done")
