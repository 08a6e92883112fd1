"""Engine.configure while running: a retune keeps the analysis state and builds nothing; a new
method is built on a worker thread, never on the caller's (the GUI's), and swapped in between frames.
Every wait has a deadline; nothing asserts a duration."""

from __future__ import annotations

import threading
import time

import pytest

import doascope.app.runtime.engine as engine_module
from doascope.app.runtime.engine import AnalysisConfig, Engine
from doascope.app.runtime.sources import sim_source
from doascope.hardware_profiles import load_profile


@pytest.fixture(scope="module")
def prof():
    return load_profile("respeaker_usb_v2")


def _wait_for(cond, timeout=60.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_retune_keeps_the_noise_floor_the_smoothing_state_and_the_tracks(prof, monkeypatch):
    src = sim_source("two-talkers", prof, speed=0, loop=True)
    engine = Engine(src, prof, AnalysisConfig(method="srp-phat", n_sources=2))
    frames = []
    engine.subscribe(frames.append)
    builds = []
    real_build = engine_module.build_localizer
    monkeypatch.setattr(engine_module, "build_localizer", lambda *a, **k: (builds.append(a), real_build(*a, **k))[1])
    engine.start()
    try:
        _wait_for(lambda: len(frames) >= 80 and frames[-1].tracks, what="confirmed tracks")
        loc = engine.localizer
        floor_blocks = loc.gate._history.maxlen
        engine.configure(smoothing=0.8, n_sources=3, min_separation=15.0, tracker={"death_time": 2.0})
        assert engine.wait_configured(60)
        n = len(frames)
        _wait_for(lambda: len(frames) >= n + 40, what="frames after the retune")
        ids_before = {tr.id for tr in frames[n - 1].tracks}
        after = frames[n:n + 40]   # ~1.3 s: a talker may pause (its track hidden) for a few frames
    finally:
        engine.stop()
    assert builds == []                                   # nothing was rebuilt
    assert engine.localizer is loc                        # the same localizer, with its state
    assert (loc.smoothing, loc.n_sources, loc.min_separation) == (0.8, 3, 15.0)
    assert engine.tracker.params["death_time"] == 2.0
    assert engine.config == AnalysisConfig(method="srp-phat", n_sources=3, smoothing=0.8, min_separation=15.0,
                                           tracker={"death_time": 2.0}).resolved(engine.fs)
    # The noise floor's history and the integrated statistics went on (a rebuild empties both).
    assert len(loc.gate._history) >= min(floor_blocks, n) and loc._smoothed is not None
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert ids_before and ids_before <= {tr.id for f in after for tr in f.tracks}


def test_a_new_method_is_built_off_the_calling_thread_and_swapped_in(prof, monkeypatch):
    src = sim_source("two-talkers", prof, speed=0, loop=True)
    engine = Engine(src, prof, AnalysisConfig(method="srp-phat", n_sources=2))
    frames = []
    engine.subscribe(frames.append)
    release = threading.Event()
    built_on = []
    real_build = engine_module.build_localizer

    def slow_build(*args, **kw):  # a build that lasts until the test lets it finish
        built_on.append(threading.current_thread())
        assert release.wait(60)
        return real_build(*args, **kw)

    engine.start()
    try:
        _wait_for(lambda: len(frames) >= 20, what="the first frames")
        monkeypatch.setattr(engine_module, "build_localizer", slow_build)
        returned = threading.Event()
        caller = threading.Thread(target=lambda: (engine.configure(method="normmusic"), returned.set()))
        caller.start()
        # configure returns although the build cannot finish yet: it does not run on the caller.
        assert returned.wait(30), "configure() waited for the build"
        _wait_for(lambda: bool(built_on), what="the build to start")
        assert built_on[0] is not caller
        # Meanwhile the analysis goes on with the old method.
        n = len(frames)
        _wait_for(lambda: len(frames) >= n + 10, what="frames during the build")
        assert {f.method for f in frames} == {"srp-phat"} and not engine.wait_configured(0)
        engine.configure(n_sources=3)     # a retune while the build is under way applies to the new one too
        release.set()
        assert engine.wait_configured(60)
        n = len(frames)
        _wait_for(lambda: len(frames) >= n + 5, what="frames after the swap")
    finally:
        release.set()
        engine.stop()
    assert engine.localizer.estimator.name == "normmusic" and engine.localizer.n_sources == 3
    assert engine.config.method == "normmusic" and engine.config.n_sources == 3
    methods = [f.method for f in frames]
    k = methods.index("normmusic")
    assert set(methods[k:]) == {"normmusic"}
    assert [f.seq for f in frames] == list(range(len(frames)))


def test_a_failed_build_leaves_the_running_analysis_and_says_why(prof, monkeypatch):
    src = sim_source("two-talkers", prof, speed=0, loop=True)
    engine = Engine(src, prof, AnalysisConfig(method="srp-phat"))
    frames = []
    engine.subscribe(frames.append)

    def broken(*args, **kw):
        raise RuntimeError("no weights here")

    engine.start()
    try:
        _wait_for(lambda: len(frames) >= 5, what="the first frames")
        monkeypatch.setattr(engine_module, "build_localizer", broken)
        engine.configure(method="normmusic")
        assert engine.wait_configured(60)
        n = len(frames)
        _wait_for(lambda: len(frames) >= n + 5, what="frames after the failed build")
    finally:
        engine.stop()
    assert engine.config.method == "srp-phat" and engine.running is False and engine.error is None
    assert "no weights here" in (frames[-1].status or "")
