"""ODAS side by side in ``doascope bench --live --odas PATH_TO_ODASLIVE`` (never in install or CI).

ODAS (github.com/introlab/odas) is run as its users run it: ``odaslive -c CONFIG`` on a raw
16-bit file. The configuration is written here, in a temporary folder, from the array's profile (its
microphone positions, sample rate) and the other values of the ReSpeaker USB 4-mic preset that ODAS
ships (``config/odaslive/respeaker_usb_4_mic_array.cfg``: 128-sample hops, 256-sample frames, SSL on a
level-2 then level-4 sphere, 4 potential sources, Kalman SST, DDS separation), with two changes: the
input is the file, the separated and post-filtered audio go nowhere (as the SSL and SST JSON go to
files in the folder), and SST's active/inactive likelihood means are lowered (0.16 and 0.1 instead of
0.4 and 0.25) so that it creates tracks on the simulated room, as doascope's tracker does. The
audio is the one doascope's 4-mic row analyses (the simulated two-talker room), looped to
``seconds``.

The figure is the median over runs of odaslive's user + system CPU time (``os.wait4``) per audio second.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile

import numpy as np

from doascope import DoascopeError

_MIC = """        {{
            mu = ( {x:+.4f}, {y:+.4f}, {z:+.4f} );
            sigma2 = ( +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000, +0.000 );
            direction = ( +0.000, +0.000, +1.000 );
            angle = ( 80.0, 100.0 );
        }}"""

# The preset's values (see the module docstring); {placeholders} come from the profile and the run.
_CONFIG = """version = "2.1";
raw: {{ fS = {fs}; hopSize = 128; nBits = 16; nChannels = {channels};
       interface: {{ type = "file"; path = "{raw}"; }}; }};
mapping: {{ map: ({mapping}); }};
general: {{
    epsilon = 1E-20;
    size: {{ hopSize = 128; frameSize = 256; }};
    samplerate: {{ mu = {fs}; sigma2 = 0.01; }};
    speedofsound: {{ mu = 343.0; sigma2 = 25.0; }};
    mics = (
{mics}
    );
    spatialfilters = ( {{ direction = ( +0.000, +0.000, +1.000 ); angle = (80.0, 100.0); }} );
    nThetas = 181;
    gainMin = 0.25;
}};
sne: {{ b = 3; alphaS = 0.1; L = 150; delta = 3.0; alphaD = 0.1; }};
ssl: {{
    nPots = 4; nMatches = 10; probMin = 0.5; nRefinedLevels = 1; interpRate = 4;
    scans = ( {{ level = 2; delta = -1; }}, {{ level = 4; delta = -1; }} );
    potential: {{ format = "json"; interface: {{ type = "file"; path = "{ssl}"; }}; }};
}};
sst: {{
    mode = "kalman"; add = "dynamic";
    active = ( {{ weight = 1.0; mu = 0.16; sigma2 = 0.0025 }} );
    inactive = ( {{ weight = 1.0; mu = 0.1; sigma2 = 0.0025 }} );
    sigmaR2_prob = 0.0025; sigmaR2_active = 0.0225; sigmaR2_target = 0.0025;
    Pfalse = 0.1; Pnew = 0.1; Ptrack = 0.8;
    theta_new = 0.9; N_prob = 5; theta_prob = 0.8; N_inactive = ( 250, 250, 250, 250 ); theta_inactive = 0.9;
    kalman: {{ sigmaQ = 0.001; }};
    particle: {{ nParticles = 1000; st_alpha = 2.0; st_beta = 0.04; st_ratio = 0.5; ve_alpha = 0.05; ve_beta = 0.2;
                ve_ratio = 0.3; ac_alpha = 0.5; ac_beta = 0.2; ac_ratio = 0.2; Nmin = 0.7; }};
    target: ();
    tracked: {{ format = "json"; interface: {{ type = "file"; path = "{sst}"; }}; }};
}};
sss: {{
    mode_sep = "dds"; mode_pf = "ms"; gain_sep = 1.0; gain_pf = 10.0;
    dds: {{ }}; dgss: {{ mu = 0.01; lambda = 0.5; }}; dmvdr: {{ }};
    ms: {{ alphaPmin = 0.07; eta = 0.5; alphaZ = 0.8; thetaWin = 0.3; alphaWin = 0.3; maxAbsenceProb = 0.9;
          Gmin = 0.01; winSizeLocal = 3; winSizeGlobal = 23; winSizeFrame = 256; }};
    ss: {{ Gmin = 0.01; Gmid = 0.9; Gslope = 10.0; }};
    separated: {{ fS = {fs}; hopSize = 128; nBits = 16; interface: {{ type = "blackhole"; }}; }};
    postfiltered: {{ fS = {fs}; hopSize = 128; nBits = 16; gain = 10.0; interface: {{ type = "blackhole"; }}; }};
}};
classify: {{
    frameSize = 4096; winSize = 3; tauMin = 88; tauMax = 551; deltaTauMax = 20; alpha = 0.3; gamma = 0.05;
    phiMin = 0.5; r0 = 0.2;
    category: {{ format = "undefined"; interface: {{ type = "blackhole"; }} }}
}}
"""


def odas_config(positions, fs: int, raw_path: str, out_dir: str) -> str:
    """The text of an odaslive configuration for ``positions`` (mics, 3) m at ``fs`` Hz reading the
    raw int16 file ``raw_path`` (one channel per microphone, in order); SSL and SST JSON into ``out_dir``."""
    positions = np.asarray(positions, np.float64)
    mics = ",\n".join(_MIC.format(x=p[0], y=p[1], z=p[2]) for p in positions)
    return _CONFIG.format(fs=int(fs), channels=len(positions), raw=raw_path,
                          mapping=", ".join(str(m + 1) for m in range(len(positions))), mics=mics,
                          ssl=os.path.join(out_dir, "ssl.json"), sst=os.path.join(out_dir, "sst.json"))


def odas_cpu_per_audio_s(odaslive: str, audio: np.ndarray, positions, fs: int, *, runs: int = 3) -> dict:
    """Run ``odaslive`` ``runs`` times on ``audio`` (samples, mics) float32 (full scale 1); returns the
    median and every run's user + system CPU seconds per audio second, and the audio's length."""
    if not (os.path.isfile(odaslive) and os.access(odaslive, os.X_OK)):
        raise DoascopeError(f"--odas: {odaslive} is not an executable file (the odaslive binary of an ODAS build)")
    peak = max(float(np.abs(audio).max()), 1e-9)
    pcm = np.round(np.clip(audio / peak * 0.5, -1.0, 1.0) * 32767).astype("<i2")
    seconds = len(audio) / fs
    with tempfile.TemporaryDirectory(prefix="doascope-odas-") as tmp:
        raw = os.path.join(tmp, "audio.raw")
        pcm.tofile(raw)
        cfg = os.path.join(tmp, "odas.cfg")
        with open(cfg, "w") as fh:
            fh.write(odas_config(positions, fs, raw, tmp))
        cpu = []
        for _ in range(runs):
            with open(os.path.join(tmp, "odaslive.log"), "w") as log:
                proc = subprocess.Popen([odaslive, "-c", cfg], stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                with open(os.path.join(tmp, "odaslive.log")) as fh:
                    last = (fh.read().strip().splitlines() or ["no output"])[-1]
                raise DoascopeError(f"--odas: odaslive exited with status {proc.returncode}: {last}")
            cpu.append((usage.ru_utime + usage.ru_stime) / seconds)
        tracked = os.path.getsize(os.path.join(tmp, "sst.json")) if os.path.exists(os.path.join(tmp, "sst.json")) else 0
    return {"cpu_per_audio_s": statistics.median(cpu), "runs": cpu, "audio_s": seconds, "sst_json_bytes": tracked}
