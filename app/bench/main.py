"""``doascope bench``: one measurement per flag (see :func:`cmd_bench`); without a flag, the kernels'
speed and ``locate`` against pyroomacoustics (:mod:`~doascope.app.bench.kernels`) and accuracy on
simulated reverberant rooms (:mod:`~doascope.app.bench.accuracy`).

Speed is reported as ratios against a reference run in the same process or run (these machines are
shared and noisy, so absolute times mean little). Each part lives in its own module of this package.
"""

from __future__ import annotations

import json


def _live(quick: bool, out: dict, odas: str | None) -> None:
    from doascope.app.bench.live import live_pipeline
    from doascope.app.bench.realtime import realtime
    from doascope.app.bench.startup import startup_bench

    startup_bench(quick, out)         # --help and locate of a 1 s file, wall and CPU
    live_pipeline(quick, out, odas)   # one core, before and after, retune cost (and ODAS with --odas)
    realtime(quick, out)        # at real-time pace: RTF, latency, a 10x replay


def cmd_bench(args) -> int:
    """One part per flag (--live, --serve, --dnn, --position, --tracking, --batch, --soak); without any,
    speed and accuracy."""
    from doascope.extras import require

    require(*(extra for flag, extra in (("serve", "net"), ("dnn", "dnn")) if getattr(args, flag, False)))
    if getattr(args, "odas", None) and not args.live:
        from doascope import ParameterError

        raise ParameterError("--odas runs ODAS beside the live engine: use it with --live")
    out: dict = {}

    def part(module: str, fn: str, *a, **k):
        def run():
            import importlib

            getattr(importlib.import_module(f"doascope.app.bench.{module}"), fn)(*a, **k)
        return run

    parts = {"live": lambda: _live(args.quick, out, getattr(args, "odas", None)),
             "serve": part("serve", "serve_bench", args.quick, out),
             "dnn": part("dnn", "dnn_bench", args.quick, out, args.scenes),
             "position": part("position", "position_bench", args.quick, out, n_scenes=args.scenes),
             "tracking": part("tracking", "tracking_bench", args.quick, out, args.scenes),
             "batch": part("batch", "batch_bench", args.quick, out),
             "soak": part("soak", "soak_bench", args.soak, out)}
    chosen = [name for name in parts if getattr(args, name, None) is not None and getattr(args, name) is not False]
    for name in chosen:
        parts[name]()
    if not chosen:
        from doascope.app.bench.accuracy import accuracy
        from doascope.app.bench.kernels import locate_file, speed

        if not args.accuracy_only:
            speed(args.quick, out)
            locate_file(args.quick, out)
        if not args.speed_only:
            accuracy(args.quick, args.scenes, out)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0
