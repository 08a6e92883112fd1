"""The CLIP tab: a toy CLIP, trained from scratch on captioned shapes, classifies new images by
typed prompts and retrieves images by typed queries.

It opens on the model that ships (its training curves, similarity heatmap, zero-shot grid and
retrieval at once); "Train" trains a new one live. Loading and training run as background
:class:`~doascope.app.gui.jobs.Job` s; no widget is touched off the GUI thread, and torch is
imported by the job, not when this module is imported.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import replace

import numpy as np
import pyqtgraph as pg
from doascope import DoascopeError
from doascope.app.gui.jobs import Job, JobHandle
from doascope.app.gui.tabs import Tab
from doascope.models import clip_data as data
from doascope.models.clip_config import SHIPPED_MODEL, ClipConfig, TrainConfig
from PySide6 import QtCore, QtGui, QtWidgets

THUMB_SCALE = 3
N_ZERO_SHOT_IMAGES = 12
N_GALLERY = 240
N_HEATMAP = 16
TORCH_HINT = "needs PyTorch: pip install 'doascope[dnn]'"
# The retrieval query the tab opens with: a held-out colour-shape pair (never seen in training) in
# a held-out caption template. The gallery holds a few images of that scene among random ones.
DEMO_SCENE = data.Scene("yellow", "circle", "small", "at the top", 3)
DEMO_QUERY = data.caption(DEMO_SCENE, data.TEST_TEMPLATES[0])
N_DEMO_IMAGES = 4


def demo_gallery(rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """(images, scenes) to search: held-out and training-split images, and N_DEMO_IMAGES of
    DEMO_SCENE, shuffled."""
    n_test = (N_GALLERY - N_DEMO_IMAGES) // 2
    g1, _, s1 = data.make_batch(rng, n_test, "test")
    g2, _, s2 = data.make_batch(rng, N_GALLERY - N_DEMO_IMAGES - n_test, "train")
    demo, scenes = [], []
    for _ in range(N_DEMO_IMAGES):
        centres: list = []
        demo.append(data.render(DEMO_SCENE, rng, centres=centres))
        scenes.append(replace(DEMO_SCENE, centres=tuple(centres)))
    images, all_scenes = np.concatenate([g1, g2, np.stack(demo)]), s1 + s2 + scenes
    order = rng.permutation(len(images))
    return images[order], [all_scenes[i] for i in order]


def _embeddings(clip, model, images: dict) -> dict:
    """Image embeddings the GUI thread would otherwise compute when a model arrives:
    {name: (the images, their embeddings)}."""
    return {name: (imgs, clip.embed_images(model, imgs)) for name, imgs in images.items()}


def _train(job: JobHandle, *, steps: int, batch_size: int, small: bool, seed: int, threads: int,
           eval_every: int, images: dict) -> None:
    """Worker: train from scratch, publishing curves every step and a frozen model, the held-out
    metrics and the similarity matrix at every evaluation."""
    import torch
    from doascope.models import clip

    torch.set_num_threads(threads)
    base = TrainConfig()
    cfg = TrainConfig(steps=steps, batch_size=batch_size, seed=seed,
                      model=ClipConfig.small() if small else base.model)
    trainer = clip.ClipTrainer(cfg)
    heat_images, heat_captions, _ = clip.held_out_set(seed + 2, N_HEATMAP)
    start = time.perf_counter()

    def publish(evaluate: bool) -> None:
        done = trainer.step_count
        elapsed = time.perf_counter() - start
        values = {"losses": list(trainer.losses), "temperatures": list(trainer.temperatures), "step": done,
                  "total": steps, "elapsed": elapsed,
                  "eta": elapsed / done * (steps - done) if done >= 5 else None}
        if evaluate:
            model = trainer.snapshot()
            metrics = trainer.evaluate(n_zero_shot=300, n_retrieval=200, model=model)
            sim = (clip.embed_images(model, heat_images) @ clip.embed_texts(model, heat_captions).T).numpy()
            values.update(model=model, metrics=metrics, similarity=sim, metric_history=list(trainer.metric_history),
                          embeddings=_embeddings(clip, model, images))
        job.publish(**values)

    publish(evaluate=True)
    while not job.stopped() and trainer.step_count < steps:
        trainer.step()
        s = trainer.step_count
        publish(evaluate=s % eval_every == 0 or s == steps)


def _load(job: JobHandle, *, path: str, images: dict) -> None:
    """Worker: a saved model with the curves and metrics of its training."""
    from doascope.models import clip

    model, info = clip.load_checkpoint(path)
    heat_images, heat_captions, _ = clip.held_out_set(info.get("train_config", {}).get("seed", 0) + 2, N_HEATMAP)
    sim = (clip.embed_images(model, heat_images) @ clip.embed_texts(model, heat_captions).T).numpy()
    history = info.get("history", {})
    job.publish(model=model, similarity=sim, metrics=info.get("metrics") or None, step=info.get("steps", 0),
                total=info.get("steps", 0), losses=history.get("losses", []),
                temperatures=history.get("temperatures", []),
                metric_history=[tuple(r) for r in history.get("metric_history", [])],
                info=info, path=str(path), embeddings=_embeddings(clip, model, images))


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

    def __init__(self, context, *, model_path=SHIPPED_MODEL):
        super().__init__(context)
        self.job: Job | None = None
        self.training = False
        self.model = None
        self.embeddings: dict = {}  # of the zero-shot images and the gallery, by the current model
        self.shipped_info: dict | None = None
        self.rng = np.random.default_rng(12345)
        self.zs_images, _, self.zs_scenes = data.make_batch(self.rng, N_ZERO_SHOT_IMAGES, "test")
        self.gallery, self.gallery_scenes = demo_gallery(self.rng)
        self.widget = QtWidgets.QWidget()
        self._build()
        self.zero_shot_grid.show_images(self.zs_images, [""] * N_ZERO_SHOT_IMAGES)
        self.model_path = model_path if model_path is not None and model_path.is_file() else None
        if self.model_path is None:
            self.progress_label.setText("no model yet: press Train")

    def activate(self) -> None:
        """The first time the tab is shown: the shipped model with its curves (read in the background)."""
        if self.model_path is not None and self.model is None and self.job is None:
            self.load(str(self.model_path))

    @property
    def worker(self):
        """The running job, or None (kept for callers that wait for the tab to go idle)."""
        return self.job

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
        defaults = TrainConfig()
        self.steps = W.QSpinBox()
        self.steps.setRange(10, 100_000)
        self.steps.setSingleStep(500)
        self.steps.setValue(defaults.steps)
        form.addRow("Steps", self.steps)
        self.batch = W.QSpinBox()
        self.batch.setRange(8, 1024)
        self.batch.setValue(defaults.batch_size)
        form.addRow("Batch (pairs)", self.batch)
        self.size = W.QComboBox()
        self.size.addItems(["standard", "small (fast)"])
        form.addRow("Model", self.size)
        self.seed = W.QSpinBox()
        self.seed.setRange(0, 1_000_000)
        form.addRow("Seed", self.seed)
        self.start_button = W.QPushButton("Train from scratch")
        self.start_button.setCheckable(True)
        self.start_button.clicked.connect(self._toggle)
        form.addRow(self.start_button)
        self.estimate = W.QLabel("")
        self.estimate.setWordWrap(True)
        for w in (self.steps, self.batch):
            w.valueChanged.connect(lambda _: self._show_estimate())
        self.size.currentIndexChanged.connect(lambda _: self._show_estimate())
        form.addRow(self.estimate)
        load = W.QPushButton("Load model…")
        load.setToolTip("a model.pt written by `doascope clip train`")
        load.clicked.connect(self._load_dialog)
        form.addRow(load)
        self.progress = W.QProgressBar()
        self.progress.setRange(0, 1)
        form.addRow("Progress", self.progress)
        self.progress_label = W.QLabel("loading the shipped model…")
        self.progress_label.setWordWrap(True)
        form.addRow(self.progress_label)
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
        self.metric_plot.setLabel("bottom", "step")
        self.metric_plot.addLegend(offset=(-5, -5))
        self.acc_curve = self.metric_plot.plot(pen=pg.mkPen("#3cb44b", width=2), symbol="o", symbolSize=4,
                                               name="zero-shot")
        self.r1_curve = self.metric_plot.plot(pen=pg.mkPen("#ffe119", width=1.5), name="R@1")
        self.r5_curve = self.metric_plot.plot(pen=pg.mkPen("#f032e6", width=1.5), name="R@5")
        self.heat_plot = pg.PlotWidget(title="similarity: held-out images × captions")
        self.heat_plot.setLabel("left", "image")
        self.heat_plot.setLabel("bottom", "caption")
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

        rt = W.QGroupBox(f"Text-to-image retrieval from {N_GALLERY} images (green: the query is true of it)")
        rl = W.QVBoxLayout(rt)
        row = W.QHBoxLayout()
        self.query = W.QLineEdit(DEMO_QUERY)
        self.query.setToolTip("a caption: colour, shape, size, count and position (green: true of the image)")
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
        middle.setSizes([380, 700])
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

    def _show_estimate(self) -> None:
        """What training will cost, from the CPU time the shipped model's training measured (one
        thread: on an idle core the wall time is about the same)."""
        info = self.shipped_info
        if not info or self.training:
            self.estimate.setText("")
            return
        cpu, steps, batch = info.get("cpu_seconds"), info.get("steps"), info.get("train_config", {}).get("batch_size")
        if not cpu or not steps or not batch:
            self.estimate.setText("")
            return
        guess = cpu / steps * self.steps.value() * self.batch.value() / batch
        self.estimate.setText(
            (f"About {_duration(guess)} on an idle core" if self.size.currentIndex() == 0 else
             "Faster than the standard model") +
            f" (the shipped model: {steps} steps of {batch} pairs, {_duration(cpu)} of CPU); "
            "longer while other programs run.")

    def _toggle(self, checked: bool) -> None:
        self.start() if checked else self.stop()

    def start(self, *, threads: int = 1, eval_every: int = 250) -> None:
        """Train a new model from scratch in the background (the shown model is replaced as it learns)."""
        self.stop()
        self.show_error(None)
        self.training = True
        self.estimate.setText("")
        steps = self.steps.value()
        self.progress.setRange(0, steps)
        self.progress.setValue(0)
        self.progress_label.setText("starting (importing PyTorch)…")
        self.job = Job(lambda h: _train(h, steps=steps, batch_size=self.batch.value(),
                                        small=self.size.currentIndex() == 1, seed=self.seed.value(),
                                        threads=threads, eval_every=eval_every, images=self._images()),
                       on_update=self._show, on_finished=self._finished, what="CLIP training",
                       parent=self.widget).start()
        self.start_button.setChecked(True)
        self.start_button.setText("Stop")
        self.context.status("CLIP: training")

    def stop(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.stop(timeout=10 if self.training else 0)  # a load cannot be interrupted: drop it unseen
        self.training = False
        self.start_button.setChecked(False)
        self.start_button.setText("Train from scratch")

    def shutdown(self) -> None:
        self.stop()

    def _load_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.widget, "Load a CLIP model", "",
                                                        "PyTorch model (*.pt);;All (*)")
        if path:
            self.load(path)

    def load(self, path: str) -> None:
        """Show a model saved by ``doascope clip train`` with its training curves (training stops)."""
        self.stop()
        self.show_error(None)
        self.progress.setRange(0, 0)  # busy until it is read
        self.progress_label.setText(f"loading {path}…")
        images = self._images()
        self.job = Job(lambda h: _load(h, path=path, images=images), on_update=self._show, on_finished=self._finished,
                       what="loading the CLIP model", parent=self.widget).start()

    def _images(self) -> dict:
        return {"zero_shot": self.zs_images, "gallery": self.gallery}

    def _new_images(self) -> None:
        self.zs_images, _, self.zs_scenes = data.make_batch(self.rng, N_ZERO_SHOT_IMAGES, "test")
        self.embeddings.pop("zero_shot", None)
        self.classify()

    def classify(self) -> None:
        if self.model is None:
            self.zero_shot_grid.show_images(self.zs_images, [""] * len(self.zs_images))
            return
        from doascope.models import clip

        template = self.template.text().strip()
        labels = [s.strip() for s in self.labels.text().split(",") if s.strip()]
        try:
            probs = clip.zero_shot(self.model, self.zs_images, labels, template,
                                   image_embeddings=self.embeddings.get("zero_shot"))
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

        idx, sims = clip.retrieve(self.model, self.query.text(), self.gallery, k=8,
                                  image_embeddings=self.embeddings.get("gallery"))
        described = data.parse_caption(self.query.text())
        colours = None
        if described is not None:
            colours = ["#3cb44b" if self.gallery_scenes[i].shows(described) else "#ff6b6b" for i in idx]
        self.retrieval_grid.show_images(self.gallery[idx], [f"#{i + 1}  cos {s:.2f}" for i, s in enumerate(sims)],
                                        colours)

    def show_error(self, text: str | None) -> None:
        self.message.setText(text or "")
        if text:
            self.context.status(text, error=True)

    # -- drawing ----------------------------------------------------------------------------------

    def _show(self, v: dict) -> None:
        """Draw what a job published (GUI thread)."""
        losses, temps = v.get("losses") or [], v.get("temperatures") or []
        if losses:
            x = np.arange(1, len(losses) + 1)
            self.loss_curve.setData(x, np.maximum(np.asarray(losses), 1e-4))
            self.temp_curve.setData(x, np.asarray(temps))
            self.loss_label.setText(f"{np.mean(losses[-20:]):.3f}")
            self.temp_label.setText(f"{temps[-1]:.4f}  (scale {1 / temps[-1]:.1f})")
        step, total = v.get("step", 0), v.get("total", 0)
        if "path" in v:
            info = v.get("info", {})
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            cpu = info.get("cpu_seconds")
            made = f", trained in {_duration(cpu)} of CPU" if cpu else ""
            name = "the shipped model" if v["path"] == str(SHIPPED_MODEL) else v["path"]
            self.progress_label.setText(f"showing {name}: {step} steps{made}")
            if v["path"] == str(SHIPPED_MODEL):
                self.shipped_info = info
                self._show_estimate()
        elif total:
            self.progress.setRange(0, total)
            self.progress.setValue(step)
            eta = v.get("eta")
            left = f", about {_duration(eta)} left" if eta is not None and step < total else ""
            self.progress_label.setText(f"step {step} / {total}, {_duration(v.get('elapsed', 0))} so far{left}")
        sim = v.get("similarity")
        if sim is not None:
            self.heatmap.setImage(sim, levels=(float(sim.min()), float(sim.max())), autoLevels=False)
            self.heat_plot.setRange(xRange=(0, sim.shape[1]), yRange=(0, sim.shape[0]), padding=0.02)
        history = v.get("metric_history")
        if history:
            h = np.asarray(history, dtype=float)
            self.acc_curve.setData(h[:, 0], h[:, 1])
            self.r1_curve.setData(h[:, 0], h[:, 2])
            self.r5_curve.setData(h[:, 0], h[:, 3])
        metrics = v.get("metrics")
        if metrics:
            chance = metrics["zero_shot"]["colour and shape"]["chance"]
            self.acc_label.setText(f"{100 * metrics['zero_shot_accuracy']:.1f}%  (chance {100 * chance:.1f}%)")
            self.r1_label.setText(f"{100 * metrics['recall_at_1']:.1f}%")
            self.r5_label.setText(f"{100 * metrics['recall_at_5']:.1f}%")
            self.tasks_label.setText("zero-shot by " + ", ".join(
                f"{task} {100 * m['accuracy']:.0f}%" for task, m in metrics["zero_shot"].items()))
        model = v.get("model")
        if model is not None and model is not self.model:
            self.model = model
            current = self._images()  # the images may have changed since the job began
            self.embeddings = {name: emb for name, (imgs, emb) in (v.get("embeddings") or {}).items()
                               if current.get(name) is imgs}
            self.classify()
            self.search()

    def _finished(self, error: str | None) -> None:
        trained = self.training
        self.job = None
        self.training = False
        self.start_button.setChecked(False)
        self.start_button.setText("Train from scratch")
        if error:
            self.progress.setRange(0, 1)
            self.show_error(error)
            return
        if trained:
            self.context.status(f"CLIP: trained {self.progress.value()} steps")
            self.progress_label.setText(f"trained {self.progress.value()} steps")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
