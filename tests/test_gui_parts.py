"""GUI building blocks: the background-job helper every tab uses, label placement on the maps,
the azimuth-over-time plot's time axis and history, units that follow the mode, `gui --help`."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from doascope.app.gui.jobs import Job  # noqa: E402
from doascope.app.gui.widgets import place_labels  # noqa: E402


# -- the job helper ---------------------------------------------------------------------------------


def test_job_delivers_updates_then_finishes_once_on_the_gui_thread(qtbot):
    gui_thread = threading.current_thread()
    updates, finished, threads = [], [], []

    def work(h):
        for i in range(5):
            h.publish(step=i, curve=list(range(i + 1)))
        h.publish(done=True)

    def on_update(values):
        threads.append(threading.current_thread())
        updates.append(values)

    def on_finished(error):
        threads.append(threading.current_thread())
        finished.append(error)

    job = Job(work, on_update=on_update, on_finished=on_finished, what="counting", interval_ms=10).start()
    qtbot.waitUntil(lambda: bool(finished), timeout=60000)
    qtbot.wait(50)
    assert finished == [None] and not job.running
    assert all(t is gui_thread for t in threads)
    # the last delivery holds every key, at its latest value
    assert updates[-1]["step"] == 4 and updates[-1]["curve"] == [0, 1, 2, 3, 4] and updates[-1]["done"]


def test_job_reports_an_error_in_one_line(qtbot):
    finished = []

    def work(h):
        h.publish(step=1)
        raise ValueError("the data ran out\nand here is a long explanation")

    Job(work, on_update=lambda v: None, on_finished=finished.append, what="CLIP training", interval_ms=10).start()
    qtbot.waitUntil(lambda: bool(finished), timeout=60000)
    assert finished == ["CLIP training failed: the data ran out"]


def test_job_stops_when_asked_and_delivers_nothing_after(qtbot):
    started, updates, finished = threading.Event(), [], []

    def work(h):
        started.set()
        while not h.stopped():
            h.publish(alive=True)
            h.stopped() or threading.Event().wait(0.01)

    job = Job(work, on_update=updates.append, on_finished=finished.append, interval_ms=10).start()
    assert started.wait(60)
    job.stop(timeout=60)
    assert not job._thread.is_alive()
    n = len(updates)
    qtbot.wait(100)
    assert len(updates) == n and finished == []


# -- labels on the maps -----------------------------------------------------------------------------


def _overlap(a, b, gap=0.0):
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def test_placed_labels_never_overlap_even_for_crowded_points():
    rng = np.random.default_rng(0)
    for n in (2, 4, 8, 12):
        anchors = rng.normal(100, 6, (n, 2))  # all within a few pixels of each other
        sizes = np.column_stack([rng.uniform(30, 140, n), np.full(n, 16.0)])
        corners = place_labels(anchors, sizes)
        rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(corners, sizes)]
        for i in range(n):
            for j in range(i):
                assert not _overlap(rects[i], rects[j]), (n, i, j)
        # no label hides a marker
        for (x0, y0, x1, y1) in rects:
            cx, cy = np.clip(anchors[:, 0], x0, x1), np.clip(anchors[:, 1], y0, y1)
            assert np.all(np.hypot(cx - anchors[:, 0], cy - anchors[:, 1]) >= 10 - 1e-9)


def _position_frame(tracks):
    xs, ys = np.linspace(0, 6, 31), np.linspace(0, 5, 26)
    spectrum = np.random.default_rng(0).random((31, 26)).astype(np.float32)
    return SimpleNamespace(spectrum=spectrum, grid=(xs, ys), peaks=(), tracks=tuple(tracks))


def test_track_labels_on_the_room_map_do_not_overlap(qtbot):
    from doascope.app.gui.widgets import RoomMap

    room_map = RoomMap()
    qtbot.addWidget(room_map)
    room_map.resize(700, 560)
    room_map.show()
    room_map.set_room([[0, 6], [0, 5], [0, 3]], np.array([[0.1, 0.1, 1.0], [5.9, 4.9, 1.0]]))
    qtbot.wait(50)
    # four talkers within half a metre: their labels, a few metres wide at this scale, would pile up
    tracks = [SimpleNamespace(id=i + 1, x=3.0 + 0.15 * i, y=2.5 + 0.1 * (i % 2), z=1.5) for i in range(4)]
    room_map.show_frame(_position_frame(tracks))
    labels = [item for item in room_map._labels if item.isVisible()]
    assert len(labels) == 4
    rects = [item.sceneBoundingRect() for item in labels]
    for i in range(4):
        for j in range(i):
            assert not rects[i].intersects(rects[j]), (rects[i], rects[j])
    assert all(item.toPlainText().endswith(" m") for item in labels)


# -- the azimuth-over-time plot ---------------------------------------------------------------------


def _doa_frame(t, azimuth):
    from doascope.dsp.grids import circle_grid

    grid = circle_grid(1.0)
    spectrum = np.exp(-0.5 * ((grid.azimuth - azimuth + 180) % 360 - 180) ** 2 / 10 ** 2).astype(np.float32)
    return SimpleNamespace(spectrum=spectrum, grid=grid, active=True, t=t, tracks=())


def test_waterfall_axis_is_stream_time_whatever_the_frame_rate(qtbot):
    from doascope.app.gui.widgets import Waterfall

    w = Waterfall(seconds=10.0)
    qtbot.addWidget(w)
    bar = w.colour_bar
    assert tuple(bar.levels()) == (0.0, 1.0)
    # 100 frames a second for 4 s: 4 s of the 10 s history filled, not the whole plot
    for i in range(400):
        w.push(_doa_frame(i / 100, 91.0))
    filled = w.data.max(axis=0) > 0.5
    assert abs(filled.sum() * w.bin - 4.0) < 0.1
    assert np.argmax(w.data[:, -1]) == 45  # 91 degrees: the 2-degree row 90-92
    w.set_history(60.0)
    assert w.seconds == 60.0 and w.data.max() == 0.0
    for i in range(0, 6000, 25):  # 4 frames a second for 60 s: every column filled
        w.push(_doa_frame(i / 100, 200.0))
    assert (w.data[:, 1:].max(axis=0) > 0.5).all()  # 59.75 s of frames: all but the oldest column


# -- the Localization tab ---------------------------------------------------------------------------


def _loc_tab(qtbot, **kw):
    from doascope.app.gui.tabs.localization import LocalizationTab

    args = SimpleNamespace(**{**dict(profile="respeaker_usb_v2", method=None, sources=None, sim=None, file=None,
                                     device=None, autostart=False), **kw})
    messages = []
    tab = LocalizationTab(SimpleNamespace(args=args, status=lambda text, error=False: messages.append(text)))
    qtbot.addWidget(tab.widget)
    return tab, messages


def test_track_gate_reads_in_the_units_of_the_mode(qtbot):
    from doascope.dsp.tracker import PositionTracker

    tab, _ = _loc_tab(qtbot)
    try:
        assert tab.gate.suffix() == " °"
        tab.gate.setValue(25.0)
        tab.profile.setCurrentIndex(tab.profile.findData("room_walls_6mic"))  # distributed mics: positions
        assert tab.gate.suffix() == " m" and tab.gate.value() == pytest.approx(PositionTracker().gate_m)
        assert tab._tracker_params()["gate_m"] == pytest.approx(PositionTracker().gate_m)
        tab.profile.setCurrentIndex(tab.profile.findData("respeaker_usb_v2"))
        assert tab.gate.suffix() == " °" and tab.gate.value() == 25.0  # each mode keeps its own value
        assert "gate_deg" in tab._tracker_params()
    finally:
        tab.shutdown()


def test_a_simulated_room_says_so_while_it_renders_then_runs(qtbot):
    tab, messages = _loc_tab(qtbot, sim="two-talkers")
    tab.widget.show()
    try:
        tab.start()
        assert tab.engine is None and "simulating room 'two-talkers'" in tab.notice.text()
        assert tab.busy.isVisible() and any("simulating room" in (m or "") for m in messages)
        qtbot.waitUntil(lambda: tab.engine is not None, timeout=120000)
        assert tab.notice.text() == "" and not tab.busy.isVisible() and tab.error is None
    finally:
        tab.shutdown()


def test_gui_help_explains_every_option():
    from doascope.app.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    gui = sub.choices["gui"]
    for action in gui._actions:
        assert action.help, f"gui {action.option_strings} has no help text"
    k = next(a for a in gui._actions if "-k" in a.option_strings)
    assert "at most" in k.help


def test_gui_tab_option_names_a_tab_or_says_which_exist():
    from doascope import ParameterError
    from doascope.app.gui.window import tab_index

    titles = ["Localization", "CLIP", "Meta-learning"]
    assert tab_index(titles, "clip") == 1 and tab_index(titles, "Meta") == 2
    with pytest.raises(ParameterError, match="the tabs are Localization, CLIP, Meta-learning"):
        tab_index(titles, "Bogus")
