"""Plots for the Localization tab, on pyqtgraph: a polar spectrum (pyqtgraph has no polar plot,
so it is drawn on a locked-aspect view), an azimuth-time waterfall, an azimuth-elevation map and
per-channel level meters.

Screen convention: a top view with the array's front (+x, azimuth 0) up and its left (+y,
azimuth 90) to the left, so azimuth runs counter-clockwise on screen as it does in the room.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui

TRACK_COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]


def track_colour(track_id: int) -> str:
    return TRACK_COLOURS[(track_id - 1) % len(TRACK_COLOURS)]


@lru_cache(maxsize=64)
def _brush(colour: str):
    return pg.mkBrush(colour)


def screen_xy(azimuth_deg, radius):
    a = np.radians(np.asarray(azimuth_deg, dtype=float))
    return -np.sin(a) * radius, np.cos(a) * radius


def azimuth_profile(spectrum: np.ndarray, grid) -> tuple[np.ndarray, np.ndarray]:
    """(azimuths, values) of a spectrum for the polar plot: the circle grid as is; for a sphere,
    the maximum over elevation in 2-degree azimuth bins."""
    if grid.kind == "circle":
        return grid.azimuth, spectrum
    bins = (np.round(grid.azimuth / 2.0).astype(int)) % 180
    out = np.full(180, -np.inf, np.float32)
    np.maximum.at(out, bins, spectrum)
    out[~np.isfinite(out)] = float(np.min(spectrum))
    return np.arange(180) * 2.0, out


def place_labels(anchors, sizes, *, gap: float = 3.0, clear: float = 10.0) -> np.ndarray:
    """Top-left corners (screen pixels, y down) for text labels of ``sizes`` (w, h) near their
    ``anchors`` (x, y) such that no two labels overlap and none covers an anchor's marker (a
    ``clear`` pixel radius). Greedy, in the given order: each label takes the first free place
    among rings of candidates around its anchor, nearest first; failing those, it goes above
    everything already placed, which is always free. Returns (n, 2)."""
    anchors = np.asarray(anchors, float).reshape(-1, 2)
    sizes = np.asarray(sizes, float).reshape(-1, 2)
    placed: list[tuple[float, float, float, float]] = []  # x0, y0, x1, y1

    def free(x0, y0, w, h) -> bool:
        x1, y1 = x0 + w, y0 + h
        if any(x0 < bx1 + gap and bx0 < x1 + gap and y0 < by1 + gap and by0 < y1 + gap
               for bx0, by0, bx1, by1 in placed):
            return False
        # keep every marker visible: no label over a disc of radius `clear` around any anchor
        cx = np.clip(anchors[:, 0], x0, x1)
        cy = np.clip(anchors[:, 1], y0, y1)
        return bool(np.all((cx - anchors[:, 0]) ** 2 + (cy - anchors[:, 1]) ** 2 >= clear ** 2))

    out = np.zeros((len(anchors), 2))
    for i, ((ax, ay), (w, h)) in enumerate(zip(anchors, sizes)):
        spot = None
        for ring in range(6):
            d = clear + ring * (h + gap)
            for x0, y0 in ((ax - w / 2, ay - d - h), (ax - w / 2, ay + d), (ax + d, ay - h / 2),
                           (ax - d - w, ay - h / 2), (ax + d * 0.7, ay - d * 0.7 - h), (ax - d * 0.7 - w, ay - d * 0.7 - h),
                           (ax + d * 0.7, ay + d * 0.7), (ax - d * 0.7 - w, ay + d * 0.7)):
                if free(x0, y0, w, h):
                    spot = (x0, y0)
                    break
            if spot is not None:
                break
        if spot is None:
            top = min([ay - clear] + [b[1] for b in placed] + list(anchors[:, 1] - clear))
            spot = (ax - w / 2, top - gap - h - 1.0)
        placed.append((spot[0], spot[1], spot[0] + w, spot[1] + h))
        out[i] = spot
    return out


def _layout_labels(plot: pg.PlotWidget, labels, xs, ys) -> None:
    """Put shown TextItems (anchor (0, 0)) near their data points (xs, ys) without overlap."""
    vb = plot.getViewBox()
    anchors, sizes = [], []
    for item, x, y in zip(labels, xs, ys):
        p = vb.mapViewToScene(QtCore.QPointF(float(x), float(y)))
        anchors.append((p.x(), p.y()))
        r = item.textItem.boundingRect()
        sizes.append((r.width(), r.height()))
    for item, (x0, y0) in zip(labels, place_labels(anchors, sizes)):
        item.setPos(vb.mapSceneToView(QtCore.QPointF(x0, y0)))


class PolarPlot(pg.PlotWidget):
    """Spatial spectrum around the array, tracks as labelled markers, peaks as dots."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAspectLocked(True)
        self.hideAxis("left")
        self.hideAxis("bottom")
        self.setMouseEnabled(False, False)
        self.setRange(xRange=(-1.3, 1.3), yRange=(-1.3, 1.3), padding=0)
        grid_pen = pg.mkPen(color=(110, 110, 110), width=1, style=QtCore.Qt.DotLine)
        t = np.linspace(0, 2 * np.pi, 181)
        for r in (0.25, 0.5, 0.75, 1.0):
            self.addItem(pg.PlotCurveItem(np.cos(t) * r, np.sin(t) * r, pen=grid_pen))
        for az in range(0, 360, 30):
            x, y = screen_xy(az, 1.0)
            self.addItem(pg.PlotCurveItem([0, x], [0, y], pen=grid_pen))
            label = pg.TextItem(f"{az}°", color=(170, 170, 170), anchor=(0.5, 0.5))
            lx, ly = screen_xy(az, 1.16)
            label.setPos(lx, ly)
            self.addItem(label)
        front = pg.TextItem("front (+x)", color=(200, 200, 200), anchor=(0.5, 1.0))
        front.setPos(0, 1.27)
        self.addItem(front)
        self.curve = pg.PlotCurveItem(pen=pg.mkPen("#42d4f4", width=2), fillLevel=None)
        self.addItem(self.curve)
        self.peaks = pg.ScatterPlotItem(size=8, brush=pg.mkBrush(255, 255, 255, 200), pen=None)
        self.addItem(self.peaks)
        self.tracks = pg.ScatterPlotItem(size=16, pen=pg.mkPen("w", width=1.5))
        self.addItem(self.tracks)
        self._labels: list[pg.TextItem] = []
        self.spectrum_azimuths = np.zeros(0)
        self.spectrum_values = np.zeros(0)

    def show_frame(self, frame) -> None:
        az, s = azimuth_profile(frame.spectrum, frame.grid)
        lo, hi = float(np.min(s)), float(np.max(s))
        norm = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
        self.spectrum_azimuths, self.spectrum_values = az, s
        r = 0.1 + 0.9 * norm
        x, y = screen_xy(np.append(az, az[:1]), np.append(r, r[:1]))
        self.curve.setData(x, y)
        px, py = screen_xy([p.azimuth for p in frame.peaks],
                           [0.1 + 0.9 * ((p.power - lo) / (hi - lo) if hi > lo else 0) for p in frame.peaks])
        self.peaks.setData(px, py)
        tx, ty = screen_xy([t.azimuth for t in frame.tracks], 1.05)
        self.tracks.setData(tx, ty, brush=[_brush(track_colour(t.id)) for t in frame.tracks],
                            data=[t.id for t in frame.tracks])
        while len(self._labels) < len(frame.tracks):
            item = pg.TextItem(anchor=(0, 0))
            self.addItem(item)
            self._labels.append(item)
        for i, item in enumerate(self._labels):
            if i < len(frame.tracks):
                t = frame.tracks[i]
                item.setText(f"#{t.id}")
                item.setColor(track_colour(t.id))
                item.show()
            else:
                item.hide()
        _layout_labels(self, self._labels[:len(frame.tracks)], tx, ty)


class Waterfall(pg.PlotWidget):
    """Azimuth over time: the spectrum's azimuth profile (each column normalised to its block's
    range, 0 = weakest, 1 = strongest direction) as an image scrolling left, with a colour bar and
    a chosen history length. Columns are bins of stream time, so the axis is right whatever the
    frame rate; a bin that several frames fall into keeps the newest."""

    COLUMNS = 400

    def __init__(self, seconds: float = 30.0, parent=None):
        super().__init__(parent)
        self.data = np.zeros((180, self.COLUMNS), np.float32)  # 2-degree rows, row-major
        self.image = pg.ImageItem(axisOrder="row-major")
        self.addItem(self.image)
        self.colour_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=pg.colormap.get("viridis"),
                                          label="normalised power", interactive=False, width=12)
        self.colour_bar.setImageItem(self.image, insert_in=self.getPlotItem())
        self.setLabel("left", "azimuth (deg)")
        self.setLabel("bottom", "time (s, now = 0)")
        self.setYRange(0, 360, padding=0)
        self.getAxis("left").setTicks([[(a, str(a)) for a in range(0, 361, 90)]])
        self.setMouseEnabled(False, False)
        self.tracks = pg.ScatterPlotItem(size=5, pen=None)
        self.addItem(self.tracks)
        self._track_points: deque = deque()  # (t, azimuth, brush) of recent track positions
        self.set_history(seconds)

    def set_history(self, seconds: float) -> None:
        """Show the last ``seconds`` of stream time (starts the picture afresh)."""
        self.seconds = float(seconds)
        self.bin = self.seconds / self.COLUMNS
        self.data[:] = 0.0
        self._last_bin: int | None = None
        self._rect = QtCore.QRectF(-self.seconds, 0, self.seconds, 360)
        self.setXRange(-self.seconds, 0, padding=0)
        if self.image.image is not None:
            self.image.setImage(self.data, levels=(0.0, 1.0), autoLevels=False)
            self.image.setRect(self._rect)

    def push(self, frame) -> None:
        az, s = azimuth_profile(frame.spectrum, frame.grid)
        lo, hi = float(np.min(s)), float(np.max(s))
        col = np.interp(np.arange(180) * 2.0 + 1.0, np.append(az, az[0] + 360), np.append(s, s[0]), period=360)
        col = (col - lo) / (hi - lo) if hi > lo and frame.active else np.zeros(180)
        b = int(np.floor(frame.t / self.bin))
        shift = 1 if self._last_bin is None else b - self._last_bin
        if shift < 0 or shift >= self.COLUMNS:  # the stream restarted (a loop) or jumped: start afresh
            self.data[:] = 0.0
        elif shift > 0:
            self.data[:, :-shift] = self.data[:, shift:]
            self.data[:, -shift:] = 0.0
            if self._last_bin is not None and shift > 1:  # a frame spans several bins: fill them
                self.data[:, -shift:] = col[:, None]
        self._last_bin = b
        self.data[:, -1] = col
        self.image.setImage(self.data, levels=(0.0, 1.0), autoLevels=False)
        self.image.setRect(self._rect)  # the rect maps pixels to (time, azimuth) once data exist
        pts = self._track_points
        while pts and (frame.t - pts[0][0] > self.seconds or pts[0][0] > frame.t):
            pts.popleft()
        pts.extend((frame.t, tr.azimuth, _brush(track_colour(tr.id))) for tr in frame.tracks)
        if pts:
            t, a, b_ = zip(*pts, strict=True)
            self.tracks.setData(np.array(t) - frame.t, a, brush=list(b_))
        else:
            self.tracks.setData([], [])


class AzElMap(pg.PlotWidget):
    """Azimuth-elevation image of a sphere-grid spectrum (nearest grid point per 2-degree pixel)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256))
        self.addItem(self.image)
        self.setLabel("left", "elevation (deg)")
        self.setLabel("bottom", "azimuth (deg)")
        self.setMouseEnabled(False, False)
        self.tracks = pg.ScatterPlotItem(size=12, pen=pg.mkPen("w"))
        self.addItem(self.tracks)
        self._grid = None
        self._index = None

    def _prepare(self, grid) -> None:
        from scipy.spatial import cKDTree

        from doascope.dsp.grids import unit_vectors

        lo = max(-90.0, float(np.floor(grid.elevation.min())))
        az = np.arange(0, 360, 2.0) + 1.0
        el = np.arange(lo, 90, 2.0) + 1.0
        A, E = np.meshgrid(az, el)
        _, idx = cKDTree(grid.vectors).query(unit_vectors(A, E).reshape(-1, 3))
        self._index = idx.reshape(A.shape)
        self._grid = grid
        self._rect = QtCore.QRectF(0, lo, 360, 90 - lo)
        self.setXRange(0, 360, padding=0)
        self.setYRange(lo, 90, padding=0)

    def show_frame(self, frame) -> None:
        if frame.grid is not self._grid:
            self._prepare(frame.grid)
        s = frame.spectrum
        lo, hi = float(np.min(s)), float(np.max(s))
        img = (s[self._index] - lo) / (hi - lo) if hi > lo else np.zeros(self._index.shape)
        self.image.setImage(img, levels=(0.0, 1.0), autoLevels=False)
        self.image.setRect(self._rect)
        self.tracks.setData([t.azimuth for t in frame.tracks], [t.elevation for t in frame.tracks],
                            brush=[_brush(track_colour(t.id)) for t in frame.tracks])


class LevelMeters(pg.PlotWidget):
    """Per-channel RMS level (dBFS) bars, red when the channel clipped in the last hop."""

    FLOOR_DB = -80.0

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setLabel("left", "dBFS")
        self.setYRange(self.FLOOR_DB, 0, padding=0)
        self.setMouseEnabled(False, False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.7, y0=self.FLOOR_DB)
        self.addItem(self.bars)
        self.levels_db = np.zeros(0)

    def show_frame(self, frame) -> None:
        db = 20 * np.log10(np.maximum(frame.rms.astype(float), 1e-9))
        db = np.maximum(db, self.FLOOR_DB)
        self.levels_db = db
        brushes = [_brush("#e6194b" if c else "#3cb44b") for c in frame.clipping]
        x = np.arange(len(db))
        self.bars.setOpts(x=x, height=db - self.FLOOR_DB, y0=self.FLOOR_DB, brushes=brushes)
        self.getAxis("bottom").setTicks([[(i, str(i)) for i in x]])
        self.setXRange(-0.6, len(db) - 0.4, padding=0)


def set_dark_palette(app) -> None:
    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    for role, colour in ((QtGui.QPalette.Window, "#202124"), (QtGui.QPalette.WindowText, "#e8eaed"),
                         (QtGui.QPalette.Base, "#2b2c2f"), (QtGui.QPalette.AlternateBase, "#303134"),
                         (QtGui.QPalette.Text, "#e8eaed"), (QtGui.QPalette.Button, "#303134"),
                         (QtGui.QPalette.ButtonText, "#e8eaed"), (QtGui.QPalette.Highlight, "#4363d8"),
                         (QtGui.QPalette.HighlightedText, "#ffffff")):
        pal.setColor(role, QtGui.QColor(colour))
    app.setPalette(pal)


class RoomMap(pg.PlotWidget):
    """Top-down room map for distributed microphones: the steered-response map, the microphones,
    tracked sources with their ids, and the current peaks (room frame, metres)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAspectLocked(True)
        self.setLabel("bottom", "x (m)")
        self.setLabel("left", "y (m)")
        self.setMouseEnabled(False, False)
        self.image = pg.ImageItem(axisOrder="col-major")  # map[ix, iy]: x along the image's width
        self.image.setLookupTable(pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256))
        self.addItem(self.image)
        self.outline = pg.PlotCurveItem(pen=pg.mkPen("#e8eaed", width=2))
        self.addItem(self.outline)
        self.mics = pg.ScatterPlotItem(symbol="t", size=12, brush=pg.mkBrush("#ffffff"), pen=pg.mkPen("#202124"))
        self.addItem(self.mics)
        self.peaks = pg.ScatterPlotItem(size=7, brush=pg.mkBrush(255, 255, 255, 160), pen=None)
        self.addItem(self.peaks)
        self.tracks = pg.ScatterPlotItem(size=18, pen=pg.mkPen("w", width=1.5))
        self.addItem(self.tracks)
        self._labels: list[pg.TextItem] = []
        self._room = None

    def set_room(self, room, mics) -> None:
        room = np.asarray(room, float)
        (x0, x1), (y0, y1) = room[0], room[1]
        self.outline.setData([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])
        self.mics.setData(np.asarray(mics)[:, 0], np.asarray(mics)[:, 1])
        self.setRange(xRange=(x0 - 0.3, x1 + 0.3), yRange=(y0 - 0.3, y1 + 0.3), padding=0)
        self._room = room

    def show_frame(self, frame) -> None:
        m = np.asarray(frame.spectrum, float)
        xs, ys = frame.grid
        lo, hi = float(m.min()), float(m.max())
        self.image.setImage((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m), levels=(0.0, 1.0),
                            autoLevels=False)
        dx = float(xs[1] - xs[0]) if len(xs) > 1 else 0.1
        dy = float(ys[1] - ys[0]) if len(ys) > 1 else 0.1
        self.image.setRect(QtCore.QRectF(xs[0] - dx / 2, ys[0] - dy / 2, dx * len(xs), dy * len(ys)))
        self.peaks.setData([p.x for p in frame.peaks], [p.y for p in frame.peaks])
        self.tracks.setData([t.x for t in frame.tracks], [t.y for t in frame.tracks],
                            brush=[_brush(track_colour(t.id)) for t in frame.tracks],
                            data=[t.id for t in frame.tracks])
        while len(self._labels) < len(frame.tracks):
            item = pg.TextItem(anchor=(0, 0), fill=pg.mkBrush(32, 33, 36, 210))  # readable on the map
            self.addItem(item)
            self._labels.append(item)
        for i, item in enumerate(self._labels):
            if i < len(frame.tracks):
                t = frame.tracks[i]
                item.setText(f"#{t.id} ({t.x:.1f}, {t.y:.1f}, {t.z:.1f}) m")
                item.setColor(track_colour(t.id))
                item.show()
            else:
                item.hide()
        _layout_labels(self, self._labels[:len(frame.tracks)], [t.x for t in frame.tracks],
                       [t.y for t in frame.tracks])
