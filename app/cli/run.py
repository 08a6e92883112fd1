"""``doascope run`` (headless live localization with a terminal view) and ``doascope devices``."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time

import numpy as np

from doascope import ParameterError
from doascope.hardware_profiles import list_profiles, load_profile, match_device


class StopRequest:
    """Ctrl-C and SIGTERM end a command cleanly (files flushed, summary printed) instead of raising.

    ``exit_code`` is what the command returns afterwards: 130 for Ctrl-C (the shell's convention
    for SIGINT), 0 for SIGTERM (a service manager stopping us is a normal end)."""

    def __init__(self):
        self.event = threading.Event()
        self.signum: int | None = None

    def install(self) -> "StopRequest":
        def handler(signum, frame):
            if self.signum is None:
                self.signum = signum
            self.event.set()
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        return self

    @property
    def exit_code(self) -> int:
        return 130 if self.signum == signal.SIGINT else 0


def install_stop_handlers(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM set ``stop`` instead of raising."""
    def handler(signum, frame):
        stop.set()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class TerminalView:
    """A rich live view: tracks, levels, xruns, overruns, real-time factor."""

    def __init__(self, engine, profile):
        self.engine, self.profile = engine, profile

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        f = self.engine.latest
        if f is None:
            return Text("waiting for audio...")
        head = Text(f"{self.profile.name} | {self.engine.source.description} | {f.method} | t={f.t:7.2f} s | "
                    f"RTF {f.rtf:.3f} | latency {f.latency * 1e3:5.1f} ms | xruns {f.xruns} | "
                    f"overruns {f.overruns}")
        if f.status:
            head.append(f"\n{f.status}", style="bold red")
        if f.mode == "position":
            tracks = Table("id", "x (m)", "y (m)", "z (m)", "activity", "age (s)", title="tracks",
                           title_justify="left")
            for tr in f.tracks:
                tracks.add_row(str(tr.id), f"{tr.x:5.2f}", f"{tr.y:5.2f}", f"{tr.z:5.2f}", _bar(tr.activity, 10),
                               f"{tr.age:5.1f}")
        else:
            tracks = Table("id", "azimuth", "elevation", "activity", "age (s)", title="tracks", title_justify="left")
            for tr in f.tracks:
                tracks.add_row(str(tr.id), f"{tr.azimuth:6.1f}", f"{tr.elevation:5.1f}", _bar(tr.activity, 10),
                               f"{tr.age:5.1f}")
        levels = Table("mic", "level (dBFS)", "", title="levels", title_justify="left")
        for i, (r, c) in enumerate(zip(f.rms, f.clipping, strict=True)):
            db = 20 * np.log10(max(float(r), 1e-9))
            levels.add_row(str(i), f"{db:6.1f}", _bar((db + 80) / 80, 20) + (" CLIP" if c else ""))
        return Group(head, tracks, levels)


def _done(duration: float, frame, source, elapsed: float) -> bool:
    """Whether --duration is reached: in audio time for files and scenes, in wall-clock time for
    a device (whose audio may stop when it is unplugged), and never more than 10 s late."""
    from doascope.app.runtime.sources import LiveSource

    if isinstance(source, LiveSource):
        return elapsed >= duration
    speed = getattr(source, "speed", 1.0) or float("inf")
    return (frame is not None and frame.t >= duration) or elapsed >= duration / speed + 10.0


def _bar(x: float, width: int) -> str:
    n = int(round(max(0.0, min(1.0, x)) * width))
    return "#" * n + "." * (width - n)


def cmd_run(args) -> int:
    from rich.console import Console
    from rich.live import Live

    from doascope.app.cli.startup import release as release_gc
    from doascope.app.config import from_args
    from doascope.app.runtime.engine import Engine
    from doascope.app.logs import set_printer
    from doascope.app.runtime.outputs import FrameWriter, RawRecorder
    from doascope.app.runtime.sources import make_source

    config = from_args(args)
    profile = load_profile(args.profile)
    config.check(profile)
    duration, output, record = config.input.duration, config.outputs.output, config.outputs.record
    source = make_source(config.input, profile)
    engine = Engine(source, profile, config.analysis)
    release_gc()  # set-up done: the collector back on while it runs (see doascope.app.cli.startup)
    if duration and hasattr(source, "stop_after"):
        # A file or scene ends after exactly --duration seconds of audio (and the window that
        # analyses its last moment), however far ahead of the clock a fast replay runs.
        source.stop_after = math.ceil(duration * source.fs) + engine.window
    writer = FrameWriter(output) if output else None
    if writer:
        engine.subscribe(writer.put)
    stop = StopRequest().install()
    err = Console(stderr=True)
    # The recorder starts at the ring's sample 0, so it must exist before the source delivers any.
    recorder = RawRecorder(record, engine.ring, engine.fs) if record else None
    outputs = [o for o in (writer, recorder) if o is not None]
    engine.start()
    view = TerminalView(engine, profile)
    t_start = time.monotonic()
    try:
        with Live(view.render(), console=err, refresh_per_second=8, transient=False,
                  redirect_stdout=False, redirect_stderr=False) as live:
            # Log lines (a lost device, a failing subscriber) go above the view, not through it.
            set_printer(lambda text: live.console.print(text, markup=False, highlight=False))
            while not stop.event.is_set() and engine.running:
                stop.event.wait(0.125)
                if any(o.failed.is_set() for o in outputs):
                    break
                live.update(view.render())
                if duration and _done(duration, engine.latest, source, time.monotonic() - t_start):
                    break
    finally:
        set_printer(None)
        engine.stop()
        for o in outputs:
            o.close()
        if not err.is_terminal:  # the view's last picture ends without a newline
            print(file=sys.stderr)
    failed = [o.error for o in outputs if o.error]
    if failed:
        print(f"doascope: error: {failed[0]}; stopped (what was written before is kept)", file=sys.stderr)
        return 1
    f = engine.latest
    if engine.error:
        print(f"doascope: error: {engine.error}", file=sys.stderr)
        return 2
    if f is None:
        print("doascope: error: no audio arrived from the input", file=sys.stderr)
        return 2
    lat = np.percentile(np.array(engine.latencies), [50, 99]) * 1e3 if engine.latencies else (0, 0)
    print(f"doascope: {engine.frames} frames, {f.t:.1f} s of audio, RTF {f.rtf:.4f}, latency p50 {lat[0]:.1f} ms "
          f"p99 {lat[1]:.1f} ms, xruns {f.xruns}, overruns {engine.overruns}"
          + (f", reconnected {source.recoveries}x" if getattr(source, "recoveries", 0) else "")
          + (f", {writer.dropped} frames not written (disk too slow)" if writer and writer.dropped else "")
          + (f", wrote {output}" if writer else "") + (f", recorded {record}" if recorder else ""),
          file=sys.stderr)
    if getattr(source, "lost_since", None) is not None:
        print(f"doascope: error: {source.error.replace(', retrying', '')} and it did not come back",
              file=sys.stderr)
        return 1
    if stop.signum is not None:
        return stop.exit_code
    return 0


def cmd_devices(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from doascope.app.runtime.sources import import_sounddevice

    sd = import_sounddevice()
    try:
        devices = list(sd.query_devices())
    except Exception as exc:
        raise ParameterError(f"cannot list audio devices: {exc}") from None
    try:
        default_in = sd.default.device[0]
    except Exception:
        default_in = -1
    if not any(d["max_input_channels"] > 0 for d in devices):
        print("doascope: no audio input device found: no sound server (PulseAudio, PipeWire) or ALSA capture "
              "device is reachable; plug in the array or start the sound server, then run `doascope devices` again",
              file=sys.stderr)
        return 0
    profiles = list_profiles()
    table = Table(title="Audio input devices (use the number or part of the name with --device)")
    for col in ("#", "name", "inputs", "default rate", "matching profile"):
        table.add_column(col)
    for i, d in enumerate(devices):
        if d["max_input_channels"] <= 0:
            continue
        prof = match_device(d["name"])
        fits = [p.id for p in profiles if p.channels <= d["max_input_channels"]] if prof is None else []
        match = prof.id if prof else (f"(no name match; {len(fits)} profiles fit its channel count)" if fits else "")
        table.add_row(f"{i}{' *' if i == default_in else ''}", d["name"], str(d["max_input_channels"]),
                      f"{d['default_samplerate']:.0f}", match)
    Console(width=max(Console().width, 120)).print(table)
    return 0
