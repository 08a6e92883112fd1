"""Per-block speed of the kernels against pyroomacoustics on the same STFT blocks, and ``locate`` on a
long file against the same work in pyroomacoustics, both as commands (the default ``doascope bench``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from doascope.app.bench.common import BAND, FRAMES, FS, HOP, NFFT, Pace, console, median_time, new_table
from doascope.dsp import circle_grid, find_peaks, make_estimator, stft
from doascope.dsp.metrics import azimuth_errors
from doascope.hardware_profiles import load_profile

OURS = ("srp-phat", "srp-dpd", "gcc-phat", "music", "normmusic")
PRA = {"srp-phat": "SRP", "music": "MUSIC", "normmusic": "NormMUSIC"}
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
        pra_cmd = [sys.executable, "-m", "doascope.app.bench.pra_locate", wav, os.path.join(tmp, "pra.jsonl"), json.dumps(pos.tolist())]
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
