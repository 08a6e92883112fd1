"""``doascope clip train``: train the toy CLIP headless and write the model, PNG figures and
``results.json`` (held-out zero-shot accuracy, text-to-image recall, training time)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import MISSING, fields

from doascope import DoascopeError, ParameterError
from doascope.models.clip_config import ClipConfig, TrainConfig

# The training defaults, read without building a model configuration (that needs numpy).
DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}

TORCH_HINT = "the CLIP demo needs PyTorch: pip install 'doascope[dnn]'"


def register(subparsers) -> None:
    """Add the ``clip`` command (with its ``train`` subcommand) to the CLI's subparsers."""
    p = subparsers.add_parser("clip", help="contrastive language-image pre-training at toy scale (needs PyTorch)")
    sub = p.add_subparsers(dest="clip_command", metavar="SUBCOMMAND")
    t = sub.add_parser("train", help="train on procedural captioned shapes; write the model, figures, results.json")
    t.add_argument("--out", required=True, metavar="DIR", help="folder for model.pt, the PNGs and results.json")
    t.add_argument("--steps", type=int, default=DEFAULTS["steps"],
                   help=f"optimisation steps (default {DEFAULTS['steps']}: a few minutes on two idle cores)")
    t.add_argument("--seed", type=int, default=0, help="random seed for data and weights (default 0)")
    t.add_argument("--batch", type=int, default=DEFAULTS["batch_size"],
                   help=f"image-caption pairs per step (default {DEFAULTS['batch_size']})")
    t.add_argument("--small", action="store_true", help="a smaller, faster model (weaker; for smoke runs)")
    t.add_argument("--eval-every", type=int, default=500, metavar="N",
                   help="score the held-out split every N steps for the curves (default 500; 0: only at the end)")
    t.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: ~4 min of one idle core; on a machine busy with other work a "
                        "second thread makes it several times slower, on an idle one it may help)")
    t.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="stop training after S seconds even if steps remain")
    t.add_argument("--quiet", action="store_true", help="no progress lines")


def cmd_clip(args) -> int:
    if getattr(args, "clip_command", None) != "train":
        print("usage: doascope clip train --out DIR [--steps N] [--seed S]", file=sys.stderr)
        return 2
    return train(args)


def train(args) -> int:
    import numpy as np

    try:
        import torch
    except ImportError:
        raise DoascopeError(TORCH_HINT) from None
    from doascope.models import clip

    if args.steps < 1:
        raise ParameterError("--steps must be at least 1")
    if args.batch < 2:
        raise ParameterError("--batch must be at least 2")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise DoascopeError(f"cannot create {args.out}: {exc.strerror or exc}") from None
    torch.set_num_threads(max(1, args.threads))
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch, seed=args.seed,
                      model=ClipConfig.small() if args.small else ClipConfig())
    trainer = clip.ClipTrainer(cfg)
    start, cpu0 = time.perf_counter(), time.process_time()
    while trainer.step_count < args.steps:
        loss = trainer.step()
        s = trainer.step_count
        if args.eval_every > 0 and s % args.eval_every == 0 and s < args.steps:
            m = trainer.evaluate(n_zero_shot=200, n_retrieval=200)  # a point of the held-out curves
            if not args.quiet:
                print(f"step {s:5d}: held out: zero-shot {100 * m['zero_shot_accuracy']:.0f}%, shape "
                      f"{100 * m['zero_shot']['shape']['accuracy']:.0f}%, R@1 {100 * m['recall_at_1']:.0f}%",
                      flush=True)
        if not args.quiet and (s % 100 == 0 or s == args.steps):
            elapsed = time.perf_counter() - start
            print(f"step {s:5d}/{args.steps}  loss {loss:.3f}  temperature {trainer.model.temperature():.4f}  "
                  f"{elapsed:.0f} s, about {elapsed / s * (args.steps - s):.0f} s left", flush=True)
        if args.time_limit and time.perf_counter() - start > args.time_limit:
            print(f"time limit reached after {s} steps", flush=True)
            break
    metrics = trainer.evaluate(n_zero_shot=1200, n_retrieval=500)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    model_path = os.path.join(args.out, "model.pt")
    clip.save(trainer, model_path, metrics=metrics, extra={"wall_seconds": wall, "cpu_seconds": cpu})
    figures = write_figures(trainer, metrics, args.out)
    results = {
        "zero_shot_accuracy": metrics["zero_shot_accuracy"],
        "zero_shot_accuracy_single_prompt": metrics["zero_shot_accuracy_single_prompt"],
        "zero_shot_chance": metrics["zero_shot"]["colour and shape"]["chance"],
        "recall_at_1": metrics["recall_at_1"],
        "recall_at_5": metrics["recall_at_5"],
        "zero_shot_tasks": metrics["zero_shot"],
        "training_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "steps": trainer.step_count,
        "batch_size": args.batch,
        "final_loss": float(np.mean(trainer.losses[-20:])),
        "final_temperature": trainer.model.temperature(),
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "held_out_pairs": sorted(" ".join(p) for p in clip.data.HELD_OUT_PAIRS),
        "model": model_path,
        "figures": figures,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"zero-shot accuracy on held-out colour-shape pairs {100 * results['zero_shot_accuracy']:.1f}% "
          f"(chance {100 * results['zero_shot_chance']:.1f}%), R@1 {100 * results['recall_at_1']:.1f}%, "
          f"R@5 {100 * results['recall_at_5']:.1f}%, shape alone "
          f"{100 * metrics['zero_shot']['shape']['accuracy']:.1f}%, {trainer.step_count} steps in {wall:.0f} s "
          f"({cpu:.0f} s CPU); "
          f"wrote {args.out}")
    return 0


def write_figures(trainer, metrics: dict, out: str) -> list[str]:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from doascope.models import clip
    from doascope.models import clip_data as data

    paths = []

    def save(fig, name, tight=True):
        path = os.path.join(out, name)
        if tight:
            fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    steps = np.arange(1, len(trainer.losses) + 1)
    a.semilogy(steps, trainer.losses, lw=0.8)
    a.set_xlabel("step")
    a.set_ylabel("symmetric cross-entropy")
    a.set_title("contrastive loss")
    a.grid(alpha=0.3)
    b.plot(steps, trainer.temperatures, color="tab:orange")
    b.axhline(0.01, color="grey", ls="--", lw=0.8, label="clamp (scale 100)")
    b.set_xlabel("step")
    b.set_ylabel("temperature 1/exp(t)")
    b.set_title("learned temperature")
    b.legend()
    b.grid(alpha=0.3)
    save(fig, "training.png")

    model = trainer.model.eval()
    images, captions, _ = clip.held_out_set(trainer.eval_rng_seed + 2, 12)
    sim = (clip.embed_images(model, images) @ clip.embed_texts(model, captions).T).numpy()
    fig, ax = plt.subplots(figsize=(9, 7.5), dpi=110)
    im = ax.imshow(sim, cmap="viridis")
    ax.set_xticks(range(len(captions)), captions, rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(len(images)), [""] * len(images))
    for i, img in enumerate(images):
        ax.imshow(img, extent=(-1.5, -0.55, i + 0.45, i - 0.45))
    ax.set_xlim(-1.6, len(captions) - 0.5)
    ax.set_ylim(len(images) - 0.5, -0.5)  # the thumbnails' imshow calls reset the limits
    ax.set_title("cosine similarity of held-out images (rows) and captions (columns)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    save(fig, "similarity.png")

    template, labels = data.ZERO_SHOT_TASKS["colour and shape"]
    images, _, scenes = clip.held_out_set(trainer.eval_rng_seed, 600)
    pred = clip.zero_shot(model, images, labels, template).argmax(axis=1)
    true_labels = sorted({data.scene_label(s, "colour and shape") for s in scenes})
    conf = np.zeros((len(true_labels), len(labels)))
    for s, p in zip(scenes, pred):
        conf[true_labels.index(data.scene_label(s, "colour and shape")), p] += 1
    conf /= np.maximum(conf.sum(axis=1, keepdims=True), 1)
    fig = plt.figure(figsize=(12, 6.5), dpi=110)
    ax = fig.add_axes([0.09, 0.47, 0.89, 0.45])
    ax.imshow(conf, cmap="magma", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(true_labels)), true_labels, fontsize=7)
    ax.set_title(f"zero-shot (prompt ensemble) on held-out pairs: accuracy {100 * metrics['zero_shot_accuracy']:.1f}% "
                 f"(chance {100 / len(labels):.1f}%)", fontsize=9)
    for i in range(12):
        axi = fig.add_axes([0.03 + i * 0.08, 0.03, 0.07, 0.15])
        axi.imshow(images[i])
        axi.set_axis_off()
        ok = labels[pred[i]] == data.scene_label(scenes[i], "colour and shape")
        axi.set_title(labels[pred[i]], fontsize=7, color="green" if ok else "red")
    save(fig, "zero_shot.png", tight=False)
    return paths


def main(argv=None) -> int:  # pragma: no cover - `doascope clip` is the way in
    parser = argparse.ArgumentParser(prog="doascope")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return cmd_clip(args)
    except DoascopeError as exc:
        print(f"doascope: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
