"""Start-up wall time of doascope commands: median of N runs each, in this one run of the script,
next to `python -c pass` as the reference (the interpreter's own start).

    python scripts/startup_times.py [--runs 7] [--before SITE_DIR]

Each command runs as `python -m doascope.app.cli.main ...` with the installed doascope; with --before, also
with another doascope installed in SITE_DIR (e.g. `pip install --no-deps --target SITE_DIR <old tree>`),
the two interleaved run by run so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def _run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of ``cmd``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _one_second_file(folder: str) -> str:
    import numpy as np
    import soundfile as sf

    path = os.path.join(folder, "one_second.wav")
    rng = np.random.default_rng(0)
    sf.write(path, 0.05 * rng.standard_normal((16000, 6)).astype(np.float32), 16000)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--before", default=None, metavar="SITE_DIR", help="an older doascope to compare with")
    a = ap.parse_args()
    variants = {"now": dict(os.environ)}
    if a.before:
        variants = {"before": dict(os.environ, PYTHONPATH=a.before), **variants}
    cli = [sys.executable, "-m", "doascope.app.cli.main"]
    with tempfile.TemporaryDirectory() as tmp:
        wav = _one_second_file(tmp)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("doascope --help", cli + ["--help"]),
            ("doascope locate --help", cli + ["locate", "--help"]),
            ("doascope locate --band 9 (error)", cli + ["locate", wav, "-p", "respeaker_usb_v2", "--band", "9"]),
            ("doascope locate (1 s file)", cli + ["locate", wav, "-p", "respeaker_usb_v2"]),
        ]
        for env in variants.values():   # fill the numba caches
            subprocess.run(cases[-1][1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        print(f"median of {a.runs} runs: wall seconds (x: times python -c pass), and CPU seconds (user + system, "
              f"less sensitive to other load)")
        print(f"{'':34s}" + "".join(f"{name + ' wall':>18s}{name + ' CPU':>11s}" for name in variants))
        ref = {}
        for label, cmd in cases:
            runs = {name: [] for name in variants}
            for _ in range(a.runs):
                for name, env in variants.items():
                    runs[name].append(_run(cmd, env))
            wall = {n: statistics.median(w for w, _ in r) for n, r in runs.items()}
            cpu = {n: statistics.median(c for _, c in r) for n, r in runs.items()}
            ref = ref or wall
            print(f"{label:34s}" + "".join(f"{wall[n]:8.3f} s ({wall[n] / ref[n]:4.1f}x){cpu[n]:9.3f} s"
                                           for n in variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
