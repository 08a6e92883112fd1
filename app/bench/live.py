"""``doascope bench --live``, the pipeline's cost: CPU per audio second on one core, before and after.

"after" is the live engine as it runs (doascope.dsp.stream: each hop's frame transformed and
analysed once, the window's statistics as running sums, constant inputs checked at build time).
"before" is the previous release's pipeline run in the same process on the same audio: the whole
window transformed again at every step and every statistic computed from the window's block
through the checked public functions (:func:`reference_process` keeps it runnable). Each case runs
in a child process pinned to one core, numba and BLAS limited to one thread, so that the figures
mean "one core"; the ratios are what to compare across machines.

Also measured: the stages of a frame (thread CPU time in a direct loop); at real-time pace, each
frame's processing (the engine thread's CPU time: the latency judged is one hop + its p99, what a
core of its own gives) and the capture-to-publish latency (wall clock: on a shared machine it also
holds every wait for a core), and what a retune (``Engine.configure`` of smoothing, sources or tracker) and a
rebuild request (a new method, built on a worker thread) cost the calling thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

# (label, profile, method, grid, target CPU s per audio s on one core)
CASES = (
    ("4 mics, srp-phat", "respeaker_usb_v2", "srp-phat", "auto", 0.010),
    ("4 mics, normmusic", "respeaker_usb_v2", "normmusic", "auto", 0.015),
    ("UMA-16 48 kHz, srp-phat, sphere", "minidsp_uma16", "srp-phat", "sphere", 0.050),
)
# ODAS (odaslive, its ReSpeaker USB preset, SSL + SST, 8 ms hops) on the 4-mic rows' audio, measured with
# `doascope bench --live --odas PATH_TO_ODASLIVE` (doascope.app.bench.odas) on this machine class: the
# range of its medians, quoted when the bench runs without --odas.
ODAS_CPU_PER_AUDIO_S = (0.0215, 0.0256)
ODAS_PROFILE = "respeaker_usb_v2"   # the preset's array: the rows on this profile get the comparison
RETUNE_TARGET_MS = 1.0
LATENCY_MARGIN_S = 0.010   # target: p99 <= one hop + this

_CHILD = r"""
import json, os, sys, warnings
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
warnings.simplefilter("ignore")
from doascope.app.bench.live import measure_case
print("RESULT " + json.dumps(measure_case(sys.argv[1], sys.argv[2], sys.argv[3], quick=sys.argv[4] == "1")))
"""


def reference_process(localizer):
    """The previous release's per-step pipeline for ``localizer``, as a drop-in for its
    ``process_audio``: the window's STFT in full, then every statistic from that block, the SRP
    lookups through the checked public :func:`~doascope.dsp.srp.srp_from_correlations` and the
    complex correlation product, each new frame's maximum from the block's frames, and (Norm)MUSIC
    through LAPACK's eigendecomposition of every bin."""
    from doascope.dsp import stft
    from doascope.dsp._checks import as_stft
    from doascope.dsp.activity import energy_coherence
    from doascope.dsp.extraction import frame_vote_map
    from doascope.dsp.localizer import BlockResult
    from doascope.dsp.srp import srp_from_correlations

    loc, est = localizer, localizer.estimator
    srp = est.frame_statistics == "phat" and hasattr(est, "lag_index")
    music = est.frame_statistics == "covariance"
    A = (est.steering.real + 1j * est.steering.imag).astype(np.complex64) if music else None
    cache: dict[int, tuple] = {}

    def spectrum_from(stats):
        if srp:
            return srp_from_correlations(est.gcc.correlate_cross(stats), est.lag_index)
        if music:  # LAPACK's batched eigh, then every bin's pseudo-spectrum
            M, K = est.n_mics, min(est.n_sources, est.n_mics - 1)
            _, V = np.linalg.eigh(stats)
            EsH = np.ascontiguousarray(V[:, :, M - K:].conj().transpose(0, 2, 1), dtype=np.complex64)
            proj = np.matmul(EsH, A)
            P = 1.0 / np.maximum(M - (proj.real ** 2 + proj.imag ** 2).sum(axis=1), 1e-6 * M)
            if est.normalise:
                P /= P.max(axis=1, keepdims=True)
            s = P.mean(axis=0).astype(np.float32)
            return s / max(float(s.max()), 1e-30)
        return est.spectrum_from(stats)

    def frame_peaks(X, start):
        starts = [start + k * loc.hop for k in range(X.shape[2])]
        new = [k for k, s in enumerate(starts) if s not in cache]
        if new:
            Y = as_stft(np.ascontiguousarray(X[:, :, new]), mics=est.n_mics)[:, est.bins, :]
            Y = Y / (np.abs(Y) + np.float32(1e-20))
            pairs = est.gcc.pairs
            C = Y[pairs[:, 0]] * np.conj(Y[pairs[:, 1]])
            r = np.ascontiguousarray(np.matmul(C.transpose(2, 0, 1), est.gcc.lag_phasors).real, dtype=np.float32)
            for k, rt in zip(new, r):
                s = srp_from_correlations(rt, est.lag_index)
                g = int(np.argmax(s))
                cache[starts[k]] = (g, s[g])
        for s in [s for s in cache if s not in starts]:
            del cache[s]
        return (np.array([cache[s][0] for s in starts]), np.array([cache[s][1] for s in starts], np.float32))

    def process_audio(audio, start, fs):
        X = stft(audio, nfft=loc.nfft, hop=loc.hop)
        energy, coherence = energy_coherence(X, est.bins)
        active = loc.gate.update(energy, coherence, X.shape[2])
        stats = est.statistics(X)
        if active:
            integrated = loc._integrate_stats(stats)
            spectrum = spectrum_from(integrated)
            votes = None
            if loc.n_sources > 1 and srp and loc.extraction == "votes":
                points, values = frame_peaks(X, start)
                loc._votes = loc._integrated(loc._votes, frame_vote_map(est.grid, points, values ** 2))
                votes = loc._votes
            peaks = tuple(est.candidates(integrated, spectrum, loc.n_sources, votes=votes,
                                         min_separation=loc.min_separation, extraction=loc.extraction))
        else:
            spectrum, peaks = spectrum_from(stats), ()
        stop = start + loc.block_samples
        loc._index += 1
        return BlockResult(loc._index - 1, start, stop, 0.5 * (start + stop) / fs, spectrum, peaks, active,
                           float(energy), float(coherence))

    return process_audio


def _stages(prof, cfg, audio, step, frames, before: bool) -> dict:
    """Thread CPU time per frame of each stage, in a direct loop over the engine's windows."""
    from doascope.dsp.analysis import build_localizer
    from doascope.dsp.tracker import Tracker

    loc = build_localizer(cfg, prof, prof.sample_rate, step=step)
    tracker = Tracker(planar=loc.estimator.grid.kind == "circle")
    fs, width = prof.sample_rate, loc.block_samples
    clock = time.thread_time
    spent = {"frames in": 0.0, "localize": 0.0, "tracker": 0.0}
    ref = reference_process(loc) if before else None
    from doascope.dsp import stft

    warm = 10
    n = min(frames, (len(audio) - width) // step - warm)
    for i in range(n + warm):
        if i == warm:
            spent = dict.fromkeys(spent, 0.0)
        start = i * step
        window = audio[start:start + width]
        t0 = clock()
        if before:
            stft(window, nfft=loc.nfft, hop=loc.hop)   # the window's STFT, as the reference takes it
            t1 = clock()
            res = ref(window, start, fs)
            t2 = clock()
            spent["localize"] += (t2 - t1) - (t1 - t0)  # the reference transforms again inside
        else:
            loc._stream().update(window, start)       # new frames in: FFT and per-frame statistics
            t1 = clock()
            res = loc.process_audio(window, start, fs)  # nothing new: the window's statistics on
            t2 = clock()
            spent["localize"] += t2 - t1
        spent["frames in"] += t1 - t0
        tracker.update(res.t, res.peaks, res.active)
        spent["tracker"] += clock() - t2
    return {k: v / n * 1e6 for k, v in spent.items()}


def _steady(prof, cfg, source, frames: int, before: bool) -> dict:
    """The engine on a fast replay: CPU per audio second of its thread and of the process."""
    from doascope.app.runtime.engine import Engine

    engine = Engine(source(), prof, cfg)
    if before:
        engine.localizer.process_audio = reference_process(engine.localizer)
    got = threading.Event()
    marks = {}
    warm = 20

    def on_frame(frame):
        if frame.seq == warm:
            marks["start"] = (engine.cpu_seconds, time.process_time(), frame.seq)
        elif frame.seq == warm + frames:
            marks["end"] = (engine.cpu_seconds, time.process_time(), frame.seq)
            got.set()

    engine.subscribe(on_frame)
    engine.start()
    try:
        if not got.wait(600):
            raise RuntimeError(f"the engine made {engine.frames} frames in 600 s ({engine.error})")
    finally:
        engine.stop()
    (c0, p0, f0), (c1, p1, f1) = marks["start"], marks["end"]
    audio = (f1 - f0) * engine.step / engine.fs
    return {"cpu": (c1 - c0) / audio, "process_cpu": (p1 - p0) / audio}


def _paced(prof, cfg, source, seconds: float) -> dict:
    """At real-time pace: capture-to-publish latency (``seconds`` undisturbed), then what configure()
    costs the caller (``seconds`` / 2 of retunes)."""
    from doascope.app.runtime.engine import Engine

    engine = Engine(source(speed=1.0), prof, cfg)
    # Each frame's own processing: the engine thread's CPU time for it (subscribers run on that
    # thread right after the engine adds the frame's CPU time) and its wall time (``processing``).
    frame_cpu, frame_wall, last = [], [], [0.0]

    def on_frame(frame):
        frame_cpu.append(engine.cpu_seconds - last[0])
        frame_wall.append(frame.processing)
        last[0] = engine.cpu_seconds

    engine.subscribe(on_frame)
    engine.start()
    retune_wall, retune_cpu, rebuild_wall, rebuild_cpu = [], [], [], []
    try:
        # First the steady state, nobody else calling in: the latency.
        engine.wait(seconds)
        if engine.error:
            raise RuntimeError(engine.error)
        engine.unsubscribe(on_frame)
        lat = np.array(list(engine.latencies)[10:])
        proc_cpu, proc_wall = np.array(frame_cpu[10:]), np.array(frame_wall[10:])
        # Then a caller that retunes every 5 ms (a GUI user dragging a slider), and now and then asks
        # for a new method, built on a worker thread.
        changes = [{"smoothing": 0.6}, {"smoothing": 0.5}, {"n_sources": 3}, {"n_sources": 2},
                   {"tracker": {"death_time": 1.5}}, {"tracker": {"death_time": 1.0}}]
        k = 0
        t_end = time.monotonic() + seconds / 2
        while time.monotonic() < t_end and engine.running:
            w0, c0 = time.perf_counter(), time.thread_time()
            engine.configure(**changes[k % len(changes)])
            retune_cpu.append(time.thread_time() - c0)
            retune_wall.append(time.perf_counter() - w0)
            k += 1
            time.sleep(0.005)
            if k % 100 == 50:
                other = "normmusic" if engine.config.method != "normmusic" else "srp-phat"
                w0, c0 = time.perf_counter(), time.thread_time()
                engine.configure(method=other)
                rebuild_cpu.append(time.thread_time() - c0)
                rebuild_wall.append(time.perf_counter() - w0)
                engine.wait_configured(60)
                engine.configure(method=cfg.method)
                engine.wait_configured(60)
    finally:
        engine.stop()
    ms = lambda a, q: float(np.percentile(a, q) * 1e3) if len(a) else float("nan")  # noqa: E731
    hop_ms = engine.hop / engine.fs * 1e3
    return {"latency_p50_ms": ms(lat, 50), "latency_p99_ms": ms(lat, 99), "hop_ms": hop_ms,
            "frame_cpu_p50_ms": ms(proc_cpu, 50), "frame_cpu_p99_ms": ms(proc_cpu, 99),
            "frame_wall_p99_ms": ms(proc_wall, 99), "own_core_latency_p99_ms": hop_ms + ms(proc_cpu, 99),
            "retune_calls": len(retune_wall), "retune_p50_ms": ms(retune_wall, 50), "retune_p99_ms": ms(retune_wall, 99),
            "retune_cpu_max_ms": ms(retune_cpu, 100), "rebuild_request_max_ms": ms(rebuild_wall, 100),
            "rebuild_request_cpu_max_ms": ms(rebuild_cpu, 100), "rebuilds": len(rebuild_wall)}


def measure_case(pid: str, method: str, grid: str, *, quick: bool = False) -> dict:
    """One case, in this process (the bench runs it in a child pinned to one core)."""
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.runtime.sources import ArraySource, sim_source
    from doascope.hardware_profiles import load_profile

    prof = load_profile(pid)
    cfg = AnalysisConfig(method=method, grid=grid, n_sources=2)
    scene = sim_source("two-talkers", prof, speed=0.0, loop=True)   # simulated once, replayed by every run

    def source(speed=0.0):
        return ArraySource(scene.audio, prof.sample_rate, scene.mic_map, speed=speed, loop=True)

    audio = np.ascontiguousarray(scene.audio[:, list(scene.mic_map)])
    step = Engine(source(), prof, cfg).step
    frames = (60 if quick else 300) if prof.n_mics <= 8 else (20 if quick else 80)
    out = {"profile": pid, "method": method, "grid": grid, "fs": prof.sample_rate, "step_ms": step / prof.sample_rate * 1e3}
    for name, before in (("before", True), ("after", False)):
        _steady(prof, cfg, source, 10, before)   # warm-up: kernels loaded, caches filled
        out[name] = _steady(prof, cfg, source, frames, before)
        out[name]["stages_us"] = _stages(prof, cfg, audio, step, frames, before)
    out["paced"] = _paced(prof, cfg, source, 4.0 if quick else 20.0)
    return out


def _one_core(pid, method, grid, quick) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _CHILD, pid, method, grid, "1" if quick else "0"], env=env,
                         capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode or not line:
        raise RuntimeError(f"the one-core run of {pid} {method} failed: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(line[-1][len("RESULT "):])


def _odas(odaslive: str, quick: bool) -> dict:
    """odaslive on the audio of the 4-mic rows (the simulated two-talker room, looped)."""
    from doascope.app.bench.odas import odas_cpu_per_audio_s
    from doascope.app.runtime.sources import sim_source
    from doascope.hardware_profiles import load_profile

    prof = load_profile(ODAS_PROFILE)
    scene = sim_source("two-talkers", prof, speed=0.0, loop=True)
    audio = np.ascontiguousarray(scene.audio[:, list(scene.mic_map)], dtype=np.float32)
    n = int((30.0 if quick else 120.0) * prof.sample_rate)
    audio = np.tile(audio, (-(-n // len(audio)), 1))[:n]
    return odas_cpu_per_audio_s(odaslive, audio, prof.positions, prof.sample_rate, runs=3 if quick else 5)


def live_pipeline(quick: bool, out: dict, odas: str | None = None) -> None:
    """The table of `bench --live` that compares the pipeline with the previous release's (and, with
    ``odas`` the path of ODAS's odaslive, with ODAS on the 4-mic rows' audio)."""
    from doascope.app.bench.common import Pace as _Pace, console as _console, new_table as _table

    con = _console()
    odas_res = _odas(odas, quick) if odas else None   # first: a wrong path fails before the long part
    pace = _Pace("live pipeline on one core, before and after", len(CASES))
    rows = []
    for label, pid, method, grid, target in CASES:
        r = _one_core(pid, method, grid, quick)
        r.update(label=label, target=target)
        rows.append(r)
        pace.step()
    if odas_res:
        odas_cpu = odas_res["cpu_per_audio_s"]
        odas_text = (f"ODAS (odaslive, its ReSpeaker USB preset, SSL + SST) measured now on the 4-mic rows' audio, "
                     f"{odas_res['audio_s']:.0f} s: median of {len(odas_res['runs'])} runs' user + system CPU "
                     f"{odas_cpu:.4f} s per audio s")
    else:
        odas_cpu = None
        odas_text = (f"ODAS quoted (measured with --odas on this machine class): {ODAS_CPU_PER_AUDIO_S[0]:g}-"
                     f"{ODAS_CPU_PER_AUDIO_S[1]:g} CPU s per audio s")
    table = _table("Live engine on one core (numba and BLAS one thread): analysis CPU s per audio s on a fast "
                   f"replay of the simulated two-talker room, 2 sources. {odas_text}",
                   ["case", "before", "after", "ratio", "target", "met", "process CPU after", "ODAS",
                    "after / ODAS", "frames in (us)", "localize (us)", "tracker (us)",
                    "before: in / localize / tracker (us)"])
    for r in rows:
        b, a = r["before"], r["after"]
        sa, sb = a["stages_us"], b["stages_us"]
        same = r["profile"] == ODAS_PROFILE
        if same and odas_cpu:
            vs_odas = (f"{odas_cpu:.4f}", f"{a['cpu'] / odas_cpu:.2f}")
        elif same:
            vs_odas = (f"{ODAS_CPU_PER_AUDIO_S[0]:g}-{ODAS_CPU_PER_AUDIO_S[1]:g} (quoted)",
                       f"{a['cpu'] / ODAS_CPU_PER_AUDIO_S[1]:.2f}-{a['cpu'] / ODAS_CPU_PER_AUDIO_S[0]:.2f}")
        else:
            vs_odas = ("-", "-")
        table.add_row(r["label"], f"{b['cpu']:.4f}", f"{a['cpu']:.4f}", f"{b['cpu'] / a['cpu']:.2f}x",
                      f"<= {r['target']:g}", "yes" if a["cpu"] <= r["target"] else "no", f"{a['process_cpu']:.4f}",
                      *vs_odas, f"{sa['frames in']:.0f}", f"{sa['localize']:.0f}", f"{sa['tracker']:.0f}",
                      f"{sb['frames in']:.0f} / {sb['localize']:.0f} / {sb['tracker']:.0f}")
    con.print(table)
    table = _table("Live engine at real-time pace (one core). Latency judged as one hop (the audio's delivery) + "
                   "the p99 of each frame's processing, as the engine thread's CPU time: what a core of its own "
                   "gives; the measured capture-to-publish times (wall clock) also hold every wait for a core on "
                   "a shared machine. Engine.configure: what it costs the calling thread, wall time including "
                   f"waits for the GIL (retunes: smoothing, sources, tracker, target <= {RETUNE_TARGET_MS:g} ms; "
                   "rebuild: a new method, built on a worker thread)",
                   ["case", "hop (ms)", "frame CPU p50 / p99 (ms)", "hop + frame CPU p99 (ms)", "target", "met",
                    "measured p50 / p99, frame wall p99 (ms)", "retunes", "retune p50 (ms)", "retune p99 (ms)",
                    "retune CPU max (ms)", "met", "rebuild requests: max, CPU max (ms)"])
    for r in rows:
        p = r["paced"]
        limit = p["hop_ms"] + LATENCY_MARGIN_S * 1e3
        table.add_row(r["label"], f"{p['hop_ms']:.1f}", f"{p['frame_cpu_p50_ms']:.1f} / {p['frame_cpu_p99_ms']:.1f}",
                      f"{p['own_core_latency_p99_ms']:.1f}", f"<= {limit:.1f}",
                      "yes" if p["own_core_latency_p99_ms"] <= limit else "no",
                      f"{p['latency_p50_ms']:.1f} / {p['latency_p99_ms']:.1f}, {p['frame_wall_p99_ms']:.1f}",
                      f"{p['retune_calls']}", f"{p['retune_p50_ms']:.3f}", f"{p['retune_p99_ms']:.3f}",
                      f"{p['retune_cpu_max_ms']:.3f}", "yes" if p["retune_p99_ms"] <= RETUNE_TARGET_MS else "no",
                      f"{p['rebuild_request_max_ms']:.2f}, {p['rebuild_request_cpu_max_ms']:.2f}")
    con.print(table)
    out["live_pipeline"] = {"cases": rows, "odas_cpu_per_audio_s_quoted": list(ODAS_CPU_PER_AUDIO_S), "odas": odas_res,
                            "retune_target_ms": RETUNE_TARGET_MS}
