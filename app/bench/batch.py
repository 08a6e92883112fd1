"""``doascope bench --batch``: corpus throughput of ``doascope batch``, as ratios measured in one run.

A corpus of simulated recordings (two plane waves in noise) goes through the local process pool
with one worker and with two, and through a Ray cluster started here on this machine's cores (one
node, two CPUs). Each executor is started and warmed first (worker processes up, kernels loaded), so
the figures are the steady state a long corpus sees; the rounds alternate so that the machine's
load falls on all three alike, and each figure is the median over the rounds. The machine's load
average before and after is printed with them, since other work on the cores moves every figure.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

PROFILE = "respeaker_usb_v2"


def _corpus(folder: Path, files: int, seconds: float) -> list[Path]:
    import soundfile as sf

    from doascope.hardware_profiles import load_profile

    prof = load_profile(PROFILE)
    fs, rng = prof.sample_rate, np.random.default_rng(17)
    n = int(seconds * fs)
    paths = []
    for i in range(files):
        # Two sources from random directions: fractional delays as phase shifts of white spectra.
        f = np.fft.rfftfreq(n, 1.0 / fs)
        x = np.zeros((n, prof.n_mics))
        for az in rng.uniform(0, 360, 2):
            u = np.array([np.cos(np.radians(az)), np.sin(np.radians(az)), 0.0])
            S = np.fft.rfft(rng.standard_normal(n))
            x += np.fft.irfft(S[None, :] * np.exp(2j * np.pi * f[None, :] * (prof.positions @ u / 343.0)[:, None]),
                              n=n, axis=1).T
        x += 0.3 * x.std() * rng.standard_normal(x.shape)
        dev = np.zeros((n, prof.channels), np.float32)
        dev[:, list(prof.mic_channels)] = 0.3 * x / np.abs(x).max()
        paths.append(folder / f"rec{i:03d}.wav")
        sf.write(paths[-1], dev, fs, subtype="PCM_16")
    return paths


def _autogroup() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def _job():
    from doascope.app.batch.corpus import Job, config_options
    from doascope.config import AnalysisConfig

    return Job(PROFILE, tuple(sorted(config_options(AnalysisConfig(n_sources=2)).items())))


def _cpu_seconds(pids=(), session: int | None = None) -> float:
    """User + system CPU seconds so far of the processes ``pids`` and of the session ``session``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    wanted = set(pids)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) in wanted or (session is not None and int(fields[3]) == session):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _executor_cpu(executor, cluster) -> float:
    """CPU seconds so far of the executor's processes: the pool's workers, or the whole Ray cluster
    (its workers and its own servers), plus this process (the driver)."""
    if cluster is not None and hasattr(executor, "ray"):
        return _cpu_seconds(session=cluster.sessions[0]) + time.process_time()
    return _cpu_seconds(pids=executor.pids()) + time.process_time()


def _run(items, executor, folder: Path, tag: str, cluster=None) -> tuple[float, float]:
    """(audio seconds per wall second, audio seconds per CPU second) of one pass of ``items``."""
    from doascope.app.batch.corpus import run_batch

    out = folder / f"{tag}.parquet"
    for p in (out, out.with_name(out.name + ".parts")):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    cpu0 = _executor_cpu(executor, cluster)
    s = run_batch(items, str(out), executor=executor)
    cpu = _executor_cpu(executor, cluster) - cpu0
    if s.failed:
        raise RuntimeError(f"bench --batch: {s.failed} files failed: {s.errors[:1]}")
    return s.audio_seconds / s.wall, s.audio_seconds / max(cpu, 1e-9)


def batch_bench(quick: bool, out: dict) -> None:
    from doascope.app.batch.corpus import LocalPool
    from doascope.app.bench.common import console as _console, new_table as _table

    con = _console()
    files, seconds, rounds = (8, 20.0, 1) if quick else (16, 60.0, 3)
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="doascope-bench-batch-"))
    try:
        job = _job()
        items = [(str(p), job) for p in _corpus(folder, files, seconds)]
        warm = items[:4]
        executors = {"local, 1 worker": LocalPool(1), "local, 2 workers": LocalPool(2)}
        cluster = None
        try:
            from doascope.app.batch.ray import LocalCluster, RayPool

            cluster = LocalCluster(nodes=1, cpus=2).__enter__()
            executors["Ray, 1 node x 2 CPUs"] = RayPool(cluster.address)
        except Exception as exc:  # noqa: BLE001 - the local figures still stand
            con.print(f"bench --batch: no Ray figures ({type(exc).__name__}: {exc})")
        try:
            for name, ex in executors.items():
                _run(warm, ex, folder, "warm", cluster)
            idle = None
            if cluster is not None:   # what Ray's own processes burn with nothing to do, per wall second
                c0, t0 = _cpu_seconds(session=cluster.sessions[0]), time.perf_counter()
                time.sleep(5.0)
                idle = (_cpu_seconds(session=cluster.sessions[0]) - c0) / (time.perf_counter() - t0)
            rates: dict[str, list[float]] = {name: [] for name in executors}
            per_cpu: dict[str, list[float]] = {name: [] for name in executors}
            for r in range(rounds):
                for name, ex in executors.items():
                    wall, cpu = _run(items, ex, folder, f"r{r}", cluster)
                    rates[name].append(wall)
                    per_cpu[name].append(cpu)
        finally:
            for ex in executors.values():
                ex.close()
            if cluster is not None:
                cluster.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load_after = os.getloadavg()
    med = {name: statistics.median(v) for name, v in rates.items()}
    cpu = {name: statistics.median(v) for name, v in per_cpu.items()}
    one = med["local, 1 worker"]
    t = _table(f"doascope batch: {files} files x {seconds:.0f} s ({PROFILE}, srp-phat, 2 sources), "
               f"median of {rounds} round{'s' if rounds > 1 else ''}",
               ["executor", "audio-h per wall-h", "vs 1 worker", "audio-h per CPU-h"])
    for name, v in med.items():
        t.add_row(name, f"{v:.0f}", f"{v / one:.2f}x", f"{cpu[name]:.0f}")
    con.print(t)
    scaling = med["local, 2 workers"] / one
    figures = {"files": files, "seconds_per_file": seconds, "rounds": rounds,
               "audio_hours_per_hour": med, "audio_hours_per_cpu_hour": cpu, "two_workers_vs_one": scaling,
               "cores": len(os.sched_getaffinity(0)), "loadavg_before": load_before, "loadavg_after": load_after}
    free = 2 * cpu["local, 2 workers"] / cpu["local, 1 worker"]
    figures["two_workers_vs_one_from_cpu"] = free
    con.print(f"two local workers / one: {scaling:.2f}x in wall time (target >= 1.8); from CPU time (what two free "
              f"cores would give, 2 x audio per CPU-second of two workers / of one): {free:.2f}x")
    ray_name = "Ray, 1 node x 2 CPUs"
    if ray_name in med:
        overhead = med["local, 2 workers"] / med[ray_name] - 1.0
        cpu_overhead = cpu["local, 2 workers"] / cpu[ray_name] - 1.0
        figures.update(ray_overhead=overhead, ray_cpu_overhead=cpu_overhead, ray_idle_cpu_per_s=idle)
        con.print(f"Ray's overhead against the local pool on the same 2 cores: {overhead:+.1%} in wall time, "
                  f"{cpu_overhead:+.1%} in CPU time (its servers included) (target <= 10 %); idle, the cluster "
                  f"burns {idle:.3f} CPU-seconds per second")
    con.print(f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, "
              f"after {tuple(round(x, 2) for x in load_after)}, on {figures['cores']} cores")
    if _autogroup() and load_before[0] > figures["cores"]:
        con.print("the kernel shares busy cores fairly between sessions (sched_autogroup): the local pool's "
                  "workers share this session's part whatever their number, while the Ray cluster runs in a "
                  "session of its own; so on a loaded machine the wall-time ratios measure the sharing, and the "
                  "CPU-time ones the work")
    out["batch"] = figures
