"""Start-up wall time of doascope commands: median of N runs each, in this one run of the script,
next to `python -c pass` as the reference (the interpreter's own start).

    python scripts/startup_times.py [--runs 7] [--doascope PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _median_wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
    ap.add_argument("--doascope", default=os.path.join(os.path.dirname(sys.executable), "doascope"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav = _one_second_file(tmp)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("doascope --help", [a.doascope, "--help"]),
            ("doascope locate --help", [a.doascope, "locate", "--help"]),
            ("doascope locate --band 9 (error)", [a.doascope, "locate", wav, "-p", "respeaker_usb_v2", "--band", "9"]),
            ("doascope locate 1 s file", [a.doascope, "locate", wav, "-p", "respeaker_usb_v2"]),
        ]
        subprocess.run(cases[-1][1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fill the caches
        ref = None
        for label, cmd in cases:
            t = _median_wall(cmd, a.runs)
            ref = ref or t
            print(f"{label:38s} {t:6.3f} s  ({t / ref:5.1f}x python -c pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
