"""``doascope train``: make DNN weights for a hardware profile (see doascope.models.training)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


DEFAULT_SCENES = 3000
DEFAULT_EPOCHS = 15
MIN_USEFUL_SCENES = 1000   # below this the network loses to the classical methods


def rough_duration(scenes: int, epochs: int, jobs: int) -> str:
    """A rough time for a run, scaled from the defaults' 1.5-2 h on two cores taken as half simulating
    rooms (spread over ``jobs`` processes) and half training (one process): both grow with the rooms,
    training also with the epochs.

    >>> rough_duration(3000, 15, 2), rough_duration(300, 15, 2)
    ('roughly 1.8 h', 'roughly 10 min')
    """
    hours = 1.75 * scenes / DEFAULT_SCENES * (0.5 * 2 / max(1, jobs) + 0.5 * epochs / DEFAULT_EPOCHS)
    return f"roughly {hours * 60:.0f} min" if hours < 1.5 else f"roughly {hours:.1f} h"


def register(subparsers) -> None:
    """Add the ``train`` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser("train", help="train the dnn method's network for a profile on simulated rooms (CPU)")
    p.add_argument("--profile", "-p", required=True, help="profile id or TOML path")
    p.add_argument("--out", "-o", default=None, metavar="W.pt", help="weight file to write (default ./<profile>.pt)")
    p.add_argument("--scenes", type=int, default=DEFAULT_SCENES,
                   help=f"simulated rooms (default {DEFAULT_SCENES}: 1.5-2 h on two cores; fewer than "
                        f"{MIN_USEFUL_SCENES} make a network that loses to the classical methods)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"passes over the data (default {DEFAULT_EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the rooms and the training (default 0)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per simulated room (default 3)")
    p.add_argument("--features", choices=("phase", "gcc"), default="phase",
                   help="network input: per-bin cross-spectra of all pairs (phase, default) or GCC-PHAT (gcc)")
    p.add_argument("--per-frame", action=argparse.BooleanOptionalAction, default=True,
                   help="the network reads single STFT frames and a block's answer is the mean of its frames' "
                        "(default); --no-per-frame: it reads each block's averaged cross-spectra")
    p.add_argument("--pool", type=int, default=0,
                   help="phase: adjacent frequency bins averaged together (default 0: the least that keeps "
                        "the input to 2048 features)")
    p.add_argument("--bands", type=int, default=1, help="gcc: GCC-PHAT sub-bands in the features (default 1)")
    p.add_argument("--lags", type=int, default=51, help="gcc: GCC-PHAT lags per pair and sub-band (default 51)")
    p.add_argument("--hidden", default="512,512", metavar="N,N", help="hidden layer widths (default 512,512)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--jobs", type=int, default=None,
                   help="processes simulating rooms at once (default: one per CPU core; the data are the same)")
    p.add_argument("--cache", default=None, metavar="DIR", help="cache of simulated rooms (default ~/.cache/doascope)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint next to --out")


def cmd_train(args) -> int:
    from rich.console import Console

    from doascope import ParameterError
    from doascope.hardware_profiles import load_profile
    from doascope.models.dnn import import_torch
    from doascope.models.training import TrainSettings, train

    import_torch()  # the clear message before any simulation starts
    if args.lags < 5:
        raise ParameterError(f"--lags must be at least 5, got {args.lags}")
    if args.jobs is None:
        args.jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.pool < 0:
        raise ParameterError(f"--pool must be 0 (automatic) or more, got {args.pool}")
    for name in ("scenes", "epochs", "threads", "bands", "jobs"):
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0.5 <= args.duration <= 30:
        raise ParameterError(f"--duration must be 0.5 to 30 seconds, got {args.duration}")
    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
    except ValueError:
        hidden = ()
    if not hidden or min(hidden) < 1:
        raise ParameterError(f"--hidden takes positive layer widths separated by commas, got {args.hidden!r}")
    profile = load_profile(args.profile)
    out = Path(args.out or f"{Path(profile.id).stem}.pt")
    settings = TrainSettings(scenes=args.scenes, epochs=args.epochs, seed=args.seed, duration=args.duration,
                             features=args.features, bands=args.bands, lags=args.lags, pool=args.pool,
                             per_frame=args.per_frame, hidden=hidden, threads=args.threads)
    console = Console(stderr=True)
    console.print(f"training the dnn for {profile.name} ({profile.n_mics} mics, {profile.sample_rate} Hz): "
                  f"{settings.scenes} rooms, {settings.epochs} epochs, seed {settings.seed}")
    console.print(f"this takes {rough_duration(settings.scenes, settings.epochs, args.jobs)} (the defaults, "
                  f"{DEFAULT_SCENES} rooms and {DEFAULT_EPOCHS} epochs, took 1.5-2 h on two cores; rooms already "
                  "simulated come from the cache); the bars show the time left of each stage", highlight=False)
    if settings.scenes < MIN_USEFUL_SCENES:
        console.print(f"doascope: warning: a network trained on {settings.scenes} rooms only shows the pipeline "
                      f"working: it will localize worse than the classical methods (the shipped weights used "
                      f"3000-6000 rooms; use at least {MIN_USEFUL_SCENES})", highlight=False)
    res = train(profile, out, settings, cache_dir=args.cache, resume=args.resume, console=console,
                jobs=args.jobs)
    unit = "frames" if settings.per_frame else "blocks"
    last = res["history"][-1] if res["history"] else {}
    acc = last.get("val_acc10", float("nan"))
    acc = "-" if math.isnan(acc) else f"{acc:.1%}"  # NaN: no single-source block among the held-out rooms
    console.print(f"wrote {res['out']} ({res['bytes'] / 1e6:.2f} MB) in {res['total_seconds']:.0f} s "
                  f"({res['data_seconds']:.0f} s simulating); {res['examples']} {unit} x {res['symmetries']} "
                  f"symmetries; held-out rooms: 1 source within 10 deg in {acc} of single {unit}")
    if settings.per_frame:
        console.print("(a block's answer averages its frames', so blocks score well above single frames: "
                      "doascope bench --dnn measures blocks)")
    console.print(f"use it: doascope locate FILE --profile {args.profile} --method dnn --weights {out}")
    return 0
