"""``doascope bench``: speed and accuracy against pyroomacoustics, measured in this process.

Speed is reported as ratios against pyroomacoustics run on the same STFT blocks in the same
process (these machines are shared and noisy, so absolute times mean little). Accuracy is
measured on simulated reverberant rooms (doascope.app.scenes) for ours and pyroomacoustics'
methods on the very same blocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from doascope.dsp import Localizer, circle_grid, find_peaks, make_estimator, stft
from doascope.dsp.metrics import azimuth_errors
from doascope.hardware_profiles import load_profile

FS = 16000
NFFT = 512
HOP = 256
FRAMES = 8
BAND = (300.0, 3500.0)
OURS = ("srp-phat", "srp-dpd", "gcc-phat", "music", "normmusic")
PRA = {"srp-phat": "SRP", "music": "MUSIC", "normmusic": "NormMUSIC"}
SMOOTHING = (0.0, 0.5, 0.8)
RT60_BINS = ((0.2, 0.45), (0.45, 0.7), (0.7, 0.9))
_LIB = {"doascope": "doascope", "pyroomacoustics": "pra"}
ARRAYS = {"4 mics (ReSpeaker USB v2)": "respeaker_usb_v2", "8 mics (MATRIX Creator)": "matrix_creator"}


def _console():
    from rich.console import Console

    return Console(width=max(140, Console().width))


def _table(title, columns):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        left = c in ("method", "array", "case")
        t.add_column(c, justify="left" if left else "right", no_wrap=left)
    return t


def _pra_doa(name: str, positions, n_src: int):
    import pyroomacoustics as pra

    L = positions[:, :2].T  # planar arrays: pyroomacoustics searches the azimuth circle in 2-D
    return pra.doa.algorithms[name](L, FS, NFFT, c=343.0, num_src=n_src, azimuth=np.radians(np.arange(360.0)))


def _median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _test_block(positions, seed=0) -> np.ndarray:
    from doascope.dsp import unit_vectors

    rng = np.random.default_rng(seed)
    n = FS
    f = np.fft.rfftfreq(n, 1 / FS)
    x = np.zeros((n, len(positions)))
    for az in (60.0, 200.0):
        S = np.fft.rfft(rng.standard_normal(n))
        u = unit_vectors(az, 0.0)
        x += np.stack([np.fft.irfft(S * np.exp(2j * np.pi * f * (u @ m) / 343.0), n=n) for m in positions], 1)
    x += 0.1 * rng.standard_normal(x.shape)
    return np.ascontiguousarray(stft(x.astype(np.float32), nfft=NFFT, hop=HOP)[:, :, :FRAMES])


def speed(quick: bool, out: dict) -> None:
    con = _console()
    reps = 20 if quick else 100
    table = _table(f"Per-block time: {FRAMES} frames of {NFFT} at {FS} Hz, band {BAND[0]:g}-{BAND[1]:g} Hz, "
                   "1-degree circle, 2 sources; ratio = pyroomacoustics time / ours",
                   ["array", "method", "ours (ms)", "pyroomacoustics", "pra (ms)", "ratio"])
    grid = circle_grid(1.0)
    for label, pid in ARRAYS.items():
        pos = load_profile(pid).positions
        X = _test_block(pos)
        pra_times = {}
        for ours_name, pra_name in PRA.items():
            d = _pra_doa(pra_name, pos, 2)
            pra_times[pra_name] = _median_time(lambda: d.locate_sources(X, num_src=2, freq_range=list(BAND)),
                                               max(5, reps // 5))
        for m in OURS:
            est = make_estimator(m, pos, fs=FS, nfft=NFFT, grid=grid, band=BAND, n_sources=2)
            t = _median_time(lambda: find_peaks(est.spectrum(X), grid, 2), reps)
            ref = PRA.get(m, "SRP")
            ratio = pra_times[ref] / t
            table.add_row(label, m, f"{t * 1e3:.3f}", ref, f"{pra_times[ref] * 1e3:.2f}", f"{ratio:.0f}x")
            out.setdefault("speed", []).append({"array": label, "method": m, "ours_ms": t * 1e3, "pra": ref,
                                                "pra_ms": pra_times[ref] * 1e3, "ratio": ratio})
    con.print(table)


_PRA_LOCATE = r"""
import json, sys
import numpy as np, soundfile as sf, pyroomacoustics as pra
path, out = sys.argv[1], sys.argv[2]
x, fs = sf.read(path, dtype="float32", always_2d=True)
L = np.array(json.loads(sys.argv[3]))[:, :2].T
nfft, hop, frames = 512, 256, 8
X = pra.transform.stft.analysis(x, nfft, hop, win=pra.hann(nfft))  # (frames, freqs, mics)
X = np.ascontiguousarray(X.transpose(2, 1, 0))
doa = pra.doa.algorithms["SRP"](L, fs, nfft, c=343.0, num_src=1, azimuth=np.radians(np.arange(360.0)))
with open(out, "w") as fh:
    for b in range(X.shape[2] // frames):
        doa.locate_sources(X[:, :, b * frames:(b + 1) * frames], num_src=1, freq_range=[300.0, 3500.0])
        t = (b * frames * hop + ((frames - 1) * hop + nfft) / 2) / fs
        fh.write(json.dumps({"t": t, "sources": [{"azimuth": float(np.degrees(doa.azimuth_recon[0]))}]}) + "\n")
"""


def locate_file(quick: bool, out: dict) -> None:
    """`doascope locate` on a 120 s 8-mic file against the same work in pyroomacoustics, as commands."""
    import soundfile as sf

    con = _console()
    seconds = 30 if quick else 120
    pos = load_profile("matrix_creator").positions
    with tempfile.TemporaryDirectory() as tmp:
        prof = os.path.join(tmp, "creator16k.toml")
        with open(prof, "w") as fh:
            fh.write('name = "MATRIX Creator at 16 kHz"\nsample_rate = 16000\nchannels = 8\n'
                     f"mic_channels = {list(range(8))}\npositions = {pos.tolist()}\n")
        rng = np.random.default_rng(3)
        n = seconds * FS
        x = np.zeros((n, 8), np.float32)
        f = np.fft.rfftfreq(FS * 10, 1 / FS)
        from doascope.dsp import unit_vectors

        for s0 in range(0, n, FS * 10):  # a source that moves every 10 s
            S = np.fft.rfft(rng.standard_normal(FS * 10))
            u = unit_vectors(rng.uniform(0, 360), 0.0)
            seg = np.stack([np.fft.irfft(S * np.exp(2j * np.pi * f * (u @ m) / 343.0)) for m in pos], 1)
            x[s0:s0 + FS * 10] = 0.1 * seg[: n - s0]
        x += 0.003 * rng.standard_normal(x.shape).astype(np.float32)
        wav = os.path.join(tmp, "long.wav")
        sf.write(wav, x, FS, subtype="FLOAT")
        ours_cmd = [sys.executable, "-m", "doascope.app.cli", "locate", wav, "--profile", prof,
                    "--method", "srp-phat", "--format", "jsonl", "-o", os.path.join(tmp, "ours.jsonl")]
        pra_cmd = [sys.executable, "-c", _PRA_LOCATE, wav, os.path.join(tmp, "pra.jsonl"), json.dumps(pos.tolist())]
        times = {}
        for name, cmd in (("doascope", ours_cmd), ("pyroomacoustics", pra_cmd)):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=tmp)
            times[name] = time.perf_counter() - t0
        with open(os.path.join(tmp, "ours.jsonl")) as a, open(os.path.join(tmp, "pra.jsonl")) as b:
            ours = [json.loads(l)["sources"] for l in a]
            ref = [json.loads(l)["sources"] for l in b]
        agree = np.mean([bool(o) and bool(r) and azimuth_errors([o[0]["azimuth"]], [r[0]["azimuth"]])[0] <= 5
                         for o, r in zip(ours, ref)])
    ratio = times["pyroomacoustics"] / times["doascope"]
    con.print(f"[bold]locate on a {seconds} s 8-mic 16 kHz file[/] (SRP-PHAT, start-up included): "
              f"doascope {times['doascope']:.2f} s, pyroomacoustics {times['pyroomacoustics']:.2f} s, "
              f"ratio {ratio:.1f}x; the two agree within 5 degrees on {agree:.0%} of {len(ours)} blocks")
    out["locate_file"] = {"seconds": seconds, "doascope_s": times["doascope"],
                          "pyroomacoustics_s": times["pyroomacoustics"], "ratio": ratio, "agreement": agree}


def accuracy(quick: bool, n_scenes: int | None, out: dict, profile: str = "respeaker_usb_v2") -> None:
    from doascope.app.scenes import random_scene

    con = _console()
    n_scenes = n_scenes or (3 if quick else 30)
    pos = load_profile(profile).positions
    grid = circle_grid(1.0)
    block_s = FRAMES * HOP / FS
    scores: dict[tuple, list[float]] = {}
    t_start = time.perf_counter()
    for n_src in (1, 2, 3):
        pra_doas = {name: _pra_doa(name, pos, n_src) for name in PRA.values()}
        for i in range(n_scenes):
            rng = np.random.default_rng(1000 * n_src + i)
            scene = random_scene(pos, FS, rng, n_sources=n_src)
            truth = np.array([s.azimuth for s in scene.sources])
            X = stft(scene.audio, nfft=NFFT, hop=HOP)
            blocks = X.shape[2] // FRAMES
            starts = [b * FRAMES * HOP for b in range(blocks)]
            stop = (FRAMES - 1) * HOP + NFFT
            live = [bool(np.all(scene.active(s, s + stop))) for s in starts]

            rt_bin = RT60_BINS[int(np.searchsorted([b[1] for b in RT60_BINS], scene.rt60))]

            def score(key, estimates):
                for b, est in enumerate(estimates):
                    if live[b]:
                        err = azimuth_errors(est, truth)
                        val = float(err[0] <= 10) if n_src == 1 else float(np.mean(err <= 15))
                        scores.setdefault((n_src,) + key, []).append(val)
                        scores.setdefault((n_src, rt_bin) + key, []).append(val)

            for m in OURS:
                est = make_estimator(m, pos, fs=FS, nfft=NFFT, grid=grid, band=BAND, n_sources=n_src)
                for a in SMOOTHING:
                    loc = Localizer(est, hop=HOP, n_sources=n_src, frames_per_block=FRAMES, smoothing=a)
                    score(("doascope", m, a), [[p.azimuth for p in r.peaks] for r in loc.locate(scene.audio, FS)])
            for name, doa in pra_doas.items():
                ests = []
                for b in range(blocks):
                    doa.locate_sources(X[:, :, b * FRAMES:(b + 1) * FRAMES], num_src=n_src, freq_range=list(BAND))
                    ests.append(np.degrees(doa.azimuth_recon))
                score(("pyroomacoustics", name, 0.0), ests)
    elapsed = time.perf_counter() - t_start
    table = _table(f"Accuracy on simulated reverberant rooms ({profile}, RT60 0.2-0.9 s, SNR 0-25 dB, speech and "
                   f"noise; {n_scenes} scenes per source count; blocks where every source is active)",
                   ["method", "smoothing", "latency (ms)", "1 src: <=10 deg", "2 src: recall@15", "3 src: recall@15"])
    keys = sorted({k[1:] for k in scores if len(k) == 4}, key=lambda k: (k[0] != "doascope", k[1], k[2]))
    for lib, m, a in keys:
        cells = []
        for n_src in (1, 2, 3):
            v = scores.get((n_src, lib, m, a), [])
            cells.append(f"{np.mean(v):.1%}" if v else "-")
            out.setdefault("accuracy", []).append({"library": lib, "method": m, "smoothing": a, "sources": n_src,
                                                   "score": float(np.mean(v)) if v else None, "blocks": len(v)})
        # An exponential average's group delay is a/(1-a) blocks.
        latency = a / (1 - a) * block_s * 1e3
        table.add_row(f"{_LIB[lib]} {m}", f"{a:g}", f"{latency:.0f}", *cells)
    con.print(table)
    table = _table("Single source, <=10 deg, by RT60 (which method wins where)",
                   ["method", "smoothing"] + [f"RT60 {lo:g}-{hi:g} s" for lo, hi in RT60_BINS])
    for lib, m, a in keys:
        cells = []
        for rb in RT60_BINS:
            v = scores.get((1, rb, lib, m, a), [])
            cells.append(f"{np.mean(v):.1%}" if v else "-")
        table.add_row(f"{_LIB[lib]} {m}", f"{a:g}", *cells)
    con.print(table)
    con.print(f"({elapsed:.0f} s; latency = group delay of the temporal integration, on top of one "
              f"{block_s * 1e3:.0f} ms block)")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def live(quick: bool, out: dict) -> None:
    """The live engine at real-time pace: CPU per audio second (RTF) and capture-to-frame latency."""
    from doascope.app.engine import AnalysisConfig, Engine
    from doascope.app.sources import sim_source

    con = _console()
    seconds = 3.0 if quick else 8.0
    table = _table(f"Live engine, simulated two-talker room paced at real time for {seconds:g} s "
                   "(RTF = analysis CPU time / audio time; latency = last sample of the window captured -> "
                   "frame published)",
                   ["array", "method", "grid", "frames/s", "RTF", "RTF warm", "latency p50 (ms)",
                    "latency p99 (ms)", "hop (ms)"])
    cases = [("respeaker_usb_v2", m, "auto") for m in OURS] + [("minidsp_uma16", "srp-phat", "sphere")]
    for pid, method, grid in cases:
        prof = load_profile(pid)
        cfg = AnalysisConfig(method=method, grid=grid, n_sources=2)
        rows = {}
        for speed in (1.0, 0.0):  # real time, then as fast as possible (warm caches: the CPU floor)
            src = sim_source("two-talkers", prof, speed=speed, loop=speed > 0)
            eng = Engine(src, prof, cfg)
            eng.start()
            if speed > 0:
                time.sleep(seconds)
                eng.stop()
            else:
                eng.wait(120)
            audio = eng.frames * eng.step / eng.fs
            rows[speed] = (eng.cpu_seconds / max(audio, 1e-9), np.array(eng.latencies), eng.frames / max(audio, 1e-9),
                           eng)
        rtf, lat, fps, eng = rows[1.0]
        p50, p99 = np.percentile(lat, [50, 99]) * 1e3
        label = f"{pid} ({prof.n_mics} mics, {prof.sample_rate // 1000} kHz)"
        table.add_row(label, method, eng.localizer.estimator.grid.kind + f" ({len(eng.localizer.estimator.grid)})",
                      f"{fps:.0f}", f"{rtf:.4f}", f"{rows[0.0][0]:.4f}", f"{p50:.1f}", f"{p99:.1f}",
                      f"{eng.hop / eng.fs * 1e3:.0f}")
        out.setdefault("live", []).append({"profile": pid, "method": method, "grid": grid, "rtf": rtf,
                                            "rtf_warm": rows[0.0][0], "latency_p50_ms": p50,
                                            "latency_p99_ms": p99, "hop_ms": eng.hop / eng.fs * 1e3})
    con.print(table)

    # A long replay at 10x: no overruns, flat memory.
    minutes = 1.0 if quick else 10.0
    prof = load_profile("respeaker_usb_v2")
    src = sim_source("two-talkers", prof, speed=10.0, loop=True)
    eng = Engine(src, prof, AnalysisConfig(method="srp-phat"))
    eng.start()
    rss = []
    t_end = time.monotonic() + minutes * 60 / 10
    while time.monotonic() < t_end and eng.running:
        time.sleep(1.0)
        rss.append(_rss_mb())
    eng.stop()
    half = len(rss) // 2
    growth = max(rss[half:]) - rss[half] if rss else 0.0
    con.print(f"[bold]{minutes:g}-minute replay at 10x[/]: {eng.frames} frames, overruns {eng.overruns}, "
              f"RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB (growth over the second half {growth:+.1f} MB)")
    out["soak"] = {"minutes": minutes, "frames": eng.frames, "overruns": eng.overruns, "rss_mb": rss}


def cmd_bench(args) -> int:
    out: dict = {}
    if args.live:
        live(args.quick, out)
    else:
        if not args.accuracy_only:
            speed(args.quick, out)
            locate_file(args.quick, out)
        if not args.speed_only:
            accuracy(args.quick, args.scenes, out)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0
