"""The CLIP tab: train a toy CLIP live, then classify new images by typed prompts and retrieve
images by typed queries.

A worker thread drives :class:`doascope.models.clip.ClipTrainer` and leaves what it has to show in
a :class:`_Mailbox` (curves, a frozen model copy, the similarity matrix of a held-out batch, the
held-out metrics); a timer on the GUI thread takes it from there and draws. No widget is touched
off the GUI thread. torch is imported by the worker, not when this module is imported.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pyqtgraph as pg
from doascope import DoascopeError
from doascope.app.gui.tabs import Tab
from doascope.models import clip_data as data
from PySide6 import QtCore, QtGui, QtWidgets

THUMB_SCALE = 3
N_ZERO_SHOT_IMAGES = 12
N_GALLERY = 240
TORCH_HINT = "needs PyTorch: pip install 'doascope[dnn]'"


class _Mailbox:
    """What the worker publishes, read by the GUI timer; one lock, copies in and out."""

    def __init__(self):
        self.lock = threading.Lock()
        self.losses: list[float] = []
        self.temperatures: list[float] = []
        self.step = 0
        self.model = None           # frozen CLIP snapshot (eval mode), replaced at each evaluation
        self.similarity = None      # (n, n) cosine similarities of held-out pairs
        self.metrics: dict | None = None
        self.metric_history: list[tuple[int, float, float, float]] = []  # step, zero-shot, R@1, R@5
        self.error: str | None = None
        self.finished = False
        self.version = 0            # bumped on every publish, so the GUI redraws only on news


class _Trainer(threading.Thread):
    def __init__(self, mailbox: _Mailbox, *, steps: int, batch_size: int, small: bool, seed: int,
                 threads: int = 2, eval_every: int = 100):
        super().__init__(name="clip-trainer", daemon=True)
        self.mailbox, self.steps, self.batch_size, self.small, self.seed = mailbox, steps, batch_size, small, seed
        self.threads, self.eval_every = threads, eval_every
        self.stop_event = threading.Event()

    def run(self) -> None:
        box = self.mailbox
        try:
            import torch
            from doascope.models import clip

            torch.set_num_threads(self.threads)
            cfg = clip.TrainConfig(steps=self.steps, batch_size=self.batch_size, seed=self.seed,
                                   model=clip.ClipConfig.small() if self.small else clip.ClipConfig())
            trainer = clip.ClipTrainer(cfg)
            heat_images, heat_captions, _ = clip.held_out_set(self.seed + 2, 16)
            self._publish(trainer, clip, heat_images, heat_captions, evaluate=True)
            while not self.stop_event.is_set() and trainer.step_count < self.steps:
                trainer.step()
                s = trainer.step_count
                self._publish(trainer, clip, heat_images, heat_captions,
                              evaluate=s % self.eval_every == 0 or s == self.steps)
        except Exception as exc:  # noqa: BLE001 - shown in the window; the thread must not die silently
            with box.lock:
                box.error = f"CLIP training failed: {exc}"
        finally:
            with box.lock:
                box.finished = True
                box.version += 1

    def _publish(self, trainer, clip, heat_images, heat_captions, *, evaluate: bool) -> None:
        box = self.mailbox
        update: dict = {"losses": list(trainer.losses), "temperatures": list(trainer.temperatures)}
        if evaluate:
            model = trainer.snapshot()
            metrics = clip.evaluate(model, seed=trainer.eval_rng_seed, n_zero_shot=300, n_retrieval=200)
            sim = (clip.embed_images(model, heat_images) @ clip.embed_texts(model, heat_captions).T).numpy()
            update.update(model=model, metrics=metrics, similarity=sim)
        with box.lock:
            box.step = trainer.step_count
            for k, v in update.items():
                setattr(box, k, v)
            if evaluate:
                box.metric_history.append((trainer.step_count, update["metrics"]["zero_shot_accuracy"],
                                           update["metrics"]["recall_at_1"], update["metrics"]["recall_at_5"]))
            box.version += 1


def _pixmap(img: np.ndarray, scale: int = THUMB_SCALE) -> QtGui.QPixmap:
    img = np.ascontiguousarray(np.repeat(np.repeat(img, scale, axis=0), scale, axis=1))
    h, w, _ = img.shape
    return QtGui.QPixmap.fromImage(QtGui.QImage(img.data, w, h, 3 * w, QtGui.QImage.Format_RGB888).copy())


class _ImageGrid(QtWidgets.QWidget):
    """Thumbnails with a caption under each."""

    def __init__(self, columns: int, count: int):
        super().__init__()
        grid = QtWidgets.QGridLayout(self)
        grid.setSpacing(4)
        self.pictures, self.captions = [], []
        for i in range(count):
            cell = QtWidgets.QVBoxLayout()
            pic, text = QtWidgets.QLabel(), QtWidgets.QLabel("")
            pic.setFixedSize(data.IMAGE_SIZE * THUMB_SCALE, data.IMAGE_SIZE * THUMB_SCALE)
            pic.setStyleSheet("background: #111")
            text.setWordWrap(True)
            text.setAlignment(QtCore.Qt.AlignHCenter | QtCore.Qt.AlignTop)
            text.setFixedWidth(data.IMAGE_SIZE * THUMB_SCALE + 16)
            text.setStyleSheet("font-size: 10px")
            cell.addWidget(pic, 0, QtCore.Qt.AlignHCenter)
            cell.addWidget(text)
            grid.addLayout(cell, i // columns, i % columns)
            self.pictures.append(pic)
            self.captions.append(text)

    def show_images(self, images, texts, colours=None) -> None:
        for i, (pic, cap) in enumerate(zip(self.pictures, self.captions)):
            if i < len(images):
                pic.setPixmap(_pixmap(images[i]))
                cap.setText(texts[i])
                cap.setStyleSheet(f"font-size: 10px; color: {colours[i] if colours else '#e8eaed'}")
            else:
                pic.clear()
                cap.setText("")


class ClipTab(Tab):
    title = "CLIP"
    order = 50

    @classmethod
    def unavailable(cls) -> str | None:
        return None if importlib.util.find_spec("torch") is not None else TORCH_HINT

    def __init__(self, context):
        super().__init__(context)
        self.mailbox = _Mailbox()
        self.worker: _Trainer | None = None
        self.model = None
        self.seen_version = -1
        self.rng = np.random.default_rng(12345)
        self.zs_images, _, self.zs_scenes = data.make_batch(self.rng, N_ZERO_SHOT_IMAGES, "test")
        # the retrieval gallery: held-out and training-split images together
        g1, _, s1 = data.make_batch(self.rng, N_GALLERY // 2, "test")
        g2, _, s2 = data.make_batch(self.rng, N_GALLERY - N_GALLERY // 2, "train")
        self.gallery, self.gallery_scenes = np.concatenate([g1, g2]), s1 + s2
        self.widget = QtWidgets.QWidget()
        self._build()
        self.timer = QtCore.QTimer(self.widget)
        self.timer.setInterval(150)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.zero_shot_grid.show_images(self.zs_images, [""] * N_ZERO_SHOT_IMAGES)

    # -- layout -----------------------------------------------------------------------------------

    def _build(self) -> None:
        W = QtWidgets
        side = W.QWidget()
        form = W.QFormLayout(side)
        intro = W.QLabel("Contrastive language-image pre-training at toy scale: an image CNN and a text "
                         "transformer learn one embedding space from captioned shapes. Eight colour-shape "
                         "pairs and three caption templates are held out of training.")
        intro.setWordWrap(True)
        form.addRow(intro)
        self.steps = W.QSpinBox()
        self.steps.setRange(10, 100_000)
        self.steps.setSingleStep(100)
        self.steps.setValue(1000)
        form.addRow("Steps", self.steps)
        self.batch = W.QSpinBox()
        self.batch.setRange(8, 1024)
        self.batch.setValue(128)
        form.addRow("Batch (pairs)", self.batch)
        self.size = W.QComboBox()
        self.size.addItems(["standard", "small (fast)"])
        form.addRow("Model", self.size)
        self.seed = W.QSpinBox()
        self.seed.setRange(0, 1_000_000)
        form.addRow("Seed", self.seed)
        self.start_button = W.QPushButton("Train")
        self.start_button.setCheckable(True)
        self.start_button.clicked.connect(self._toggle)
        form.addRow(self.start_button)
        load = W.QPushButton("Load model…")
        load.setToolTip("a model.pt written by `doascope clip train`")
        load.clicked.connect(self._load_dialog)
        form.addRow(load)
        self.progress = W.QLabel("not trained")
        form.addRow("Step", self.progress)
        self.loss_label, self.temp_label = W.QLabel("–"), W.QLabel("–")
        form.addRow("Loss", self.loss_label)
        form.addRow("Temperature", self.temp_label)
        self.acc_label, self.r1_label, self.r5_label = W.QLabel("–"), W.QLabel("–"), W.QLabel("–")
        self.acc_label.setToolTip("images of held-out colour-shape pairs classified among all pairs by typed prompts")
        form.addRow("Zero-shot acc.", self.acc_label)
        form.addRow("Recall@1", self.r1_label)
        form.addRow("Recall@5", self.r5_label)
        self.tasks_label = W.QLabel("")
        self.tasks_label.setWordWrap(True)
        form.addRow(self.tasks_label)
        self.message = W.QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #ff6b6b")
        form.addRow(self.message)

        self.loss_plot = pg.PlotWidget(title="contrastive loss")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLogMode(y=True)
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#42d4f4", width=1.5))
        self.temp_plot = pg.PlotWidget(title="temperature 1/exp(t)")
        self.temp_plot.setLabel("bottom", "step")
        self.temp_curve = self.temp_plot.plot(pen=pg.mkPen("#f58231", width=1.5))
        self.metric_plot = pg.PlotWidget(title="held out: zero-shot acc., R@1, R@5")
        self.metric_plot.setYRange(0, 1, padding=0.02)
        self.metric_plot.addLegend(offset=(5, 5))
        self.acc_curve = self.metric_plot.plot(pen=pg.mkPen("#3cb44b", width=2), symbol="o", symbolSize=4,
                                               name="zero-shot")
        self.r1_curve = self.metric_plot.plot(pen=pg.mkPen("#ffe119", width=1.5), name="R@1")
        self.r5_curve = self.metric_plot.plot(pen=pg.mkPen("#f032e6", width=1.5), name="R@5")
        self.heat_plot = pg.PlotWidget(title="similarity: held-out images × texts")
        self.heat_plot.invertY(True)
        self.heat_plot.setAspectLocked(True)
        self.heat_plot.setMouseEnabled(False, False)
        self.heatmap = pg.ImageItem(axisOrder="row-major")
        self.heatmap.setLookupTable(pg.colormap.get("viridis").getLookupTable(0.0, 1.0, 256))
        self.heat_plot.addItem(self.heatmap)

        zs = W.QGroupBox("Zero-shot classification of new (held-out) images")
        zl = W.QVBoxLayout(zs)
        row = W.QHBoxLayout()
        self.task = W.QComboBox()
        self.task.addItems(list(data.ZERO_SHOT_TASKS) + ["custom"])
        self.task.setCurrentText("colour and shape")
        self.task.currentTextChanged.connect(self._task_changed)
        self.template = W.QLineEdit(data.ZERO_SHOT_TEMPLATE)
        self.template.setToolTip("the prompt; {label} is replaced by each label")
        row.addWidget(self.task)
        row.addWidget(self.template, 1)
        zl.addLayout(row)
        self.labels = W.QLineEdit()
        self.labels.setToolTip("comma-separated labels")
        zl.addWidget(self.labels)
        row = W.QHBoxLayout()
        classify, new = W.QPushButton("Classify"), W.QPushButton("New images")
        classify.clicked.connect(self.classify)
        new.clicked.connect(self._new_images)
        self.template.returnPressed.connect(self.classify)
        self.labels.returnPressed.connect(self.classify)
        self.labels.textEdited.connect(lambda _: self.task.setCurrentText("custom"))
        self.template.textEdited.connect(lambda _: self.task.setCurrentText("custom"))
        row.addWidget(classify)
        row.addWidget(new)
        self.zs_summary = W.QLabel("")
        row.addWidget(self.zs_summary, 1)
        zl.addLayout(row)
        self.zero_shot_grid = _ImageGrid(6, N_ZERO_SHOT_IMAGES)
        zl.addWidget(self.zero_shot_grid)
        zl.addStretch(1)

        rt = W.QGroupBox(f"Text-to-image retrieval from {N_GALLERY} images")
        rl = W.QVBoxLayout(rt)
        row = W.QHBoxLayout()
        self.query = W.QLineEdit("two small red circles on the left")
        self.query.returnPressed.connect(self.search)
        search = W.QPushButton("Search")
        search.clicked.connect(self.search)
        row.addWidget(self.query, 1)
        row.addWidget(search)
        rl.addLayout(row)
        self.retrieval_grid = _ImageGrid(8, 8)
        rl.addWidget(self.retrieval_grid)

        curves = W.QSplitter(QtCore.Qt.Horizontal)
        for w in (self.loss_plot, self.temp_plot, self.metric_plot):
            curves.addWidget(w)
        middle = W.QSplitter(QtCore.Qt.Horizontal)
        middle.addWidget(self.heat_plot)
        middle.addWidget(zs)
        middle.setSizes([420, 660])
        right = W.QSplitter(QtCore.Qt.Vertical)
        right.addWidget(curves)
        right.addWidget(middle)
        right.addWidget(rt)
        right.setSizes([220, 360, 220])
        scroll = W.QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(280)
        layout = W.QHBoxLayout(self.widget)
        layout.addWidget(scroll)
        layout.addWidget(right, 1)
        self._task_changed(self.task.currentText())

    # -- actions ----------------------------------------------------------------------------------

    def _task_changed(self, task: str) -> None:
        if task in data.ZERO_SHOT_TASKS:
            template, labels = data.ZERO_SHOT_TASKS[task]
            self.template.setText(template)
            self.labels.setText(", ".join(labels))
            if self.model is not None:
                self.classify()

    def _toggle(self, checked: bool) -> None:
        self.start() if checked else self.stop()

    def start(self, *, threads: int = 2, eval_every: int = 100) -> None:
        self.stop()
        self.show_error(None)
        self.mailbox = _Mailbox()
        self.seen_version = -1
        self.worker = _Trainer(self.mailbox, steps=self.steps.value(), batch_size=self.batch.value(),
                               small=self.size.currentIndex() == 1, seed=self.seed.value(), threads=threads,
                               eval_every=eval_every)
        self.worker.start()
        self.start_button.setChecked(True)
        self.start_button.setText("Stop")
        self.context.status("CLIP: training (the first step imports PyTorch)")

    def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop_event.set()
            worker.join(timeout=10)
        self.start_button.setChecked(False)
        self.start_button.setText("Train")

    def shutdown(self) -> None:
        self.timer.stop()
        self.stop()

    def _load_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.widget, "Load a CLIP model", "",
                                                        "PyTorch model (*.pt);;All (*)")
        if path:
            self.load(path)

    def load(self, path: str) -> None:
        """Use a model saved by ``doascope clip train`` (training stops)."""
        self.stop()
        try:
            from doascope.models import clip

            self.model = clip.load(path)
        except ImportError:
            self.show_error(TORCH_HINT)
            return
        except DoascopeError as exc:
            self.show_error(str(exc))
            return
        self.show_error(None)
        self.progress.setText(f"loaded {path}")
        self.classify()
        self.search()

    def _new_images(self) -> None:
        self.zs_images, _, self.zs_scenes = data.make_batch(self.rng, N_ZERO_SHOT_IMAGES, "test")
        self.classify()

    def classify(self) -> None:
        if self.model is None:
            self.zero_shot_grid.show_images(self.zs_images, [""] * len(self.zs_images))
            return
        from doascope.models import clip

        template = self.template.text().strip()
        labels = [s.strip() for s in self.labels.text().split(",") if s.strip()]
        try:
            probs = clip.zero_shot(self.model, self.zs_images, labels, template)
        except DoascopeError as exc:
            self.show_error(str(exc))
            return
        self.show_error(None)
        best = probs.argmax(axis=1)
        texts = [f"{labels[b]} {100 * p[b]:.0f}%" for b, p in zip(best, probs)]
        task = self.task.currentText()
        colours = None
        if task in data.ZERO_SHOT_TASKS:
            truth = [data.scene_label(s, task) for s in self.zs_scenes]
            right = [labels[b] == t for b, t in zip(best, truth)]
            colours = ["#3cb44b" if r else "#ff6b6b" for r in right]
            self.zs_summary.setText(f"{sum(right)}/{len(right)} right (green)")
        else:
            self.zs_summary.setText("")
        self.zero_shot_grid.show_images(self.zs_images, texts, colours)

    def search(self) -> None:
        if self.model is None or not self.query.text().strip():
            return
        from doascope.models import clip

        idx, sims = clip.retrieve(self.model, self.query.text(), self.gallery, k=8)
        self.retrieval_grid.show_images(self.gallery[idx], [f"#{i + 1}  cos {s:.2f}" for i, s in enumerate(sims)])

    def show_error(self, text: str | None) -> None:
        self.message.setText(text or "")
        if text:
            self.context.status(text, error=True)

    # -- drawing ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        box = self.mailbox
        with box.lock:
            if box.version == self.seen_version:
                return
            self.seen_version = box.version
            losses, temps, step = box.losses, box.temperatures, box.step
            model, sim, metrics, history = box.model, box.similarity, box.metrics, list(box.metric_history)
            error, finished = box.error, box.finished
        if losses:
            x = np.arange(1, len(losses) + 1)
            self.loss_curve.setData(x, np.maximum(np.asarray(losses), 1e-4))
            self.temp_curve.setData(x, np.asarray(temps))
            self.loss_label.setText(f"{losses[-1]:.3f}")
            self.temp_label.setText(f"{temps[-1]:.4f}  (scale {1 / temps[-1]:.1f})")
        total = self.steps.value() if self.worker is not None else step
        self.progress.setText(f"{step} / {total}")
        if sim is not None:
            self.heatmap.setImage(sim, levels=(float(sim.min()), float(sim.max())), autoLevels=False)
        if history:
            h = np.asarray(history)
            self.acc_curve.setData(h[:, 0], h[:, 1])
            self.r1_curve.setData(h[:, 0], h[:, 2])
            self.r5_curve.setData(h[:, 0], h[:, 3])
        if metrics is not None:
            chance = metrics["zero_shot"]["colour and shape"]["chance"]
            self.acc_label.setText(f"{100 * metrics['zero_shot_accuracy']:.1f}%  (chance {100 * chance:.1f}%)")
            self.r1_label.setText(f"{100 * metrics['recall_at_1']:.1f}%")
            self.r5_label.setText(f"{100 * metrics['recall_at_5']:.1f}%")
            self.tasks_label.setText("zero-shot by " + ", ".join(
                f"{task} {100 * m['accuracy']:.0f}%" for task, m in metrics["zero_shot"].items()))
        if model is not None and model is not self.model:
            self.model = model
            self.classify()
            self.search()
        if error:
            self.show_error(error)
        if finished and self.worker is not None:
            self.worker = None
            self.start_button.setChecked(False)
            self.start_button.setText("Train")
            if not error:
                self.context.status(f"CLIP: trained {step} steps")
