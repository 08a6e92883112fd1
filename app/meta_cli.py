"""``doascope meta sinusoid``: meta-train MAML, Reptile and a jointly pre-trained MLP on sinusoid
tasks headless, then write the networks, PNG figures and ``results.json`` (held-out query MSE after
0..10 adaptation steps on K = 10 points)."""

from __future__ import annotations

import json
import os
import sys
import time

from doascope import DoascopeError, ParameterError

TORCH_HINT = "the meta-learning demo needs PyTorch: pip install torch==2.13.0"
COLOURS = {"maml": "#e6194b", "reptile": "#3cb44b", "pretrained": "#4363d8"}


def register(subparsers) -> None:
    """Add the ``meta`` command (with its ``sinusoid`` subcommand) to the CLI's subparsers."""
    p = subparsers.add_parser("meta", help="meta-learning (MAML, Reptile) demos, headless (needs PyTorch)")
    sub = p.add_subparsers(dest="meta_command", metavar="SUBCOMMAND")
    s = sub.add_parser("sinusoid", help="few-shot sinusoid regression (Finn et al. 2017): figures and results.json")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for model.pt, the PNGs and results.json")
    s.add_argument("--steps", type=int, default=10000,
                   help="meta-iterations per method (default 10000, about two minutes on two cores)")
    s.add_argument("--seed", type=int, default=0, help="seed of the initialisation and task stream (default 0)")
    s.add_argument("--tasks", type=int, default=200, help="held-out tasks to evaluate on (default 200)")
    s.add_argument("--second-order", action="store_true", help="MAML with second derivatives (slower)")
    s.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    s.add_argument("--quiet", action="store_true", help="no progress lines")


def cmd_meta(args) -> int:
    if getattr(args, "meta_command", None) != "sinusoid":
        print("usage: doascope meta sinusoid --out DIR [--steps N] [--seed S]", file=sys.stderr)
        return 2
    return sinusoid(args)


def sinusoid(args) -> int:
    try:
        import torch
    except ImportError:
        raise DoascopeError(TORCH_HINT) from None
    from doascope.models import meta_sinusoid as ms

    if args.steps < 1:
        raise ParameterError("--steps must be at least 1")
    if args.tasks < 1:
        raise ParameterError("--tasks must be at least 1")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise DoascopeError(f"cannot create {args.out}: {exc.strerror or exc}") from None
    torch.set_num_threads(max(1, min(args.threads, 2)))
    settings = ms.default_settings(args.steps, args.seed)
    settings["maml"].first_order = not args.second_order
    last = [0.0]

    def progress(method, it, total, loss):
        if args.quiet or (time.perf_counter() - last[0] < 2 and it != total):
            return
        last[0] = time.perf_counter()
        print(f"{ms.LABELS[method]:>11}: {it:6d}/{total}  query loss {loss:.3f}", file=sys.stderr)

    run = ms.train_all(iterations=args.steps, seed=args.seed, settings=settings, progress=progress)
    curves = ms.evaluate(run.models, n_tasks=args.tasks, seed=args.seed)
    results = {"task": "sinusoid", "k_shot": ms.K_SHOT, "inner_lr": ms.INNER_LR, "iterations": args.steps,
               "seed": args.seed, "held_out_tasks": args.tasks, "second_order": bool(args.second_order),
               "training_seconds": {m: round(s, 2) for m, s in run.seconds.items()}, "curves": curves}
    for m in ms.METHODS:
        results[f"{m}_mse"] = {str(s): curves[m]["mse"][s] for s in (0, 1, ms.EVAL_STEPS)}
    ms.save_checkpoint(os.path.join(args.out, "model.pt"), run)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _figures(args.out, run, curves, ms.example_predictions(run.models, seed=args.seed), ms)
    if not args.quiet:
        for m in ms.METHODS:
            r = results[f"{m}_mse"]
            print(f"{ms.LABELS[m]:>11}: held-out MSE  0 steps {r['0']:.3f}  1 step {r['1']:.3f}  "
                  f"{ms.EVAL_STEPS} steps {r[str(ms.EVAL_STEPS)]:.3f}")
        print(f"wrote {args.out}/results.json, predictions.png, mse_vs_steps.png, meta_training.png, model.pt")
    return 0


def _figures(out, run, curves, example, ms) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, m in zip(axes, ms.METHODS):
        ax.plot(example["x"], example["true"], color="k", lw=2, label="true")
        ax.scatter(example["support_x"], example["support_y"], color="k", marker="^", s=40, zorder=5,
                   label=f"K = {ms.K_SHOT} points")
        for s, ls in zip((0, 1, 10), (":", "--", "-")):
            ax.plot(example["x"], example["predictions"][m][s], ls=ls, color=COLOURS[m],
                    label=f"after {s} step{'s' if s != 1 else ''}")
        ax.set_title(f"{ms.LABELS[m]} (SGD step {ms.INNER_LR})")
        ax.set_xlabel("x")
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("y")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "predictions.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m in ms.METHODS:
        mse, sem = np.asarray(curves[m]["mse"]), np.asarray(curves[m]["sem"])
        steps = np.arange(len(mse))
        ax.errorbar(steps, mse, yerr=sem, color=COLOURS[m], marker="o", ms=3, capsize=2, label=ms.LABELS[m])
    ax.set_xlabel("gradient steps on the K points")
    ax.set_ylabel("held-out query MSE")
    ax.set_title(f"K = {ms.K_SHOT} shots, held-out tasks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "mse_vs_steps.png"), dpi=110)
    plt.close(fig)

    from doascope.models.meta import smoothed

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for m in ms.METHODS:
        losses = run.losses.get(m, [])
        ax.plot(np.arange(1, len(losses) + 1), smoothed(losses, 100), color=COLOURS[m], label=ms.LABELS[m])
    ax.set_yscale("log")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("training loss (running mean)")
    ax.set_title("meta-training: MAML/Reptile post-adaptation query loss, joint loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "meta_training.png"), dpi=110)
    plt.close(fig)
