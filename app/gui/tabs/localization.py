"""The Localization tab: input, profile and analysis controls beside the live plots."""

from __future__ import annotations

import inspect
import os
import time

import numpy as np
from PySide6 import QtCore, QtWidgets

from doascope import DoascopeError
from doascope.app.config import InputConfig
from doascope.app.gui.jobs import Job
from doascope.app.gui.tabs import Tab
from doascope.app.gui.widgets import AzElMap, LevelMeters, PolarPlot, RoomMap, Waterfall
from doascope.sim.presets import PRESETS
from doascope.config import DEFAULT_BAND, DEFAULT_METHOD, DEFAULT_SMOOTHING, AnalysisConfig

INPUTS = ("Simulated room", "File", "Device")
HISTORY_SECONDS = (10, 30, 60, 120, 300)
DEFAULT_HISTORY = 30


def _default(cls, name: str) -> float:
    """A tracker's own default for a setting (the tracker owns it; the GUI only shows it)."""
    return float(inspect.signature(cls.__init__).parameters[name].default)


class LocalizationTab(Tab):
    title = "Localization"
    order = 0

    def __init__(self, context):
        super().__init__(context)
        self.engine = None
        self.sim_job: Job | None = None  # renders a simulated room before the engine can start
        self.writer = None
        self.recorder = None
        self.last_seq = -1
        self.error: str | None = None
        self.widget = QtWidgets.QWidget()
        self._build()
        self.timer = QtCore.QTimer(self.widget)
        self.timer.setInterval(33)  # ~30 Hz: the display's pace, whatever the engine's frame rate
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._apply_initial(context.args)

    # -- layout -----------------------------------------------------------------------------------

    def _build(self) -> None:
        from doascope.dsp.estimators import available_methods
        from doascope.hardware_profiles import list_profiles

        W = QtWidgets
        side = W.QWidget()
        form = W.QFormLayout(side)
        self.input_kind = W.QComboBox()
        self.input_kind.addItems(INPUTS)
        form.addRow("Input", self.input_kind)
        self.scene = W.QComboBox()
        for name, preset in PRESETS.items():
            self.scene.addItem(name)
            self.scene.setItemData(self.scene.count() - 1, preset.description, QtCore.Qt.ToolTipRole)
        form.addRow("Scene", self.scene)
        file_row = W.QHBoxLayout()
        self.file_path = W.QLineEdit()
        self.file_path.setPlaceholderText("multichannel recording")
        browse = W.QPushButton("Open…")
        browse.clicked.connect(self._browse_file)
        file_row.addWidget(self.file_path)
        file_row.addWidget(browse)
        form.addRow("File", file_row)
        dev_row = W.QHBoxLayout()
        self.device = W.QComboBox()
        self.device.setEditable(True)
        refresh = W.QPushButton("↻")
        refresh.setToolTip("list the audio input devices again")
        refresh.clicked.connect(self._list_devices)
        dev_row.addWidget(self.device, 1)
        dev_row.addWidget(refresh)
        form.addRow("Device", dev_row)
        self.profile = W.QComboBox()
        for p in list_profiles(rooms=True):
            self.profile.addItem(f"{p.id}" + (" (room: positions)" if p.room is not None else ""), p.id)
        self.profile.setCurrentIndex(max(0, self.profile.findData("respeaker_usb_v2")))
        form.addRow("Profile", self.profile)
        self.method = W.QComboBox()
        self.method.addItems([m for m in available_methods()])
        self.method.setCurrentText(DEFAULT_METHOD)
        form.addRow("Method", self.method)
        band_row = W.QHBoxLayout()
        self.fmin, self.fmax = W.QSpinBox(), W.QSpinBox()
        for box, value in zip((self.fmin, self.fmax), DEFAULT_BAND):
            box.setRange(0, 24000)
            box.setSingleStep(100)
            box.setSuffix(" Hz")
            box.setValue(int(value))
            band_row.addWidget(box)
        form.addRow("Band", band_row)
        self.sources = W.QSpinBox()
        self.sources.setRange(1, 8)
        form.addRow("Sources", self.sources)
        self.smoothing = W.QDoubleSpinBox()
        self.smoothing.setRange(0.0, 0.95)
        self.smoothing.setSingleStep(0.05)
        self.smoothing.setValue(DEFAULT_SMOOTHING)
        form.addRow("Smoothing", self.smoothing)
        self.gate = W.QDoubleSpinBox()
        self.gate.setToolTip("how far a detection may be from a track's prediction and still update it")
        self.gate_mode = None
        self._gate_values: dict[str, float] = {}
        self._set_gate_units("doa")
        form.addRow("Track gate", self.gate)
        from doascope.dsp.tracker import TRACK_TIMEOUT

        self.death = W.QDoubleSpinBox()
        self.death.setRange(0.1, 60.0)
        self.death.setValue(TRACK_TIMEOUT)
        self.death.setSuffix(" s")
        self.death.setToolTip("how long a silent talker keeps its track id (hidden after a short pause)")
        form.addRow("Track timeout", self.death)
        self.record = W.QCheckBox("raw audio + frames to folder")
        rec_row = W.QHBoxLayout()
        self.record_dir = W.QLineEdit(os.path.abspath("doascope-recordings"))
        rec_row.addWidget(self.record)
        form.addRow("Record", rec_row)
        form.addRow("", self.record_dir)
        self.history = W.QComboBox()
        for sec in HISTORY_SECONDS:
            self.history.addItem(f"{sec} s" if sec < 60 else f"{sec // 60} min", sec)
        self.history.setCurrentIndex(HISTORY_SECONDS.index(DEFAULT_HISTORY))
        self.history.setToolTip("how much of the past the azimuth-over-time plot shows")
        form.addRow("History", self.history)
        self.start_button = W.QPushButton("Start")
        self.start_button.setCheckable(True)
        self.start_button.clicked.connect(self._toggle)
        form.addRow(self.start_button)
        self.busy = W.QProgressBar()
        self.busy.setRange(0, 0)  # busy indicator while a room is simulated
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(10)
        self.busy.hide()
        self.notice = W.QLabel("")
        self.notice.setWordWrap(True)
        form.addRow(self.busy)
        form.addRow(self.notice)
        self.message = W.QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #ff6b6b")
        form.addRow(self.message)

        self.polar = PolarPlot()
        self.room_map = RoomMap()
        self.main_view = W.QStackedWidget()  # the polar plot, or the room map for distributed mics
        self.main_view.addWidget(self.polar)
        self.main_view.addWidget(self.room_map)
        self.waterfall = Waterfall(seconds=DEFAULT_HISTORY)
        self.azel = AzElMap()
        self.levels = LevelMeters()
        self.track_table = W.QTableWidget(0, 5)
        self.track_table.setHorizontalHeaderLabels(["id", "azimuth", "elevation", "activity", "age (s)"])
        self.track_table.verticalHeader().setVisible(False)
        self.track_table.horizontalHeader().setSectionResizeMode(W.QHeaderView.Stretch)

        right = W.QSplitter(QtCore.Qt.Vertical)
        top = W.QSplitter(QtCore.Qt.Horizontal)
        top.addWidget(self.main_view)
        self.plots_tabs = W.QTabWidget()
        self.plots_tabs.addTab(self.waterfall, "Azimuth over time")
        self.plots_tabs.addTab(self.azel, "Azimuth-elevation")
        top.addWidget(self.plots_tabs)
        top.setSizes([450, 650])
        bottom = W.QSplitter(QtCore.Qt.Horizontal)
        bottom.addWidget(self.levels)
        bottom.addWidget(self.track_table)
        bottom.setSizes([400, 700])
        right.addWidget(top)
        right.addWidget(bottom)
        right.setSizes([520, 220])
        scroll = W.QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(290)
        layout = W.QHBoxLayout(self.widget)
        layout.addWidget(scroll)
        layout.addWidget(right, 1)

        self.input_kind.currentIndexChanged.connect(self._input_changed)
        self._input_changed()
        for w in (self.scene, self.profile):
            w.currentIndexChanged.connect(self._restart_if_running)
        self.file_path.editingFinished.connect(self._restart_if_running)
        self.device.activated.connect(self._restart_if_running)
        self.method.currentTextChanged.connect(lambda m: self._configure(method=m))
        self.sources.valueChanged.connect(lambda k: self._configure(n_sources=k))
        self.smoothing.valueChanged.connect(lambda a: self._configure(smoothing=a))
        self.fmin.valueChanged.connect(lambda _: self._configure(band=(self.fmin.value(), self.fmax.value())))
        self.fmax.valueChanged.connect(lambda _: self._configure(band=(self.fmin.value(), self.fmax.value())))
        self.gate.valueChanged.connect(self._gate_changed)
        self.history.currentIndexChanged.connect(lambda _: self.waterfall.set_history(self.history.currentData()))
        self.profile.currentIndexChanged.connect(lambda _: self._profile_changed())
        self.death.valueChanged.connect(lambda _: self._configure(tracker=self._tracker_params()))

    def _apply_initial(self, args) -> None:
        if args is None:
            return
        if getattr(args, "profile", None):
            i = self.profile.findData(args.profile)
            if i < 0:
                self.profile.addItem(args.profile, args.profile)
                i = self.profile.count() - 1
            self.profile.setCurrentIndex(i)
        if getattr(args, "method", None):
            self.method.setCurrentText(args.method)
        if getattr(args, "sources", None):
            self.sources.setValue(args.sources)
        if getattr(args, "file", None):
            self.input_kind.setCurrentIndex(1)
            self.file_path.setText(args.file)
        elif getattr(args, "device", None):
            self.input_kind.setCurrentIndex(2)
            self.device.setEditText(str(args.device))
        else:
            self.input_kind.setCurrentIndex(0)
            if getattr(args, "sim", None):
                self.scene.setCurrentText(args.sim)
        if getattr(args, "autostart", True):
            self.start()

    # -- actions ----------------------------------------------------------------------------------

    def _input_changed(self) -> None:
        kind = self.input_kind.currentText()
        self.scene.setEnabled(kind == INPUTS[0])
        self.file_path.setEnabled(kind == INPUTS[1])
        self.device.setEnabled(kind == INPUTS[2])
        if kind == INPUTS[2] and self.device.count() == 0:
            self._list_devices()
        self._restart_if_running()

    def _list_devices(self) -> None:
        from doascope.app.runtime.sources import import_sounddevice
        from doascope.hardware_profiles import match_device

        self.device.clear()
        try:
            sd = import_sounddevice()
            for i, d in enumerate(sd.query_devices()):
                if d["max_input_channels"] > 0:
                    prof = match_device(d["name"])
                    self.device.addItem(f"{i}: {d['name']} ({d['max_input_channels']} ch)"
                                        + (f" -> {prof.id}" if prof else ""), i)
        except Exception as exc:  # PortAudio missing or broken: say so in the window
            self.show_error(str(exc))

    def _browse_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.widget, "Open a multichannel recording", "",
                                                        "Audio (*.wav *.flac *.ogg *.w64 *.caf *.aiff);;All (*)")
        if path:
            self.file_path.setText(path)
            self.input_kind.setCurrentIndex(1)
            self._restart_if_running()

    def _set_gate_units(self, mode: str) -> None:
        """The gate in the units of the mode: degrees between directions, metres between positions."""
        from doascope.dsp.tracker import PositionTracker, Tracker

        if mode == self.gate_mode:
            return
        if self.gate_mode is not None:
            self._gate_values[self.gate_mode] = self.gate.value()
        self.gate_mode = mode
        self.gate.blockSignals(True)
        if mode == "position":
            self.gate.setDecimals(2)
            self.gate.setRange(0.05, 5.0)
            self.gate.setSingleStep(0.05)
            self.gate.setSuffix(" m")
            self.gate.setValue(self._gate_values.get(mode, _default(PositionTracker, "gate_m")))
        else:
            self.gate.setDecimals(1)
            self.gate.setRange(2.0, 90.0)
            self.gate.setSingleStep(1.0)
            self.gate.setSuffix(" °")
            self.gate.setValue(self._gate_values.get(mode, _default(Tracker, "gate_deg")))
        self.gate.blockSignals(False)

    def _profile_changed(self) -> None:
        from doascope.hardware_profiles import load_profile

        try:
            room = load_profile(self.profile.currentData()).room is not None
        except DoascopeError:
            return  # said when starting
        self._set_gate_units("position" if room else "doa")

    def _gate_changed(self, _value) -> None:
        self._configure(tracker=self._tracker_params())

    def _tracker_params(self) -> dict:
        gate = {"gate_m": self.gate.value()} if self.gate_mode == "position" else {"gate_deg": self.gate.value()}
        return {**gate, "death_time": self.death.value()}

    def _config(self, profile) -> AnalysisConfig:
        if profile.room is not None:  # distributed microphones: positions in the room, own defaults
            return AnalysisConfig(method=self.method.currentText(), n_sources=self.sources.value(), mode="position",
                                  tracker=self._tracker_params())
        return AnalysisConfig(method=self.method.currentText(), n_sources=self.sources.value(),
                              band=(float(self.fmin.value()), float(self.fmax.value())),
                              smoothing=self.smoothing.value(), tracker=self._tracker_params())

    def _source_args(self) -> InputConfig:
        kind = self.input_kind.currentText()
        dev = self.device.currentData()
        if dev is None and self.device.currentText():
            dev = self.device.currentText()
        return InputConfig(file=(self.file_path.text() or None) if kind == INPUTS[1] else None,
                           sim=self.scene.currentText() if kind == INPUTS[0] else None,
                           device=dev if kind == INPUTS[2] else None, loop=True)

    def _toggle(self, checked: bool) -> None:
        self.start() if checked else self.stop()

    def start(self) -> None:
        """Start the engine on the chosen input. A simulated room is rendered first in the
        background (seconds), with a "simulating room" notice; files and devices start at once."""
        from doascope.app.runtime.sources import make_source
        from doascope.hardware_profiles import load_profile

        self.stop()
        self.show_error(None)
        try:
            args = self._source_args()
            if self.input_kind.currentText() == INPUTS[1] and not args.file:
                raise DoascopeError("choose a recording first (Open…)")
            profile = load_profile(self.profile.currentData())
            self._set_gate_units("position" if profile.room is not None else "doa")
            if args.sim:
                self._simulate(args, profile)
                return
            self._start_engine(make_source(args, profile), profile)
        except (DoascopeError, OSError) as exc:
            self.stop()
            self.show_error(str(exc))

    def _simulate(self, args, profile) -> None:
        from doascope.app.runtime.sources import make_source

        text = f"simulating room '{args.sim}' for {profile.id} (image-source method; a few seconds)…"
        self.notice.setText(text)
        self.busy.show()
        self.context.status(text)
        self.start_button.setChecked(True)
        self.start_button.setText("Stop")

        def finished(error: str | None) -> None:
            job, self.sim_job = self.sim_job, None
            self.busy.hide()
            self.notice.setText("")
            if error or job is None:
                self.stop()
                self.show_error(error)
                return
            try:
                self._start_engine(job.handle.result, profile)
            except (DoascopeError, OSError) as exc:
                self.stop()
                self.show_error(str(exc))

        def work(h):
            h.result = make_source(args, profile)

        self.sim_job = Job(work, on_update=lambda _: None, on_finished=finished, what="simulating the room",
                           interval_ms=50, parent=self.widget).start()

    def _start_engine(self, source, profile) -> None:
        from doascope.app.runtime.engine import Engine
        from doascope.app.runtime.outputs import FrameWriter, RawRecorder

        self.engine = Engine(source, profile, self._config(profile))
        if profile.room is not None:
            self.room_map.set_room(profile.room, profile.positions)
        for w in (self.fmin, self.fmax, self.smoothing):  # directions only
            w.setEnabled(profile.room is None)
        if self.record.isChecked():
            folder = self.record_dir.text()
            os.makedirs(folder, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.writer = FrameWriter(os.path.join(folder, f"frames-{stamp}.jsonl"))
            self.engine.subscribe(self.writer.put)
        self.engine.start()
        if self.record.isChecked():
            ext = "flac" if self.engine.ring.channels <= 8 else "wav"
            self.recorder = RawRecorder(os.path.join(folder, f"raw-{stamp}.{ext}"), self.engine.ring,
                                        self.engine.fs)
        self.start_button.setChecked(True)
        self.start_button.setText("Stop")
        self.last_seq = -1

    def stop(self) -> None:
        job, self.sim_job = self.sim_job, None
        if job is not None:
            job.stop(timeout=0)  # the rendering cannot be interrupted: let it finish unseen
            self.busy.hide()
            self.notice.setText("")
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop()
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.start_button.setChecked(False)
        self.start_button.setText("Start")

    def _restart_if_running(self, *_) -> None:
        if self.engine is not None or self.sim_job is not None:
            self.start()

    def _configure(self, **changes) -> None:
        if self.engine is None:
            return
        try:
            self.engine.configure(**changes)
            self.show_error(None)
        except DoascopeError as exc:
            self.show_error(str(exc))

    def show_error(self, text: str | None) -> None:
        self.error = text
        self.message.setText(text or "")
        self.context.status(text, error=True) if text else None

    # -- drawing ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        eng = self.engine
        if eng is None:
            return
        if eng.error:
            self.show_error(eng.error)
            self.stop()
            return
        frame = eng.latest
        if frame is None or frame.seq == self.last_seq:
            if not eng.running and frame is not None:
                self.stop()
            return
        self.last_seq = frame.seq
        position = frame.mode == "position"
        self.main_view.setCurrentIndex(1 if position else 0)
        self.plots_tabs.setVisible(not position)
        if position:
            self.room_map.show_frame(frame)
            self.levels.show_frame(frame)
            self._fill_tracks(frame)
            self.context.status(frame.status or f"{eng.source.description} | positions | t = {frame.t:6.1f} s | "
                                f"RTF {frame.rtf:.3f} | overruns {frame.overruns} | xruns {frame.xruns}",
                                error=bool(frame.status))
            return
        self.polar.show_frame(frame)
        self.waterfall.push(frame)
        sphere = frame.grid.kind == "sphere"
        if self.plots_tabs.isTabVisible(1) != sphere:  # elevation only for arrays that resolve it
            self.plots_tabs.setTabVisible(1, sphere)
        if sphere:
            self.azel.show_frame(frame)
        self.levels.show_frame(frame)
        self._fill_tracks(frame)
        status = (f"{eng.source.description} | {frame.method} | t = {frame.t:6.1f} s | RTF {frame.rtf:.3f} | "
                  f"latency {frame.latency * 1e3:4.0f} ms | overruns {frame.overruns} | xruns {frame.xruns}")
        self.context.status(frame.status or status, error=bool(frame.status))

    def _fill_tracks(self, frame) -> None:
        table = self.track_table
        table.setRowCount(len(frame.tracks))
        position = frame.mode == "position"
        table.setHorizontalHeaderLabels(["id", "x (m)", "y (m)", "z (m)", "activity", "age (s)"] if position
                                        else ["id", "azimuth", "elevation", "activity", "age (s)"])
        table.setColumnCount(6 if position else 5)
        for row, t in enumerate(frame.tracks):
            cells = ((str(t.id), f"{t.x:.2f}", f"{t.y:.2f}", f"{t.z:.2f}", f"{t.activity:.2f}", f"{t.age:.1f}")
                     if position else
                     (str(t.id), f"{t.azimuth:.1f}", f"{t.elevation:.1f}", f"{t.activity:.2f}", f"{t.age:.1f}"))
            for col, text in enumerate(cells):
                item = table.item(row, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    table.setItem(row, col, item)
                item.setText(text)

    def shutdown(self) -> None:
        self.timer.stop()
        self.stop()


def spectrum_peak_azimuth(tab: LocalizationTab) -> float:
    """Azimuth of the polar curve's maximum, read back from the plotted data (used by tests)."""
    return float(tab.polar.spectrum_azimuths[int(np.argmax(tab.polar.spectrum_values))])
