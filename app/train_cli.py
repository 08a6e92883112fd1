"""``doascope train``: make DNN weights for a hardware profile (see doascope.models.training)."""

from __future__ import annotations

import math
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``train`` subcommand to the CLI's subparsers."""
    p = subparsers.add_parser("train", help="train the dnn method's network for a profile on simulated rooms (CPU)")
    p.add_argument("--profile", "-p", required=True, help="profile id or TOML path")
    p.add_argument("--out", "-o", default=None, metavar="W.pt", help="weight file to write (default ./<profile>.pt)")
    p.add_argument("--scenes", type=int, default=1500, help="simulated rooms (default 1500)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rooms and the training (default 0)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per simulated room (default 3)")
    p.add_argument("--bands", type=int, default=1, help="GCC-PHAT sub-bands in the features (default 1)")
    p.add_argument("--lags", type=int, default=51, help="GCC-PHAT lags per pair and sub-band (default 51)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default ~/.cache/doascope)")
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
    for name in ("scenes", "epochs", "threads", "bands"):
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0.5 <= args.duration <= 30:
        raise ParameterError(f"--duration must be 0.5 to 30 seconds, got {args.duration}")
    profile = load_profile(args.profile)
    out = Path(args.out or f"{Path(profile.id).stem}.pt")
    settings = TrainSettings(scenes=args.scenes, epochs=args.epochs, seed=args.seed, duration=args.duration,
                             bands=args.bands, lags=args.lags, threads=args.threads)
    console = Console(stderr=True)
    console.print(f"training the dnn for {profile.name} ({profile.n_mics} mics, {profile.sample_rate} Hz): "
                  f"{settings.scenes} rooms, {settings.epochs} epochs, seed {settings.seed}")
    res = train(profile, out, settings, cache_dir=args.cache, resume=args.resume, console=console)
    last = res["history"][-1] if res["history"] else {}
    acc = last.get("val_acc10", float("nan"))
    acc = "-" if math.isnan(acc) else f"{acc:.1%}"  # NaN: no single-source block among the held-out rooms
    console.print(f"wrote {res['out']} ({res['bytes'] / 1e6:.2f} MB) in {res['total_seconds']:.0f} s "
                  f"({res['data_seconds']:.0f} s simulating); {res['examples']} blocks x {res['symmetries']} "
                  f"symmetries; held-out rooms: 1 source within 10 deg {acc}")
    console.print(f"use it: doascope locate FILE --profile {args.profile} --method dnn --weights {out}")
    return 0
