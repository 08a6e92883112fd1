"""The engine thread: ring buffer -> STFT frames -> estimator -> peaks -> tracker -> DoaFrame.

One engine serves every front end (terminal view, files, network service, GUI): each subscribes
a callable that receives every immutable :class:`DoaFrame` (it must only hand the frame on, e.g.
into a queue), and ``latest`` is a mailbox for pollers that only want the newest one. Settings
(method, band, sources, smoothing, tracker) change between frames through a command queue, so
they never race with the analysis.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from doascope import DoascopeError, ParameterError
from doascope.app.runtime.ringbuffer import Overrun, RingBuffer
from doascope.app.runtime.sources import AudioSource
from doascope.dsp.analysis import build_localizer
from doascope.config import AnalysisConfig
from doascope.hardware_profiles import Profile

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class DoaFrame:
    """One analysis step, published to every subscriber. Arrays are read-only."""

    seq: int
    t: float                  # centre of the analysis window, seconds from stream start
    wall: float               # time.time() when published
    method: str
    spectrum: np.ndarray      # (points,) float32 over ``grid``; position mode: (nx, ny) room map
    grid: object              # doascope.dsp.Grid; position mode: (x centres, y centres) of the map
    peaks: tuple              # doascope.dsp.Peak (position mode: SourcePosition), strongest first
    tracks: tuple             # TrackState (position mode: PositionTrackState), confirmed, by id
    active: bool
    rms: np.ndarray           # (mics,) RMS of the newest hop, linear full scale
    peak_level: np.ndarray    # (mics,) max |sample| of the newest hop
    clipping: np.ndarray      # (mics,) bool, |sample| >= 0.999 in the newest hop
    overruns: int             # times the engine fell a buffer behind and skipped ahead
    xruns: int                # input overflows reported by the device
    processing: float         # wall-clock seconds spent on this frame
    latency: float            # capture of the window's last sample -> publish, seconds
    rtf: float                # CPU time of the analysis / audio time, smoothed
    status: str | None = None
    mode: str = "doa"

    def record(self) -> dict:
        """The JSON object written per frame by `run --output`."""
        return {"seq": self.seq, "t": round(self.t, 4),
                "tracks": [tr.as_dict() for tr in self.tracks],
                "peaks": [p.as_dict() for p in self.peaks]}


Subscriber = Callable[[DoaFrame], None]

# Settings a running localizer and tracker take over in place, keeping their state (the integrated
# statistics, the noise floor, the frame ring, the tracks); any other change builds a new localizer.
RETUNABLE = ("n_sources", "smoothing", "min_separation", "extraction", "tracker")
POSITION_RETUNABLE = ("n_sources", "tracker")   # position mode reads its smoothing through per-mode defaults

# Position mode's top-down response map (the frame's "spectrum"), metres: 0.2 m costs ~3 ms a
# frame in a 6 x 5 m room, 0.1 m twenty times more.
ROOM_MAP_SPACING = 0.2


class Engine:
    """Runs the analysis of one source on its own thread.

    Parameters
    ----------
    source : where audio comes from
    profile : the array's geometry and channel map
    config : the analysis settings
    step_hops : hops between frames; default about 32 ms (2 hops at 16 kHz), ~30 frames a second,
        the rate a display draws at
    ring_seconds : capacity of the ring buffer
    """

    def __init__(self, source: AudioSource, profile: Profile, config: AnalysisConfig = AnalysisConfig(), *,
                 step_hops: int | None = None, ring_seconds: float = 4.0):
        self.source = source
        self.profile = profile
        self.fs = source.fs
        config = config.resolved(self.fs)   # the engine works with every default filled in
        hop = config.hop
        if step_hops is None:
            step_hops = max(1, round(0.032 * self.fs / hop))
        self.step = hop * int(step_hops)
        self._build(config)
        self.ring = RingBuffer(max(int(ring_seconds * self.fs), 4 * self.window), source.channels)
        self.position = 0  # first sample of the next window: the ring's replay waits for it
        self.ring.readers.append(self)
        self.latest: DoaFrame | None = None
        self.overruns = 0
        self.frames = 0
        self.cpu_seconds = 0.0        # CPU time of the analysis, summed over frames
        self.latencies: deque[float] = deque(maxlen=100_000)
        self.error: str | None = None
        self.fault: str | None = None  # the last subscriber failure, carried in every frame's status
        self.config_fault: str | None = None  # why the last settings asked for could not be built
        self._subscribers: list[Subscriber] = []
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._requested = self.config  # the newest configure()d settings, applied or still queued
        self._configure_lock = threading.Lock()
        self._generation = 0           # of the newest rebuild asked for; older builds are dropped
        self._build_wanted: tuple | None = None   # (config, generation) the builder thread takes next
        self._builder: threading.Thread | None = None
        self._applied = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rtf = 0.0
        self._busy = 0.0

    # -- set-up ---------------------------------------------------------------------------------

    def _build(self, cfg: AnalysisConfig) -> None:
        from doascope.dsp.tracker import PositionTracker, Tracker

        self.localizer = build_localizer(cfg, self.profile, self.fs, step=self.step)
        self.nfft, self.hop = self.localizer.nfft, self.localizer.hop
        self.window = self.localizer.block_samples
        if cfg.mode == "position":
            self.tracker = PositionTracker(**cfg.tracker)
            self.tracker.same_source = self.localizer.same_source
        else:
            self.tracker = Tracker(planar=self.localizer.estimator.grid.kind == "circle", **cfg.tracker)
        self.config = cfg

    def configure(self, **changes) -> AnalysisConfig:
        """Change settings (method, n_sources, band, smoothing, min_separation, grid, resolution,
        extraction, tracker) while running; invalid values raise here, at once.

        A retune (sources, smoothing, separation, extraction, tracker settings) is applied before the
        next frame and keeps all state: the noise floor, the integrated statistics, the tracks. Any
        other change (method, band, grid...) builds a new localizer on a worker thread, never on the
        calling one (the GUI's), and the engine swaps it in between two frames; the tracks go on.
        :meth:`wait_configured` waits until every change asked for runs."""
        from dataclasses import replace

        fixed = {"nfft", "hop", "frames_per_block", "mode"} & set(changes)
        unknown = set(changes) - set(AnalysisConfig.__dataclass_fields__)
        if fixed or unknown:
            raise ParameterError(f"cannot change {', '.join(sorted(fixed | unknown))} while running")
        with self._configure_lock:  # on top of earlier changes still queued, so none is undone
            previous = self._requested
            try:
                cfg = replace(previous, **changes).resolved(self.fs)   # checks every value
            except TypeError as exc:
                raise ParameterError(str(exc)) from None
            _check_retunable(cfg)
            retunable = POSITION_RETUNABLE if cfg.mode == "position" else RETUNABLE
            rebuild = any(getattr(cfg, name) != getattr(previous, name)
                          for name in AnalysisConfig.__dataclass_fields__ if name not in retunable)
            if rebuild:
                _check_rebuild(cfg, self.fs, self.nfft)
                self._generation += 1
                # One builder thread, always on the newest request: a spin box ticking through ten
                # bands builds the last one, not ten.
                self._build_wanted = (cfg, self._generation)
                if self._builder is None:
                    self._builder = threading.Thread(target=self._build_off_thread, name="doascope-configure",
                                                     daemon=True)
                    self._builder.start()
            else:
                self._commands.put((cfg, None, 0))
            self._requested = cfg
        return cfg

    def wait_configured(self, timeout: float | None = None) -> bool:
        """Wait until the settings of the latest :meth:`configure` run (or a failed build was
        dropped: see ``config_fault``); True if they do."""
        with self._applied:
            return self._applied.wait_for(lambda: self.config == self._requested, timeout)

    def _build_off_thread(self) -> None:
        while True:
            with self._configure_lock:
                job, self._build_wanted = self._build_wanted, None
                if job is None:
                    self._builder = None
                    return
            cfg, generation = job
            try:
                localizer = build_localizer(cfg, self.profile, self.fs, step=self.step)
            except Exception as exc:  # checked before; what is left (a missing extra, weights) ends here
                with self._configure_lock:
                    if generation == self._generation:
                        from dataclasses import replace

                        # Back to what runs, except the retunes asked for meanwhile.
                        keep = POSITION_RETUNABLE if cfg.mode == "position" else RETUNABLE
                        self._requested = replace(self.config, **{k: getattr(self._requested, k) for k in keep})
                        self.config_fault = f"cannot apply the new settings: {exc}"
                        log.warning(self.config_fault)
                with self._applied:
                    self._applied.notify_all()
                continue
            self._commands.put((cfg, localizer, generation))

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    def unsubscribe(self, fn: Subscriber) -> None:
        try:
            self._subscribers.remove(fn)
        except ValueError:
            pass

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        self.source.start(self.ring)
        self._thread = threading.Thread(target=self._run_safely, name="doascope-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.source.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the engine to end (end of file or stop); True if it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run_safely(self) -> None:
        try:
            self._run()
        except DoascopeError as exc:
            self.error = str(exc)
            log.debug("engine stopped", exc_info=exc)
        except Exception as exc:  # keep the process alive and say what happened
            self.error = f"engine stopped: {type(exc).__name__}: {exc}"
            log.debug("engine stopped", exc_info=exc)

    def _run(self) -> None:
        ring, src = self.ring, self.source
        raw = np.empty((self.window, ring.channels), np.float32)
        mic_map = np.asarray(src.mic_map, np.int64)
        identity = src.mic_map == tuple(range(ring.channels))
        mics = raw if identity else np.empty((self.window, len(mic_map)), np.float32)
        pos = 0                       # first sample of the next analysis window
        status: str | None = None
        from doascope.dsp import stft
        from doascope.dsp.levels import channel_levels

        while not self._stop.is_set():
            self._apply_commands()
            need = pos + self.window
            if ring.written < need:
                if src.finished and ring.written < need:
                    break
                if src.error != status:
                    # The source says why audio stopped (a live device retrying after a loss): tell
                    # every subscriber now rather than with the next frame, which may be long in coming.
                    status = src.error
                    if status:
                        self._publish_status(status, pos)
                # Sleep until the missing samples should be there (plus 1 ms), not in a busy loop.
                missing = (need - ring.written) / self.fs
                self._stop.wait(min(max(missing + 0.001, 0.0005), 0.02))
                continue
            if ring.written - need > ring.capacity // 2:
                pos = self._skip_ahead()
                continue
            try:
                ring.read(pos, self.window, out=raw)
            except Overrun:
                pos = self._skip_ahead()
                continue
            t0, c0 = time.perf_counter(), time.thread_time()
            if not identity:
                np.take(raw, mic_map, axis=1, out=mics)
            if self.config.mode == "position":
                res = self.localizer.process(stft(mics, nfft=self.nfft, hop=self.hop), pos, self.fs)
            else:
                # Each hop's frame is transformed and analysed once (doascope.dsp.stream), as ``locate``
                # does: the same estimates for the same windows.
                res = self.localizer.process_audio(mics, pos, self.fs)
            if self.config.mode == "position":
                peaks = res.sources
                spectrum, xs, ys = self.localizer.srp.response_map(spacing=ROOM_MAP_SPACING)
                grid = (xs, ys)
            else:
                peaks, spectrum, grid = res.peaks, res.spectrum, self.localizer.estimator.grid
            tracks = self.tracker.update(res.t, peaks, res.active)
            newest = mics[-self.step:] if self.step <= len(mics) else mics
            peak, rms = channel_levels(newest)
            busy = time.perf_counter() - t0
            # Real-time factor as CPU time of this thread per second of audio: what "uses 1% of a
            # core" means, and unaffected by waiting for the GIL while the GUI or a view draws.
            cpu = time.thread_time() - c0
            self.cpu_seconds += cpu
            load = cpu / (self.step / self.fs)
            self._rtf = 0.95 * self._rtf + 0.05 * load if self.frames else load
            latency = time.monotonic() - ring.capture_time(need, self.fs)
            self.latencies.append(latency)
            spectrum.setflags(write=False)
            frame = DoaFrame(self.frames, res.t, time.time(), self.config.method, spectrum, grid, tuple(peaks),
                             tracks, res.active, _ro(rms), _ro(peak), _ro(peak >= 0.999), self.overruns,
                             src.xruns, busy, latency, self._rtf, src.error or self.fault or self.config_fault,
                             self.config.mode)
            self.frames += 1
            self._deliver(frame)
            pos += self.step
            self.position = pos

    def _skip_ahead(self) -> int:
        """Jump to the newest whole window, keeping windows on the hop grid."""
        self.overruns += 1
        newest = self.ring.written - self.window
        return max(0, newest - newest % self.hop)

    def _apply_commands(self) -> None:
        from dataclasses import replace

        changed = False
        while True:
            try:
                cfg, localizer, generation = self._commands.get_nowait()
            except queue.Empty:
                break
            changed = True
            if localizer is not None:
                if generation != self._generation:
                    continue  # a newer build is on its way
                self._swap(cfg, localizer)
            # The newest retunable settings, on whichever localizer runs now (a retune asked for while
            # a build was under way applies to the built one too).
            with self._configure_lock:
                wanted = self._requested
            names = POSITION_RETUNABLE if self.config.mode == "position" else RETUNABLE
            self._retune({name: getattr(wanted, name) for name in names})
            self.config = replace(self.config, **{name: getattr(wanted, name) for name in names})
        if changed:
            with self._applied:
                self._applied.notify_all()

    def _swap(self, cfg: AnalysisConfig, localizer) -> None:
        """Put a newly built localizer in place; the noise floor carries over when the band does."""
        old = self.localizer
        if cfg.band == self.config.band and cfg.mode == self.config.mode:
            localizer.gate.restore(old.gate.state())
        self.localizer = localizer
        if cfg.mode == "position":
            self.tracker.same_source = localizer.same_source
        self.config = cfg
        self.config_fault = None

    def _retune(self, settings: dict) -> None:
        loc = self.localizer
        tracker = settings.pop("tracker", None)
        if self.config.mode == "position":
            loc.n_sources = int(settings["n_sources"])
        else:
            from doascope.dsp.extraction import DEFAULT_EXTRACTION

            extraction = settings.pop("extraction")
            loc.retune(extraction=extraction or DEFAULT_EXTRACTION, **settings)
        if tracker:
            self.tracker.set_params(**tracker)

    def _deliver(self, frame: DoaFrame) -> None:
        self.latest = frame
        for fn in list(self._subscribers):
            try:
                fn(frame)
            except Exception as exc:  # a broken subscriber must not stop the analysis for the others
                self.unsubscribe(fn)
                name = getattr(fn, "__qualname__", None) or type(fn).__name__
                self.fault = f"frame subscriber {name} failed ({type(exc).__name__}: {exc}); it gets no more frames"
                log.warning(self.fault)
                log.debug("traceback of the failed subscriber %s", name, exc_info=exc)

    def _publish_status(self, status: str, pos: int) -> None:
        if self.latest is None:
            return
        from dataclasses import replace

        self._deliver(replace(self.latest, status=status, wall=time.time(), xruns=self.source.xruns,
                              overruns=self.overruns))


def _check_retunable(cfg: AnalysisConfig) -> None:
    """What AnalysisConfig itself does not check of the retunable settings (microseconds)."""
    from doascope.dsp.extraction import EXTRACTIONS

    if cfg.extraction is not None and cfg.extraction not in EXTRACTIONS:
        raise ParameterError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {cfg.extraction!r}")
    if cfg.tracker:
        from doascope.dsp.tracker import PositionTracker, Tracker

        # Validate the thresholds now; the running tracker keeps its tracks.
        kind = PositionTracker if cfg.mode == "position" else Tracker
        try:
            kind(**cfg.tracker)
        except TypeError as exc:
            raise ParameterError(f"tracker settings do not apply in {cfg.mode} mode: {exc}") from None


def _check_rebuild(cfg: AnalysisConfig, fs: int, nfft: int) -> None:
    """What a rebuild reads and AnalysisConfig cannot check alone (the method's availability, the band
    against this rate and STFT size), so that the caller hears of a mistake at once; the build itself
    runs on a worker thread."""
    from doascope.dsp._checks import band_bins
    from doascope.dsp.estimators import available_methods

    if cfg.mode == "doa" and cfg.method not in available_methods():
        raise ParameterError(f"unknown method {cfg.method!r}; choose one of: {', '.join(available_methods())}")
    cfg.check_rate(fs)
    band_bins(cfg.band, fs, nfft)


def _ro(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a
