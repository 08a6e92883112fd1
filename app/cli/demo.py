"""``doascope demo``: simulate a reverberant room with two talkers, localize it, show the result.

Needs no microphone array and no network: the scene is rendered with pyroomacoustics and
espeak-ng (a synthetic talker stands in where espeak-ng is missing).
"""

from __future__ import annotations

import os

import numpy as np

from doascope.hardware_profiles import load_profile

TALKERS = ((60.0, "speech", 0.0), (215.0, "speech", 1.5))  # azimuth, kind, start (s)


def cmd_demo(args) -> int:
    """The GUI on a simulated two-talker room where a display exists, else the terminal demo."""
    from doascope.app.gui import display_available

    if not args.no_gui and display_available():
        import argparse

        from doascope.app.gui.window import run_gui
        from doascope.app.cli.options import add_gui_options

        # The GUI's own options, so that it starts from the same settings as `doascope gui` would.
        parser = argparse.ArgumentParser(prog="doascope gui")
        add_gui_options(parser)
        gui = ["--profile", args.profile, "--method", args.method, "--sources", "2", "--sim", "two-talkers"]
        if args.quit_after is not None:
            gui += ["--quit-after", str(args.quit_after)]
        return run_gui(parser.parse_args(gui))
    return terminal_demo(args)


def terminal_demo(args) -> int:
    """Simulate the room, localize it offline, print a summary and write a PNG."""
    import soundfile as sf
    from rich.console import Console
    from rich.table import Table

    from doascope.app.plots import azimuth_plot
    from doascope.sim.scenes import SourceSpec, simulate_scene
    from doascope.config import AnalysisConfig
    from doascope.dsp.analysis import build_localizer
    from doascope.dsp.metrics import azimuth_errors

    from doascope.extras import require

    require("plot")
    con = Console()
    profile = load_profile(args.profile)
    fs = profile.sample_rate
    os.makedirs(args.out, exist_ok=True)
    specs = [SourceSpec(azimuth=az, kind=kind, start=start, distance=1.6) for az, kind, start in TALKERS]
    with con.status("simulating a 6 s scene: 6 x 5 x 3 m room, RT60 0.4 s, two talkers..."):
        scene = simulate_scene(profile.positions, fs, specs, duration=6.0, rt60=0.4, snr_db=20.0, seed=args.seed)
    # Write what the device itself would deliver: every device channel, the mics where the map says.
    device = np.zeros((scene.audio.shape[0], profile.channels), np.float32)
    device[:, list(profile.mic_channels)] = scene.audio
    wav = os.path.join(args.out, "scene.wav")
    sf.write(wav, device, fs)

    loc = build_localizer(AnalysisConfig(method=args.method, n_sources=2), profile, fs)
    results = list(loc.locate(scene.audio, fs))
    truth = [s.azimuth for s in scene.sources]

    table = Table(title=f"{profile.name}, {args.method}: sources per second (true: "
                        + ", ".join(f"{a:.0f} deg" for a in truth) + ")")
    table.add_column("time (s)")
    table.add_column("sources (azimuth deg, power)")
    table.add_column("true sources active")
    for sec in range(int(scene.duration)):
        rs = [r for r in results if sec <= r.t < sec + 1]
        peaks = [p for r in rs for p in r.peaks]
        cells = []
        for a in truth:
            near = [p for p in peaks if azimuth_errors([p.azimuth], [a])[0] < 20]
            if near:
                cells.append(f"{np.median([p.azimuth for p in near]):5.1f} ({np.median([p.power for p in near]):.2f})")
        act = [truth[i] for i in range(len(truth)) if any(scene.active(r.start, r.stop)[i] for r in rs)]
        table.add_row(f"{sec}-{sec + 1}", ", ".join(cells) or "-", ", ".join(f"{a:.0f}" for a in act) or "-")
    con.print(table)

    errs = [azimuth_errors([p.azimuth for p in r.peaks], truth)[scene.active(r.start, r.stop)]
            for r in results]
    errs = np.concatenate([e for e in errs if e.size])
    found = np.mean(errs <= 15) if errs.size else 0.0
    png = os.path.join(args.out, "azimuth.png")
    azimuth_plot([(r.t, p.azimuth, p.power) for r in results for p in r.peaks], png,
                 title=f"doascope demo: {profile.name}, {args.method}, RT60 0.4 s (dashed: truth)",
                 duration=scene.duration, truth=truth)
    con.print(f"Found the active talkers within 15 degrees in [bold]{found:.0%}[/] of the blocks.")
    con.print(f"Scene: {wav}   plot: {png}")
    # The command on a line of its own that never wraps, so it can be copied whole.
    con.print("Try:")
    con.print(f"  doascope locate {wav} --profile {profile.id} --method {args.method} --sources 2 --plot out.png",
              soft_wrap=True, highlight=False)
    return 0
