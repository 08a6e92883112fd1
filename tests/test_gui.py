"""The Qt GUI: offscreen with pytest-qt, plus one real window under Xvfb."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")

from doascope.dsp.metrics import azimuth_errors  # noqa: E402

TRUTH = (60.0, 215.0)  # the 'two-talkers' preset


def _args(**kw):
    base = dict(profile="respeaker_usb_v2", method="normmusic", sources=2, sim="two-talkers", file=None,
                device=None, autostart=True)
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.fixture
def window(qtbot):
    from doascope.app.gui.window import MainWindow

    win = MainWindow(_args())
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def _tab(win):
    return win.tab("Localization")


def test_window_discovers_its_tabs_and_builds(window):
    from doascope.app.gui.tabs import discover_tabs

    titles = [window.tabs_widget.tabText(i) for i in range(window.tabs_widget.count())]
    assert titles[0] == "Localization"
    assert titles == [c.title for c in discover_tabs() if not c.unavailable()]


def test_replayed_scene_shows_both_talkers_at_their_azimuths(window, qtbot):
    tab = _tab(window)
    # Deadlines for a busy machine (the engine compiles its kernels on its first frame), not measurements.
    qtbot.waitUntil(lambda: tab.engine is not None and tab.engine.latest is not None, timeout=120000)
    window.stalls.clear()  # measure the event loop while frames are drawn
    qtbot.waitUntil(lambda: len(tab.engine.latest.tracks) == 2 and tab.engine.latest.t > 4.0, timeout=120000)
    # The views are drawn on the GUI's timer: wait until they show both tracks (a fixed wait would
    # assume how soon a busy machine draws), and until the event loop has turned 100 times.
    qtbot.waitUntil(lambda: len(tab.polar.tracks.getData()[0] if tab.polar.tracks.getData()[0] is not None else [])
                    == 2 and tab.track_table.rowCount() == 2 and len(window.stalls) > 100, timeout=60000)
    # Read back what the plots hold: the polar plot's track markers and its spectrum curve.
    xs, ys = tab.polar.tracks.getData()
    drawn = (np.degrees(np.arctan2(-np.asarray(xs), np.asarray(ys))) % 360.0).tolist()
    assert len(drawn) == 2
    assert np.all(azimuth_errors(drawn, TRUTH) < 10), drawn
    from doascope.app.gui.tabs.localization import spectrum_peak_azimuth

    assert min(azimuth_errors([spectrum_peak_azimuth(tab)], TRUTH)) < 10
    assert tab.track_table.rowCount() == 2
    assert tab.waterfall.data[:, -30:].max() > 0.9  # the waterfall is filling
    # The event loop kept turning while the engine ran (how late its ticks come depends on the
    # machine's load, so it is not asserted here).
    assert len(window.stalls) > 100


def test_switching_method_profile_and_input_while_running(window, qtbot, tmp_path):
    import soundfile as sf

    from helpers import plane_wave_file

    tab = _tab(window)
    qtbot.waitUntil(lambda: tab.engine is not None and tab.engine.latest is not None, timeout=120000)
    tab.method.setCurrentText("srp-phat")
    qtbot.waitUntil(lambda: tab.engine.latest.method == "srp-phat", timeout=60000)
    tab.profile.setCurrentIndex(tab.profile.findData("respeaker_6mic"))
    qtbot.waitUntil(lambda: tab.engine is not None and tab.engine.profile.id == "respeaker_6mic"
                    and tab.engine.latest is not None, timeout=120000)
    wav = plane_wave_file(tmp_path / "pw.wav", "respeaker_6mic", azimuth=123.0)
    assert sf.info(wav).channels == 8
    tab.file_path.setText(str(wav))
    tab.input_kind.setCurrentIndex(1)  # File
    qtbot.waitUntil(lambda: tab.engine is not None and "file" in tab.engine.source.description, timeout=60000)
    qtbot.waitUntil(lambda: tab.engine.latest is not None and bool(tab.engine.latest.peaks), timeout=60000)
    assert azimuth_errors([tab.engine.latest.peaks[0].azimuth], [123.0])[0] < 5


def test_bad_input_shows_in_the_window(window, qtbot):
    tab = _tab(window)
    tab.file_path.setText("/no/such/file.wav")
    tab.input_kind.setCurrentIndex(1)
    tab.start()
    assert tab.engine is None
    assert "no such file" in tab.error
    assert "no such file" in window.statusBar().currentMessage()


def test_closing_stops_the_engine(qtbot):
    from doascope.app.gui.window import MainWindow

    win = MainWindow(_args())
    qtbot.addWidget(win)
    win.show()
    tab = _tab(win)
    qtbot.waitUntil(lambda: tab.engine is not None and tab.engine.latest is not None, timeout=120000)
    engine = tab.engine
    win.close()
    assert tab.engine is None
    assert not engine.running


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)")
def test_real_window_under_xvfb_is_not_blank(tmp_path):
    # Xvfb picks a free display itself and writes its number once it is ready (-displayfd): a display
    # chosen here could be one that another test run's X server holds, whose socket would then
    # look like ours.
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,))
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 60
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_fd, 16) if ready else b""
            if not chunk:
                break  # Xvfb exited (end of file) or the deadline passed
            number += chunk
        assert number.strip().isdigit(), f"Xvfb did not start (it said {number!r})"
        env = dict(os.environ, DISPLAY=f":{int(number)}", QT_QPA_PLATFORM="xcb")
        shot = tmp_path / "window.png"
        run = subprocess.run([sys.executable, "-m", "doascope.app.cli.main", "gui", "--sim", "two-talkers", "--method",
                              "normmusic", "--sources", "2", "--quit-after", "6", "--screenshot", str(shot)],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    finally:
        os.close(read_fd)
        xvfb.terminate()
        xvfb.wait(timeout=30)
    from PySide6.QtGui import QImage

    img = QImage(str(shot))
    assert img.width() >= 800 and img.height() >= 500
    ptr = img.convertToFormat(QImage.Format_RGB32).constBits()
    px = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.width(), 4)[:, :, :3]
    assert px.std() > 20  # not a blank window
    colours = np.unique(px[::8, ::8].reshape(-1, 3), axis=0)
    assert len(colours) > 50
