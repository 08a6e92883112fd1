"""``doascope meta sinusoid``: meta-train MAML, Reptile and a jointly pre-trained MLP on sinusoid
tasks headless, then write the networks, PNG figures and ``results.json`` (held-out query MSE after
0..10 adaptation steps on K = 10 points).

``doascope meta calibration``: the few-shot array calibration experiment of
:mod:`doascope.models.meta_calibration` (accuracy and MAE against K and steps, PNGs and results.json).

``doascope calibrate``: fine-tune a profile's DNN weights on a few labelled segments of a recording
made with the user's own array, and save weights for ``--method dnn --weights W.pt``."""

from __future__ import annotations

import json
import os
import sys
import time

from doascope import DoascopeError, ParameterError
from doascope.config import DEFAULT_FRAMES_PER_BLOCK, DEFAULT_SMOOTHING
from doascope.models.meta_config import SINUSOID_ITERATIONS

TORCH_HINT = "the meta-learning demo needs PyTorch: pip install 'doascope[dnn]'"
COLOURS = {"maml": "#e6194b", "reptile": "#3cb44b", "pretrained": "#4363d8"}


def register(subparsers) -> None:
    """Add the ``meta`` command (with its ``sinusoid`` subcommand) to the CLI's subparsers."""
    p = subparsers.add_parser("meta", help="meta-learning (MAML, Reptile) demos, headless (needs PyTorch)")
    sub = p.add_subparsers(dest="meta_command", metavar="SUBCOMMAND")
    s = sub.add_parser("sinusoid", help="few-shot sinusoid regression (Finn et al. 2017): figures and results.json")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for model.pt, the PNGs and results.json")
    s.add_argument("--steps", type=int, default=SINUSOID_ITERATIONS,
                   help=f"meta-iterations per method (default {SINUSOID_ITERATIONS}: about a minute of one idle core; "
                        "longer while other programs run, and the progress lines say how long is left)")
    s.add_argument("--seed", type=int, default=0, help="seed of the initialisation and task stream (default 0)")
    s.add_argument("--tasks", type=int, default=200, help="held-out tasks to evaluate on (default 200)")
    s.add_argument("--second-order", action="store_true", help="MAML with second derivatives (slower)")
    s.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the networks are tiny, and on a busy machine a second "
                        "thread makes it several times slower)")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    c = sub.add_parser("calibration", help="few-shot array calibration of the DOA network: figures and results.json")
    c.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and results.json")
    c.add_argument("--tasks", type=int, default=48, help="simulated training arrays/rooms (default 48)")
    c.add_argument("--test-tasks", type=int, default=8, help="held-out arrays/rooms (default 8)")
    c.add_argument("--iterations", type=int, default=1500, help="meta-iterations per method (default 1500)")
    c.add_argument("--seed", type=int, default=0, help="seed of the simulation and training (default 0)")
    c.add_argument("--cache", default=None, metavar="DIR", help="feature cache (default ~/.cache/doascope/meta_calibration)")
    c.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    c.add_argument("--quiet", action="store_true", help="no progress lines")
    register_calibrate(subparsers)


def register_calibrate(subparsers) -> None:
    """The ``calibrate`` command: adapt a profile's DNN weights to a real array from labelled segments."""
    p = subparsers.add_parser("calibrate", help="adapt the dnn method's network to your array from a few labelled "
                                                "segments of a recording (needs PyTorch)")
    p.add_argument("--profile", "-p", required=True, help="shipped profile id or a TOML path (nominal geometry)")
    p.add_argument("--file", "-f", required=True, help="multichannel recording of a talker at known directions")
    p.add_argument("--labels", required=True, metavar="CSV",
                   help="rows start_s,end_s,azimuth_deg: when the talker spoke from which azimuth (spread the "
                        "directions: the network learns little about azimuths far from every label)")
    p.add_argument("--weights", default=None, help="weights to start from (default: the profile's shipped ones)")
    p.add_argument("--out", "-o", default=None, metavar="W.pt", help="where to write (default calibrated_<profile>.pt)")
    p.add_argument("--steps", type=int, default=100, help="Adam steps on the labelled blocks (default 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--no-symmetry", action="store_true",
                   help="do not multiply the labelled blocks by the array's rotational symmetries (a rotated or "
                        "rescaled symmetric array keeps them, so by default a square array's 4 labelled "
                        "directions teach 16)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    # cli.main dispatches on args.command: route through cmd_meta, which sees meta_command "calibrate"
    p.set_defaults(command="meta", meta_command="calibrate")


def cmd_meta(args) -> int:
    if getattr(args, "meta_command", None) == "calibrate":
        return cmd_calibrate(args)
    if getattr(args, "meta_command", None) == "calibration":
        return calibration(args)
    if getattr(args, "meta_command", None) != "sinusoid":
        print("usage: doascope meta sinusoid|calibration --out DIR", file=sys.stderr)
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
    torch.set_num_threads(max(1, args.threads))
    settings = ms.default_settings(args.steps, args.seed)
    settings["maml"].first_order = not args.second_order
    last, start = [0.0], time.perf_counter()

    def progress(method, it, total, loss):
        now = time.perf_counter()
        if args.quiet or (now - last[0] < 2 and it != total):
            return
        last[0] = now
        left = ms.seconds_left(method, it, total, now - start)
        print(f"{ms.LABELS[method]:>11}: {it:6d}/{total}  query loss {loss:.3f}  {now - start:.0f} s"
              + (f", about {left:.0f} s left" if left is not None else ""), file=sys.stderr)

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


def calibration(args) -> int:
    try:
        import torch
    except ImportError:
        raise DoascopeError(TORCH_HINT) from None
    from doascope.models import meta_calibration as mc

    for name in ("tasks", "test_tasks", "iterations"):
        if getattr(args, name) < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be at least 1")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        raise DoascopeError(f"cannot create {args.out}: {exc.strerror or exc}") from None
    torch.set_num_threads(max(1, min(args.threads, 2)))
    cfg = mc.CalibConfig(train_tasks=args.tasks, test_tasks=args.test_tasks, iterations=args.iterations,
                         seed=args.seed)
    last = [0.0]

    def progress(what, it, total):
        if args.quiet or (time.perf_counter() - last[0] < 2 and it != total):
            return
        last[0] = time.perf_counter()
        print(f"{mc.LABELS.get(what, what):>32}: {it:6d}/{total}", file=sys.stderr)

    results, _run = mc.run_experiment(cfg, cache_dir=args.cache, progress=progress)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    calibration_figures(args.out, results)
    if not args.quiet:
        print_calibration_table(results)
        print(f"wrote {args.out}/results.json, accuracy_vs_k.png, mae_vs_k.png, vs_steps.png")
    return 0


CAL_COLOURS = {"maml": "#e6194b", "reptile": "#3cb44b", "pretrained": "#4363d8", "none": "#808080",
               "srp": "#000000", "srp_offset": "#f58231"}
CAL_ORDER = ("none", "pretrained", "maml", "reptile", "srp", "srp_offset")


def print_calibration_table(results) -> None:
    ks = list(results["curves"])
    steps = results["config"]["eval_steps"]
    print(f"held-out arrays, after {steps} SGD steps on K blocks: accuracy within 10 deg / MAE")
    print(f"{'':>32}  " + "  ".join(f"K={k:>3}        " for k in ks))
    for m in CAL_ORDER:
        s = results["summary"][m]
        print(f"{results['labels'][m]:>32}  " + "  ".join(f"{s['acc10'][k]:5.1%} {s['mae'][k]:5.1f} deg" for k in ks))


def calibration_figures(out, results) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ks = [int(k) for k in results["curves"]]
    labels = results["labels"]
    for key, name, ylabel in (("acc10", "accuracy_vs_k.png", "share of blocks within 10 deg"),
                              ("mae", "mae_vs_k.png", "mean absolute error (deg)")):
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for m in CAL_ORDER:
            ax.plot(ks, [results["summary"][m][key][str(k)] for k in ks], marker="o", color=CAL_COLOURS[m],
                    ls="--" if m.startswith("srp") or m == "none" else "-", label=labels[m])
        ax.set_xlabel("K labelled blocks")
        ax.set_ylabel(ylabel)
        ax.set_xticks(ks)
        ax.set_title(f"held-out perturbed arrays ({results['config']['eval_steps']} SGD steps)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    k = "5" if "5" in results["curves"] else str(ks[-1])
    for ax, key, ylabel in zip(axes, ("acc10", "mae"), ("share within 10 deg", "MAE (deg)")):
        for m in CAL_ORDER:
            y = np.asarray(results["curves"][k][m][key])
            ax.plot(np.arange(len(y)), y, color=CAL_COLOURS[m], ls="--" if m.startswith("srp") or m == "none" else "-",
                    label=labels[m])
        ax.set_xlabel("SGD steps on the K blocks")
        ax.set_ylabel(ylabel)
        ax.set_title(f"K = {k}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "vs_steps.png"), dpi=110)
    plt.close(fig)


def read_labels(path) -> list[tuple[float, float, float]]:
    """Rows start_s,end_s,azimuth_deg (a header line and # comments are skipped)."""
    import csv
    import math

    rows = []
    try:
        with open(path, newline="") as f:
            for n, row in enumerate(csv.reader(f), 1):
                if not row or row[0].strip().startswith("#"):
                    continue
                try:
                    a, b, az = (float(v) for v in row[:3])
                except ValueError:
                    if n == 1:
                        continue  # header
                    raise ParameterError(f"{path}:{n}: expected start_s,end_s,azimuth_deg, got {row!r}") from None
                if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(az)) or not 0 <= a < b:
                    raise ParameterError(f"{path}:{n}: need 0 <= start_s < end_s and a finite azimuth, got {row!r}")
                rows.append((a, b, az % 360.0))
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise ParameterError(f"{path} has no labelled segments (rows start_s,end_s,azimuth_deg)")
    return rows


def calibration_examples(audio, fs, features, segments, *, frames_per_block=DEFAULT_FRAMES_PER_BLOCK,
                         smoothing=DEFAULT_SMOOTHING):
    """Features and azimuths of the labelled stretches, as the network was trained on them.

    A per-frame network gets every STFT frame that lies inside a segment; a block network every block
    inside one, and also the copy integrated over the segment's earlier blocks (as the engine's
    smoothing does).
    """
    import numpy as np
    from doascope.dsp.stft import stft

    nfft = features.gcc.nfft
    hop = nfft // 2
    X = stft(audio, nfft=nfft, hop=hop)
    per_frame = features.spec.per_frame
    length = 1 if per_frame else frames_per_block
    span = (length - 1) * hop + nfft
    xs, ys = [], []
    for a, b, az in segments:
        C_s = None
        for blk in range(X.shape[2] // length):
            start = blk * length * hop
            if start < a * fs or start + span > b * fs:
                continue
            block = np.ascontiguousarray(X[:, :, blk * length:(blk + 1) * length])
            if per_frame:
                xs.append(features.frame_cross_spectra(block)[0])
                ys.append(az)
                continue
            C = features.cross_spectra(block)
            C_s = C if C_s is None else smoothing * C_s + (1 - smoothing) * C
            xs += [C, C_s]
            ys += [az, az]
    if not xs:
        raise ParameterError("no analysis block lies inside the labelled segments: make them longer than "
                             f"{span / fs:.2f} s, within the recording")
    return features.features(np.stack(xs)), np.asarray(ys, np.float32)


def rotate_examples(x, az, positions, features):
    """The examples repeated under every rotation (not mirror image) that maps the nominal array onto itself.

    A rotation offset or spacing error of a symmetric array leaves it symmetric, so relabelling its mics
    gives valid examples at rotated azimuths; mirror images are left out (they flip a rotation offset).
    """
    import numpy as np
    from doascope.models.features import symmetries

    xs, ys = [], []
    for angle, mirrored, perm in symmetries(positions):
        if mirrored:
            continue
        index, sign = features.relabel(perm)
        xs.append(x[:, index] * (1.0 if sign is None else sign))
        ys.append((az + angle) % 360.0)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def cmd_calibrate(args) -> int:

    from doascope.app.runtime.audio import read_recording
    from doascope.hardware_profiles import load_profile
    from doascope.models.dnn import (
        N_AZIMUTH,
        find_weights,
        import_torch,
        load_network,
        load_weights,
        save_weights,
    )
    from doascope.models.features import FeatureSpec, make_features
    from doascope.models.meta_calibration import angle_metrics, targets

    torch = import_torch()
    if args.steps < 0:
        raise ParameterError("--steps must be at least 0")
    torch.set_num_threads(max(1, min(args.threads, 2)))
    profile = load_profile(args.profile)
    src = find_weights(profile.positions) if args.weights is None else args.weights
    meta, state = load_weights(src)
    spec = FeatureSpec.from_dict(meta["features"])
    audio, fs = read_recording(args.file, profile)
    if round(fs) != spec.fs:
        raise ParameterError(f"the weights work at {spec.fs} Hz but the recording is read at {fs} Hz")
    segments = read_labels(args.labels)
    duration = audio.shape[0] / fs
    for a, b, _ in segments:
        if b > duration + 0.5 / fs:
            raise ParameterError(f"--labels {args.labels}: the segment {a:g}-{b:g} s ends after the end of "
                                 f"{args.file} ({duration:.2f} s)")
    feats = make_features(profile.positions, spec)
    x, az = calibration_examples(audio, fs, feats, segments)
    n_labelled = len(az)
    if not args.no_symmetry:
        x, az = rotate_examples(x, az, profile.positions, feats)
    n_out = int(meta.get("n_out", N_AZIMUTH))
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(targets(az, float(meta.get("sigma", 6.0)), n_out))
    model = load_network(meta, state)
    model.eval()  # no dropout: a few blocks, a few steps
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    with torch.no_grad():
        before = angle_metrics(model(xt), yt).tolist()
        loss0 = float(loss_fn(model(xt), yt))
    for _ in range(args.steps):
        loss = loss_fn(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = angle_metrics(model(xt), yt).tolist()
        loss1 = float(loss_fn(model(xt), yt))
    out = args.out or f"calibrated_{profile.id.replace(os.sep, '_')}.pt"
    meta = dict(meta, calibration={"from": str(src), "recording": os.path.basename(str(args.file)),
                                   "segments": len(segments), "blocks": len(az), "steps": args.steps,
                                   "lr": args.lr, "loss_before": loss0, "loss_after": loss1,
                                   "acc10_before": before[0], "acc10_after": after[0],
                                   "mae_before": before[1], "mae_after": after[1]})
    save_weights(out, model, meta)
    unit = "frames" if spec.per_frame else "blocks"
    print(f"{len(segments)} segments, {n_labelled} {unit} ({len(az)} with symmetries): on these, within 10 deg "
          f"{before[0]:.0%} -> {after[0]:.0%}, MAE {before[1]:.1f} -> {after[1]:.1f} deg "
          f"(the labelled blocks themselves: check on a fresh recording)")
    print(f"wrote {out}: use it with --method dnn --weights {out}")
    return 0
