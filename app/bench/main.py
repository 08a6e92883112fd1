"""``doascope bench``: speed and accuracy against pyroomacoustics, measured in this process.

Speed is reported as ratios against pyroomacoustics run on the same STFT blocks in the same
process (these machines are shared and noisy, so absolute times mean little). Accuracy is
measured on simulated reverberant rooms (doascope.sim.scenes) for ours and pyroomacoustics'
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
from doascope.app.bench.common import BAND, FRAMES, FS, HOP, NFFT, Pace, console, median_time, new_table
from doascope.hardware_profiles import load_profile

OURS = ("srp-phat", "srp-dpd", "gcc-phat", "music", "normmusic")
PRA = {"srp-phat": "SRP", "music": "MUSIC", "normmusic": "NormMUSIC"}
SMOOTHING = (0.0, 0.5, 0.8)
RT60_BINS = ((0.2, 0.45), (0.45, 0.7), (0.7, 0.9))
_LIB = {"doascope": "doascope", "pyroomacoustics": "pra"}
ARRAYS = {"4 mics (ReSpeaker USB v2)": "respeaker_usb_v2", "8 mics (MATRIX Creator)": "matrix_creator"}




def _pra_doa(name: str, positions, n_src: int):
    import pyroomacoustics as pra

    L = positions[:, :2].T  # planar arrays: pyroomacoustics searches the azimuth circle in 2-D
    return pra.doa.algorithms[name](L, FS, NFFT, c=343.0, num_src=n_src, azimuth=np.radians(np.arange(360.0)))


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
    con = console()
    reps = 20 if quick else 100
    table = new_table(f"Per-block time: {FRAMES} frames of {NFFT} at {FS} Hz, band {BAND[0]:g}-{BAND[1]:g} Hz, "
                   "1-degree circle, 2 sources; ratio = pyroomacoustics time / ours",
                   ["array", "method", "ours (ms)", "pyroomacoustics", "pra (ms)", "ratio"])
    grid = circle_grid(1.0)
    pace = Pace("speed, per array and method", len(ARRAYS) * len(OURS))
    for label, pid in ARRAYS.items():
        pos = load_profile(pid).positions
        X = _test_block(pos)
        pra_times = {}
        for ours_name, pra_name in PRA.items():
            d = _pra_doa(pra_name, pos, 2)
            pra_times[pra_name] = median_time(lambda: d.locate_sources(X, num_src=2, freq_range=list(BAND)),
                                               max(5, reps // 5))
        for m in OURS:
            est = make_estimator(m, pos, fs=FS, nfft=NFFT, grid=grid, band=BAND, n_sources=2)
            t = median_time(lambda: find_peaks(est.spectrum(X), grid, 2), reps)
            ref = PRA.get(m, "SRP")
            ratio = pra_times[ref] / t
            table.add_row(label, m, f"{t * 1e3:.3f}", ref, f"{pra_times[ref] * 1e3:.2f}", f"{ratio:.0f}x")
            out.setdefault("speed", []).append({"array": label, "method": m, "ours_ms": t * 1e3, "pra": ref,
                                                "pra_ms": pra_times[ref] * 1e3, "ratio": ratio})
            pace.step()
    con.print(table)


_PRA_LOCATE = r"""
import json, sys
import numpy as np, soundfile as sf, pyroomacoustics as pra
path, out = sys.argv[1], sys.argv[2]
x, fs = sf.read(path, dtype="float32", always_2d=True)
L = np.array(json.loads(sys.argv[3]))[:, :2].T
nfft, frames = default_nfft(fs), DEFAULT_FRAMES_PER_BLOCK
hop = nfft // 2
X = pra.transform.stft.analysis(x, nfft, hop, win=pra.hann(nfft))  # (frames, freqs, mics)
X = np.ascontiguousarray(X.transpose(2, 1, 0))
doa = pra.doa.algorithms["SRP"](L, fs, nfft, c=343.0, num_src=1, azimuth=np.radians(np.arange(360.0)))
with open(out, "w") as fh:
    for b in range(X.shape[2] // frames):
        doa.locate_sources(X[:, :, b * frames:(b + 1) * frames], num_src=1, freq_range=list(DEFAULT_BAND))
        t = (b * frames * hop + ((frames - 1) * hop + nfft) / 2) / fs
        fh.write(json.dumps({"t": t, "sources": [{"azimuth": float(np.degrees(doa.azimuth_recon[0]))}]}) + "\n")
"""


def locate_file(quick: bool, out: dict) -> None:
    """`doascope locate` on a 120 s 8-mic file against the same work in pyroomacoustics, as commands."""
    import soundfile as sf

    con = console()
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
        ours_cmd = [sys.executable, "-m", "doascope.app.cli.main", "locate", wav, "--profile", prof,
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
    from doascope.sim.scenes import random_scene

    con = console()
    n_scenes = n_scenes or (3 if quick else 30)
    pos = load_profile(profile).positions
    grid = circle_grid(1.0)
    block_s = FRAMES * HOP / FS
    scores: dict[tuple, list[float]] = {}
    t_start = time.perf_counter()
    pace = Pace(f"accuracy, simulated rooms ({n_scenes} per source count)", 3 * n_scenes)
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
            pace.step()
    elapsed = time.perf_counter() - t_start
    table = new_table(f"Accuracy on simulated reverberant rooms ({profile}, RT60 0.2-0.9 s, SNR 0-25 dB, speech and "
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
    table = new_table("Single source, <=10 deg, by RT60 (which method wins where)",
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
    from doascope.app.bench.live import live_pipeline
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.runtime.sources import sim_source

    live_pipeline(quick, out)   # one core, before and after, retune cost (doascope.app.bench.live)

    con = console()
    seconds = 3.0 if quick else 8.0
    table = new_table(f"Live engine, simulated two-talker room paced at real time for {seconds:g} s "
                   "(RTF = analysis CPU time / audio time; latency = last sample of the window captured -> "
                   "frame published)",
                   ["array", "method", "grid", "frames/s", "RTF", "RTF warm", "latency p50 (ms)",
                    "latency p99 (ms)", "hop (ms)"])
    cases = [("respeaker_usb_v2", m, "auto") for m in OURS] + [("minidsp_uma16", "srp-phat", "sphere")]
    pace = Pace(f"live engine, {seconds:g} s of audio at real time per case, then a 10x soak", len(cases))
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
        pace.step()
    con.print(table)

    # A long replay at 10x: no overruns, flat memory.
    minutes = 1.0 if quick else 10.0
    print(f"bench: a {minutes * 60 / 10:.0f} s replay of {minutes:g} minutes of audio at 10x...", file=sys.stderr,
          flush=True)
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


_SERVE_CLIENTS = r"""
import asyncio, json, sys
from websockets.asyncio.client import connect

async def main(url, n, seconds):
    loop = asyncio.get_running_loop()
    window, results, ready = {}, [None] * n, [0]
    all_ready = asyncio.Event()

    async def one(i):
        seqs = []
        async with connect(url, open_timeout=60, close_timeout=2) as ws:
            first = True
            async for text in ws:
                msg = json.loads(text)
                if msg.get("type") != "doa":
                    continue
                if first:
                    first = False
                    ready[0] += 1
                    if ready[0] == n:
                        all_ready.set()
                if window:
                    t = loop.time()
                    if t >= window["end"]:
                        break
                    if t >= window["start"]:
                        seqs.append(msg["seq"])
        results[i] = seqs

    tasks = [asyncio.ensure_future(one(i)) for i in range(n)]
    await asyncio.wait_for(all_ready.wait(), 60)
    window.update(start=loop.time(), end=loop.time() + seconds)
    print("ready", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), seconds + 30)
    print(json.dumps({"counts": [len(s) for s in results],
                      "lost": [sum(b - a - 1 for a, b in zip(s, s[1:])) for s in results]}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


def serve_bench(quick: bool, out: dict, *, speed: float = 1.0, counts=(0, 10, 100)) -> None:
    """`doascope serve` with 0, 10 and 100 WebSocket clients that keep up: frames delivered, frames
    lost, and the server's CPU. The service (engine included) runs in this process, so its CPU is
    this process's CPU time; the clients run in one separate asyncio process and are not counted."""
    from doascope.app.runtime.engine import AnalysisConfig, Engine
    from doascope.app.net.server import Service, ServiceThread, free_port
    from doascope.app.runtime.sources import sim_source

    con = console()
    seconds = 2.0 if quick else 5.0
    prof = load_profile("respeaker_usb_v2")
    engine = Engine(sim_source("two-talkers", prof, speed=speed, loop=True), prof, AnalysisConfig(method="srp-phat"),
                    ring_seconds=4.0 * max(1.0, speed))
    service = Service(engine, prof)
    serving = ServiceThread(service, port=free_port(), name="doascope-bench-serve")
    port = serving.port
    serving.start(frames=30, timeout=30)  # warm: ~1 s of frames
    rows = []
    try:
        for n in counts:
            proc = None
            if n:
                proc = subprocess.Popen([sys.executable, "-c", _SERVE_CLIENTS, f"ws://127.0.0.1:{port}/", str(n),
                                         str(seconds)], stdout=subprocess.PIPE, text=True)
                if proc.stdout.readline().strip() != "ready":
                    proc.kill()
                    raise RuntimeError(f"the {n} benchmark clients did not connect")
            c0, t0, f0, e0 = time.process_time(), time.perf_counter(), engine.frames, engine.cpu_seconds
            m0 = sum(c.sent for c in list(service.clients))
            time.sleep(seconds)
            c1, t1, f1, e1 = time.process_time(), time.perf_counter(), engine.frames, engine.cpu_seconds
            m1 = sum(c.sent for c in list(service.clients))
            got = {"counts": [], "lost": []}
            if proc is not None:
                got = json.loads(proc.stdout.readline())
                proc.wait(60)
            wall = t1 - t0
            fps = np.array(got["counts"], float) / seconds
            rows.append({"clients": n, "seconds": wall, "engine_fps": (f1 - f0) / wall,
                         "client_fps_min": float(fps.min()) if n else None,
                         "client_fps_median": float(np.median(fps)) if n else None,
                         "frames_lost": int(sum(got["lost"])), "messages_per_s": (m1 - m0) / wall,
                         "cpu_per_s": (c1 - c0) / wall,
                         "rtf": (e1 - e0) / max((f1 - f0) * engine.step / engine.fs, 1e-9),
                         "overruns": engine.overruns})
    finally:
        serving.stop(15)
    base = rows[0]["cpu_per_s"] if rows and rows[0]["clients"] == 0 else None
    table = new_table(f"Service: simulated two-talker room at {speed:g}x real time, WebSocket clients that keep up "
                   f"(one separate process), {seconds:g} s each; CPU = this process (engine + service) CPU "
                   "seconds per second, in % of one core",
                   ["clients", "engine frames/s", "per client min", "per client median", "frames lost",
                    "messages/s", "server CPU", "extra vs 0 (core)", "extra vs 0 (relative)", "engine RTF"])
    for r in rows:
        extra = r["cpu_per_s"] - base if base is not None else None
        r["extra_cpu_per_s"] = extra
        r["extra_ratio"] = extra / base if base else None
        table.add_row(str(r["clients"]), f"{r['engine_fps']:.1f}",
                      "-" if r["client_fps_min"] is None else f"{r['client_fps_min']:.1f}",
                      "-" if r["client_fps_median"] is None else f"{r['client_fps_median']:.1f}",
                      str(r["frames_lost"]), f"{r['messages_per_s']:.0f}", f"{r['cpu_per_s'] * 100:.1f}%",
                      "-" if not r["clients"] or extra is None else f"{extra * 100:+.1f}%",
                      "-" if not r["clients"] or not base else f"{r['extra_ratio'] * 100:+.0f}%",
                      f"{r['rtf']:.4f}")
    con.print(table)
    hundred = [r for r in rows if r["clients"] == 100]
    if hundred and hundred[0]["extra_cpu_per_s"] is not None and base:
        e, rel = hundred[0]["extra_cpu_per_s"], hundred[0]["extra_ratio"]
        con.print(f"100 clients cost {e * 100:.1f}% of a core more than 0 clients ({rel:+.0%} of the 0-client "
                  f"process's {base * 100:.1f}%, which is mostly the engine); target under 20%: "
                  f"{'met' if e < 0.2 else 'NOT met'} as a share of a core, {'met' if rel < 0.2 else 'not met'} "
                  f"relative to the 0-client CPU; {hundred[0]['frames_lost']} frames lost, overruns {engine.overruns}")
    out["serve"] = {"speed": speed, "seconds": seconds, "profile": prof.id, "method": "srp-phat",
                    "frame_rate": engine.fs / engine.step, "rows": rows, "target_extra_cpu_100": 0.2}


def tracking_bench(quick: bool, out: dict, n_scenes: int | None = None) -> None:
    from doascope.app.bench.tracking import tracking_bench as run

    run(quick, out, n_scenes)


def cmd_bench(args) -> int:
    """One part per flag (--live, --serve, --dnn, --position, --tracking); without any, speed and accuracy."""
    from doascope.extras import require

    require(*(extra for flag, extra in (("serve", "net"), ("dnn", "dnn")) if getattr(args, flag, False)))
    out: dict = {}
    parts = {"live": lambda: live(args.quick, out),
             "serve": lambda: serve_bench(args.quick, out),
             "dnn": lambda: dnn_bench(args.quick, out, args.scenes),
             "position": lambda: position_bench(args.quick, out, n_scenes=args.scenes),
             "tracking": lambda: tracking_bench(args.quick, out, args.scenes),
             "batch": lambda: batch_bench(args.quick, out),
             "soak": lambda: _soak(args.soak, out)}
    chosen = [name for name in parts if getattr(args, name, None) is not None and getattr(args, name) is not False]
    for name in chosen:
        parts[name]()
    if not chosen:
        if not args.accuracy_only:
            speed(args.quick, out)
            locate_file(args.quick, out)
        if not args.speed_only:
            accuracy(args.quick, args.scenes, out)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


def _soak(minutes, out: dict) -> None:
    from doascope.app.bench.soak import soak_bench  # its own module: the whole service, for MINUTES

    soak_bench(minutes, out)


DNN_RIVALS = ("srp-phat", "srp-dpd", "normmusic")
UNIVERSAL = "dnn:universal"          # a method argument of _ONE_CORE_TIMES: dnn with weights="universal"

# Per-block time of each method on one core, in a child process: BLAS and torch pools limited to
# one thread (a spinning two-thread BLAS on a busy machine inflates small matrix products 10-100x).
_ONE_CORE_TIMES = r"""
import json, os, sys
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
import numpy as np, torch
torch.set_num_threads(1)
from doascope.app.bench.common import BAND, FRAMES, median_time
from doascope.config import default_nfft
from doascope.sim.scenes import random_scene
from doascope.dsp import circle_grid, find_peaks, make_estimator, stft
from doascope.hardware_profiles import load_profile
prof = load_profile(sys.argv[1])
fs, reps = prof.sample_rate, int(sys.argv[2])
nfft = default_nfft(fs)
grid = circle_grid(1.0)
audio = random_scene(prof.positions, fs, np.random.default_rng([7919, 0, 0]), n_sources=2, duration=2.0).audio
X = np.ascontiguousarray(stft(audio, nfft=nfft, hop=nfft // 2)[:, :, :FRAMES])
out = {}
for m in sys.argv[3:]:
    name, _, weights = m.partition(":")
    opts = {"weights": weights} if weights else {}
    est = make_estimator(name, prof.positions, fs=fs, nfft=nfft, grid=grid, band=BAND, n_sources=2, **opts)
    out[m] = median_time(lambda: find_peaks(est.spectrum(X), grid, 2), reps)
    if hasattr(est, "frame_peaks"):   # two sources: and each of the block's 8 frames' own maximum (its vote)
        out[m + "+votes"] = median_time(lambda: (find_peaks(est.spectrum(X), grid, 2), est.frame_peaks(X)), reps)
print(json.dumps(out))
"""


def _one_core_block_times(pid: str, quick: bool, methods=(UNIVERSAL, *DNN_RIVALS)) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _ONE_CORE_TIMES, pid, str(20 if quick else 200), *methods],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def unseen_arrays() -> dict:
    """Arrays no profile ships and no training scene drew (random_array's training seeds are two
    numbers; these are fixed shapes or three-number seeds): name -> (positions (mics, 3) m, fs)."""
    from doascope.models.dnn_check import BENCH_SEED
    from doascope.models.universal_training import random_array

    ring8 = 0.045 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4), np.zeros(8)], 1)
    a = np.radians(30.0)
    square = np.array([[0.025, 0.025, 0], [-0.025, 0.025, 0], [-0.025, -0.025, 0], [0.025, -0.025, 0]])
    square = square @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).T
    hexagon = 0.04 * np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3), np.zeros(6)], 1)
    irregular = np.array([[0.031, -0.004, 0], [0.006, 0.042, 0], [-0.037, 0.018, 0], [-0.022, -0.035, 0],
                          [0.012, -0.041, 0]])
    arrays = {"irregular 5-mic": (irregular, 16000), "8-mic ring, 9 cm": (ring8, 16000),
              "square turned 30 deg, 48 kHz": (square, 48000), "hexagon, 8 cm": (hexagon, 16000)}
    for k in range(2):
        pos = random_array(np.random.default_rng([BENCH_SEED, 99, k]))
        arrays[f"random {len(pos)}-mic #{k + 1}"] = (pos, 16000)
    return arrays


def dnn_bench(quick: bool, out: dict, n_scenes: int | None = None, profiles=None) -> None:
    """The universal network (and the per-array networks where they ship) against the classical
    methods on rooms none of them saw, for every shipped profile and the unseen arrays.

    Scoring is :func:`doascope.models.dnn_check.score_methods` (smoothing 0.5, blocks where every source is
    active: 1 source within 10 deg, 2 sources recall at 15 deg). Inference time is one block's
    spectrum + peaks on one core (a child process with one-thread BLAS and torch).
    """
    import torch

    from doascope.models.dnn_check import BENCH_SEED, score_methods
    from doascope.hardware_profiles import list_profiles
    from doascope.models.dnn import WEIGHTS_DIR, shipped_profile_for

    torch.set_num_threads(1)
    con = console()
    n_scenes = n_scenes or (2 if quick else 12)
    setups = {}
    for prof in list_profiles():
        if profiles is None or prof.id in profiles:
            setups[prof.id] = (prof.positions, int(prof.sample_rate), prof.id)
    if profiles is None:
        setups.update({name: (pos, fs, None) for name, (pos, fs) in unseen_arrays().items()})
    t_start = time.perf_counter()
    pace = Pace(f"dnn, unseen rooms ({n_scenes} per source count and array)", len(setups) * 2 * n_scenes)
    table = new_table(f"Universal DNN vs the best classical method per cell ({', '.join(DNN_RIVALS)}); {n_scenes} "
                   "unseen rooms per source count, RT60 0.2-0.9 s, SNR 0-25 dB, smoothing 0.5",
                   ["array", "mics", "Hz", "1 src <=10 deg: dnn", "best classical", "2 src recall@15: dnn",
                    "best classical", "per-array dnn (1 / 2 src)"])
    wins = {1: 0, 2: 0, "both": 0}
    for name, (pos, fs, pid) in setups.items():
        methods = {"universal": ("dnn", {"weights": "universal"})}
        if pid is not None and shipped_profile_for(pos) == pid and (WEIGHTS_DIR / f"{pid}.pt").is_file():
            methods["per-array"] = ("dnn", {"weights": str(WEIGHTS_DIR / f"{pid}.pt")})
        methods.update({m: (m, {}) for m in DNN_RIVALS})
        scores = score_methods(pos, fs, methods, n_scenes=n_scenes, seed=BENCH_SEED, progress=pace.step)
        cells, ahead = [], []
        for n_src in (1, 2):
            best = max((scores[(n_src, m)][0], m) for m in DNN_RIVALS)
            u = scores[(n_src, "universal")][0]
            ahead.append(u >= best[0])
            wins[n_src] += int(u >= best[0])
            cells += [f"{'[bold]' if u >= best[0] else ''}{u:.1%}", f"{best[0]:.1%} ({best[1]})"]
            for label in methods:
                out.setdefault("dnn", []).append({"array": name, "profile": pid, "mics": len(pos), "fs": fs,
                                                  "method": label, "sources": n_src, "score": scores[(n_src, label)][0],
                                                  "blocks": scores[(n_src, label)][1]})
        wins["both"] += int(all(ahead))
        per = (f"{scores[(1, 'per-array')][0]:.1%} / {scores[(2, 'per-array')][0]:.1%}"
               if "per-array" in methods else "-")
        table.add_row(name, str(len(pos)), str(fs), *cells, per)
    con.print(table)
    n = len(setups)
    con.print(f"universal dnn at or above the best classical method: 1 source on {wins[1]} of {n} arrays, "
              f"2 sources on {wins[2]} of {n}, both on {wins['both']} of {n}", highlight=False)
    out["dnn_summary"] = {"arrays": n, "ahead_1src": wins[1], "ahead_2src": wins[2], "ahead_both": wins["both"]}
    if profiles is None:
        _r3vival_dnn(con, out, quick)
    timed = "matrix_creator" if profiles is None or "matrix_creator" in profiles else next(iter(setups))
    if setups.get(timed, (None, None, None))[2] is not None:
        times = _one_core_block_times(timed, quick)
        con.print(f"one block (8 frames) on one core, {timed} ({len(setups[timed][0])} mics): "
                  + ", ".join(f"{m.replace(UNIVERSAL, 'universal dnn').replace('+votes', ' with frame votes')} "
                              f"{t * 1e3:.2f} ms" for m, t in times.items()), highlight=False)
        out["dnn_ms_per_block"] = {m: t * 1e3 for m, t in times.items()}
    con.print(f"({time.perf_counter() - t_start:.0f} s)")


def _r3vival_dnn(con, out: dict, quick: bool) -> None:
    """Real acoustics: talkers convolved with the measured responses of the R3VIVAL 7-mic array (a
    3-D array never trained on; shared/data/r3vival), one at a time at each of its 12 azimuths and
    two at once 90 or 150 deg apart; scored as score_methods does."""
    from doascope.app.bench import tracking_scenes as ts
    from doascope.app.bench.tracking import r3vival_folder
    from doascope.models.dnn_check import SMOOTHING

    folder = r3vival_folder()
    if folder is None:
        con.print("[yellow]shared/data/r3vival not found (set DOASCOPE_R3VIVAL): real-acoustics part skipped[/]")
        return
    pos = np.asarray(ts.R3VIVAL_POSITIONS)
    fs, nfft = 16000, 512
    grid = circle_grid(1.0)
    singles = [((a,), (((0.0, 3.0),),)) for a in range(0, 360, 30)]
    pairs = [((a, (a + d) % 360), (((0.0, 3.0),), ((0.3, 3.0),))) for a in range(0, 360, 60) for d in (90, 150)]
    if quick:
        singles, pairs = singles[:2], pairs[:1]
    methods = {"universal": ("dnn", {"weights": "universal"}), **{m: (m, {}) for m in DNN_RIVALS}}
    res = {}
    for n_src, setups in ((1, singles), (2, pairs)):
        ests = {k: make_estimator(m, pos, fs=fs, nfft=nfft, grid=grid, band=BAND, n_sources=n_src, **o)
                for k, (m, o) in methods.items()}
        for seed, (az, talk) in enumerate(setups):
            audio, truth, active = ts.r3vival_scene(folder, az, talk, duration=3.0, seed=seed)
            for k, est in ests.items():
                loc = Localizer(est, hop=nfft // 2, n_sources=n_src, frames_per_block=FRAMES, smoothing=SMOOTHING)
                for r in loc.locate(audio, fs):
                    if not np.all(active(r.start, r.stop)):
                        continue
                    err = azimuth_errors([p.azimuth for p in r.peaks], truth)
                    res.setdefault((n_src, k), []).append(float(err[0] <= 10) if n_src == 1 else float(np.mean(err <= 15)))
    table = new_table("Real acoustics: R3VIVAL 7-mic array (3-D, never trained on), measured responses, 16 kHz, "
                   f"smoothing {SMOOTHING:g}; {len(singles)} single talkers, {len(pairs)} pairs",
                   ["method", "1 src <=10 deg", "2 src recall@15"])
    for k in methods:
        table.add_row(k if k != "universal" else "universal dnn",
                      *(f"{np.mean(res.get((n, k), [np.nan])):.1%}" for n in (1, 2)))
        out.setdefault("dnn_r3vival", []).append({"method": k, **{f"{n}src": float(np.mean(res.get((n, k), [np.nan])))
                                                                 for n in (1, 2)}})
    con.print(table)


# --------------------------------------------------------------------------------------------------
# Position mode: distributed microphones
# --------------------------------------------------------------------------------------------------

POSITION_SETUPS = {"6 wall mics": "room_walls_6mic", "3 arrays x 4 mics": "room_three_arrays"}
POSITION_SEARCHES = {"grid": {"spacing": 0.05}, "coarse-to-fine": {}, "src": {}}


def position_bench(quick: bool, out: dict, *, n_scenes: int | None = None) -> None:
    """Position error and cost per block of each search, one talker in simulated rooms.

    Every search runs on the very same smoothed GCC-PHAT correlations of each block, so errors and
    times differ only by the search; triangulation uses the arrays' own far-field SRP-PHAT. Scored
    blocks: the talker speaks during at least half the block and the activity gate is open.
    """
    from doascope.config import position_defaults
    from doascope.sim.scenes import simulate_room
    from doascope.dsp.position import PositionLocalizer

    con = console()
    n_scenes = n_scenes or (3 if quick else 12)
    duration = 3.0 if quick else 4.0
    rows = []
    pace = Pace(f"position, simulated rooms ({n_scenes} per set-up)", len(POSITION_SETUPS) * n_scenes)
    for label, pid in POSITION_SETUPS.items():
        prof = load_profile(pid)
        opts = position_defaults(prof.sample_rate)
        room = prof.room
        errors: dict[str, list[float]] = {}
        times: dict[str, list[float]] = {}
        evals: dict[str, list[int]] = {}
        for i in range(n_scenes):
            rng = np.random.default_rng(500 + i)
            src = np.array([rng.uniform(room[0, 0] + 0.8, room[0, 1] - 0.8),
                            rng.uniform(room[1, 0] + 0.8, room[1, 1] - 0.8), rng.uniform(1.1, 1.8)])
            rec = simulate_room(prof.positions, prof.sample_rate, src[None], room_dim=tuple(room[:, 1] - room[:, 0]),
                                duration=duration, rt60=float(rng.uniform(0.2, 0.6)),
                                snr_db=float(rng.uniform(5, 25)), seed=i)
            searches = list(POSITION_SEARCHES) + (["triangulation"] if len(prof.groups) >= 2 else [])
            for search in searches:
                loc = PositionLocalizer(prof.positions, room=room, fs=prof.sample_rate, search=search,
                                        groups=prof.groups, search_options=POSITION_SEARCHES.get(search), **opts)
                srp = loc.srp
                spent = [0.0]
                if search != "triangulation":   # time the search alone, GCC-PHAT excluded
                    inner = srp.search

                    def timed(method, _inner=inner, **kw):
                        t0 = time.perf_counter()
                        res = _inner(method, **kw)
                        spent[0] += time.perf_counter() - t0
                        return res
                    srp.search = timed
                else:
                    inner_b = loc._triangulate

                    def timed_t(X, _inner=inner_b):
                        t0 = time.perf_counter()
                        res = _inner(X)
                        spent[0] += time.perf_counter() - t0
                        return res
                    loc._triangulate = timed_t
                for res in loc.locate(rec.audio):
                    if not res.active or rec.on[res.start:res.stop, 0].mean() < 0.5:
                        spent[0] = 0.0
                        continue
                    if res.sources:
                        s = res.sources[0]
                        errors.setdefault(search, []).append(float(np.linalg.norm([s.x - src[0], s.y - src[1],
                                                                                   s.z - src[2]])))
                    else:
                        errors.setdefault(search, []).append(np.inf)   # a missed block counts as a miss
                    times.setdefault(search, []).append(spent[0])
                    evals.setdefault(search, []).append(res.evaluations)
                    spent[0] = 0.0
            pace.step()
        ref_t = np.median(times["grid"])
        ref_e = np.median(evals["grid"])
        for search in errors:
            e = np.array(errors[search])
            t = float(np.median(times[search]))
            row = {"setup": label, "profile": pid, "search": search, "blocks": int(e.size),
                   "median_m": float(np.median(e)), "p90_m": float(np.percentile(e, 90)),
                   "within_0.3m": float(np.mean(e <= 0.3)), "ms_per_block": t * 1e3,
                   "evaluations": float(np.median(evals[search])),
                   "speedup_time": float(ref_t / t) if t > 0 else None,
                   "speedup_evaluations": float(ref_e / np.median(evals[search])) if np.median(evals[search]) else None}
            rows.append(row)
    table = new_table(f"Position of one talker in a 6 x 5 x 3 m room (RT60 0.2-0.6 s, SNR 5-25 dB, {n_scenes} scenes "
                   "per setup, blocks where the talker speaks); search time per block excludes the shared "
                   "GCC-PHAT; speed-up against the exhaustive 5 cm grid",
                   ["array", "method", "blocks", "median (m)", "p90 (m)", "<= 0.3 m", "ms/block", "points",
                    "speed-up (time)", "speed-up (points)"])
    for r in rows:
        table.add_row(r["setup"], r["search"], str(r["blocks"]), f"{r['median_m']:.3f}", f"{r['p90_m']:.3f}",
                      f"{r['within_0.3m']:.0%}", f"{r['ms_per_block']:.2f}",
                      "-" if not r["evaluations"] else f"{r['evaluations']:.0f}",
                      f"{r['speedup_time']:.0f}x" if r["speedup_time"] else "-",
                      f"{r['speedup_evaluations']:.0f}x" if r["speedup_evaluations"] else "-")
    con.print(table)
    out["position"] = rows


def batch_bench(quick: bool, out: dict) -> None:
    """``--batch``: corpus throughput of ``doascope batch`` (see app/bench/batch.py)."""
    from doascope.app.bench.batch import batch_bench as run

    run(quick, out)
