"""``doascope train``: make DNN weights for a hardware profile (see doascope.models.training)."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


DEFAULT_SCENES = 3000
DEFAULT_EPOCHS = 15
FINE_TUNE_SCENES = 200     # --from universal: minutes, not hours
FINE_TUNE_EPOCHS = 4
FINE_TUNE_LR = 5e-4
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
    p.add_argument("--profile", "-p", default=None, help="profile id or TOML path (required but with --universal)")
    p.add_argument("--from", dest="init", default=None, metavar="universal|W.pt",
                   help="fine-tune the universal network (the shipped one, or a universal weight file) for "
                        f"--profile: {FINE_TUNE_SCENES} rooms and {FINE_TUNE_EPOCHS} epochs by default, minutes")
    p.add_argument("--universal", action="store_true",
                   help="train the universal network on random arrays (at its defaults, how the shipped one "
                        "was made; see the README for the time it took)")
    p.add_argument("--val-scenes", type=int, default=10,
                   help="held-out rooms per source count (1 and 2) on which the new network is checked "
                        "against srp-phat at the end (default 10; 0 skips the check)")
    p.add_argument("--out", "-o", default=None, metavar="W.pt", help="weight file to write (default ./<profile>.pt)")
    p.add_argument("--scenes", type=int, default=None,
                   help=f"simulated rooms (default {DEFAULT_SCENES}: 1.5-2 h on two cores; fewer than "
                        f"{MIN_USEFUL_SCENES} make a network that loses to the classical methods)")
    p.add_argument("--epochs", type=int, default=None, help=f"passes over the data (default {DEFAULT_EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the rooms and the training (default 0)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per simulated room (default 3; 2.5 for the universal network)")
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
    if args.jobs is None:
        args.jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.val_scenes < 0:
        raise ParameterError(f"--val-scenes must be 0 or more, got {args.val_scenes}")
    if args.universal or args.init:
        return _train_universal(args)
    if args.profile is None:
        raise ParameterError("train needs --profile P (or --universal for the network of every array)")
    args.scenes = DEFAULT_SCENES if args.scenes is None else args.scenes
    args.epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    args.duration = 3.0 if args.duration is None else args.duration
    if args.lags < 5:
        raise ParameterError(f"--lags must be at least 5, got {args.lags}")
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
    _validate(console, args, profile, out)
    console.print(f"use it: doascope locate FILE --profile {args.profile} --method dnn --weights {out}")
    return 0


def _train_universal(args) -> int:
    """--universal (random arrays) or --from (fine-tuning the universal network for --profile)."""
    from rich.console import Console

    from doascope import ParameterError
    from doascope.hardware_profiles import load_profile
    from doascope.models.dnn import load_weights
    from doascope.models.training import default_cache_dir
    from doascope.models.universal import UNIVERSAL_WEIGHTS, arch_of, is_universal
    from doascope.models.universal_training import UniversalSettings, train_universal

    if args.universal and args.init:
        raise ParameterError("--universal trains the universal network from scratch; --from fine-tunes it for "
                             "--profile: use one of them")
    if args.init and args.profile is None:
        raise ParameterError("--from fine-tunes the universal network for one array: give --profile P")
    profile = load_profile(args.profile) if args.init else None
    init = None
    if args.init:
        init = UNIVERSAL_WEIGHTS if args.init == "universal" else Path(args.init)
        if not is_universal(load_weights(init)[0]):
            raise ParameterError(f"--from takes the universal network (universal, or a file made by "
                                 f"--universal or --from), and {init} holds a per-array one")
    base = UniversalSettings()
    scenes = args.scenes if args.scenes is not None else (FINE_TUNE_SCENES if init else base.scenes)
    epochs = args.epochs if args.epochs is not None else (FINE_TUNE_EPOCHS if init else base.epochs)
    for name, value in (("scenes", scenes), ("epochs", epochs), ("threads", args.threads), ("jobs", args.jobs)):
        if value < 1:
            raise ParameterError(f"--{name} must be at least 1, got {value}")
    duration = base.duration if args.duration is None else args.duration
    if not 0.5 <= duration <= 30:
        raise ParameterError(f"--duration must be 0.5 to 30 seconds, got {duration}")
    settings = UniversalSettings(scenes=scenes, epochs=epochs, seed=args.seed, duration=duration, threads=args.threads,
                                 lr=FINE_TUNE_LR if init else base.lr,
                                 val_scenes=min(base.val_scenes, max(1, scenes // 10)))
    if init is not None:
        meta = load_weights(init)[0]
        for k, v in arch_of(meta).items():
            setattr(settings, k, v)
    out = Path(args.out or (f"{Path(profile.id).stem}-universal.pt" if profile else "universal.pt"))
    cache = Path(args.cache) / "universal" if args.cache else default_cache_dir() / "universal"
    console = Console(stderr=True)
    what = (f"fine-tuning the universal network for {profile.name} ({profile.n_mics} mics, {profile.sample_rate} Hz)"
            if profile else "training the universal network on random arrays")
    console.print(f"{what}: {scenes} rooms, {epochs} epochs, seed {args.seed}", highlight=False)
    res = train_universal(out, settings, cache_dir=cache, resume=args.resume, jobs=args.jobs, init=init,
                          profile=profile, log=lambda line: console.print(line, highlight=False))
    console.print(f"wrote {res['out']} ({res['bytes'] / 1e6:.2f} MB) in {res['total_seconds']:.0f} s "
                  f"({res['data_seconds']:.0f} s simulating); {res['examples']} blocks", highlight=False)
    _validate(console, args, profile, out)
    where = f"--profile {args.profile}" if profile else "--profile P"
    console.print(f"use it: doascope locate FILE {where} --method dnn --weights {out}", highlight=False)
    return 0


def _validate(console, args, profile, weights) -> None:
    """Score the new network against srp-phat on held-out rooms; one line, which says when it lost.

    For one profile its own array; for the universal network, three random arrays never trained on."""
    import numpy as np

    from doascope.models.dnn_check import VALIDATION_SEED, score_methods, validation_line

    n = args.val_scenes
    if n == 0:
        return
    methods = {"network": ("dnn", {"weights": str(weights)}), "srp-phat": ("srp-phat", {})}
    if profile is not None:
        arrays = [(profile.positions, int(profile.sample_rate))]
    else:
        from doascope.models.universal_training import random_array

        arrays = [(random_array(np.random.default_rng([VALIDATION_SEED, k])), 16000) for k in range(3)]
    total: dict = {}
    for k, (pos, fs) in enumerate(arrays):
        per = n if profile is not None else max(1, -(-n // len(arrays)))
        for key, (score, blocks) in score_methods(pos, fs, methods, n_scenes=per, seed=VALIDATION_SEED + k).items():
            s, b = total.get(key, (0.0, 0))
            total[key] = (s + (0.0 if blocks == 0 else score * blocks), b + blocks)
    scores = {key: (s / b if b else float("nan"), b) for key, (s, b) in total.items()}
    line, _ = validation_line(scores, n)
    console.print(line, highlight=False, soft_wrap=True, style="bold yellow" if "LOSES" in line else None)
