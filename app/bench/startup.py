"""Start-up of doascope commands (part of ``bench --live``): median wall and CPU time of N runs each,
next to `python -c pass` as the reference (the interpreter's own start), against the targets of
``--help`` <= 0.3 s and ``locate`` of a 1 s file <= 1.0 s wall.

    python -m doascope.app.bench.startup [--runs 7] [--before SITE_DIR]

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


HELP_TARGET_S = 0.3
LOCATE_TARGET_S = 1.0


def _cases(wav: str) -> list[tuple[str, list[str]]]:
    cli = [sys.executable, "-m", "doascope.app.cli.main"]
    return [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("doascope --help", cli + ["--help"]),
        ("doascope locate --help", cli + ["locate", "--help"]),
        ("doascope locate --band 9 (error)", cli + ["locate", wav, "-p", "respeaker_usb_v2", "--band", "9"]),
        ("doascope locate (1 s file)", cli + ["locate", wav, "-p", "respeaker_usb_v2"]),
        ("doascope run --file (1 s, --fast)", cli + ["run", "--file", wav, "-p", "respeaker_usb_v2", "--fast"]),
    ]


def startup_bench(quick: bool, out: dict) -> None:
    """The start-up table of ``bench --live``: each command's median wall and CPU time, with targets."""
    from doascope.app.bench.common import console, new_table

    runs = 3 if quick else 7
    con = console()
    table = new_table(f"Start-up: median of {runs} runs (wall; CPU = user + system, less sensitive to other load)",
                      ["case", "wall (s)", "x python -c pass", "CPU (s)", "target (wall)", "met"])
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(_one_second_file(tmp))
        for _, cmd in cases[-2:]:  # fill the numba cache
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        ref = None
        for label, cmd in cases:
            got = [_run(cmd, env) for _ in range(runs)]
            wall, cpu = statistics.median(w for w, _ in got), statistics.median(c for _, c in got)
            ref = ref or wall
            target = HELP_TARGET_S if "help" in label else LOCATE_TARGET_S if "1 s file" in label else None
            table.add_row(label, f"{wall:.3f}", f"{wall / ref:.1f}x", f"{cpu:.3f}",
                          "-" if target is None else f"<= {target:g}",
                          "-" if target is None else ("yes" if wall <= target else "no"))
            out.setdefault("startup", []).append({"case": label, "wall_s": wall, "cpu_s": cpu, "target_s": target})
    con.print(table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--before", default=None, metavar="SITE_DIR", help="an older doascope to compare with")
    a = ap.parse_args()
    variants = {"now": dict(os.environ)}
    if a.before:
        variants = {"before": dict(os.environ, PYTHONPATH=a.before), **variants}
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(_one_second_file(tmp))
        for env in variants.values():   # fill the numba caches
            for _, cmd in cases[-2:]:
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
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
