"""Sinusoid regression, the textbook few-shot task (Finn et al. 2017, section 5.1).

A task is ``y = A sin(x - phase)`` with amplitude A in [0.1, 5] and phase in [0, pi]; x is drawn
uniformly from [-5, 5]. A learner sees K = 10 points of a new task and adapts an MLP 1-40-40-1 by
SGD with step 0.01. MAML, Reptile and a jointly pre-trained network start from the same
initialisation and the same task stream; held-out tasks come from a separate seed.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from doascope import ParameterError
from doascope.models import meta

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, np.pi)
X_RANGE = (-5.0, 5.0)
K_SHOT = 10
INNER_LR = 0.01
EVAL_STEPS = 10
METHODS = ("maml", "reptile", "pretrained")
LABELS = {"maml": "MAML", "reptile": "Reptile", "pretrained": "pre-trained"}
CHECKPOINT_FORMAT = 1
# Time per meta-iteration relative to MAML's, for the time left: one torch thread, measured by
# `doascope meta sinusoid` (MAML 18.4 s, Reptile 42.7 s, pre-training 3.9 s for 10000 iterations).
RELATIVE_COST = {"maml": 1.0, "reptile": 2.3, "pretrained": 0.21}


def seconds_left(method: str, iteration: int, iterations: int, elapsed: float, methods=METHODS) -> float | None:
    """Time left for a :func:`train_all` run, from its pace so far (``elapsed`` s since it began,
    ``method`` at ``iteration`` of ``iterations``); None before 1 % of the work is done."""
    i = list(methods).index(method)
    done = (sum(RELATIVE_COST[m] for m in methods[:i]) * iterations + RELATIVE_COST[method] * iteration)
    total = sum(RELATIVE_COST[m] for m in methods) * iterations
    return elapsed / done * (total - done) if done >= 0.01 * total else None  # no guess from the first few


def build_mlp(hidden=(40, 40)) -> torch.nn.Module:
    """The MLP 1-40-40-1 with ReLU of the paper."""
    layers, width = [], 1
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def sample_tasks(rng: np.random.Generator, n_tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """(amplitudes, phases), each (n_tasks,)."""
    return rng.uniform(*AMPLITUDE, n_tasks), rng.uniform(*PHASE, n_tasks)


def sinusoid(x, amplitude, phase):
    return amplitude * np.sin(x - phase)


class SinusoidTasks:
    """Task sampler: K support and Q query points of random sinusoids, as a :class:`meta.TaskBatch`."""

    def __init__(self, k_shot: int = K_SHOT, n_query: int = K_SHOT):
        self.k_shot, self.n_query = k_shot, n_query

    def __call__(self, rng: np.random.Generator, n_tasks: int) -> meta.TaskBatch:
        amp, phase = sample_tasks(rng, n_tasks)
        x = rng.uniform(*X_RANGE, (n_tasks, self.k_shot + self.n_query, 1))
        y = sinusoid(x, amp[:, None, None], phase[:, None, None])
        x, y = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
        k = self.k_shot
        return meta.TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])


def held_out_tasks(seed: int, n_tasks: int, *, k_shot: int = K_SHOT, n_query: int = 100) -> tuple[meta.TaskBatch, dict]:
    """Evaluation tasks: K random support points and a query grid over [-5, 5]; also their parameters."""
    rng = np.random.default_rng(seed + 1_000_003)  # never the training stream
    amp, phase = sample_tasks(rng, n_tasks)
    sx = rng.uniform(*X_RANGE, (n_tasks, k_shot, 1))
    qx = np.broadcast_to(np.linspace(*X_RANGE, n_query)[None, :, None], (n_tasks, n_query, 1))
    sy = sinusoid(sx, amp[:, None, None], phase[:, None, None])
    qy = sinusoid(qx, amp[:, None, None], phase[:, None, None])
    t = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (sx, sy, qx, qy)]
    return meta.TaskBatch(*t), {"amplitude": amp, "phase": phase}


@dataclass
class SinusoidRun:
    """Three trained networks, their training losses and the settings that made them."""

    models: dict
    losses: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def default_settings(iterations: int = 4000, seed: int = 0) -> dict[str, meta.MetaSettings]:
    """Per method: MAML with one first-order inner step; Reptile with 5 SGD steps on 20 points;
    joint pre-training with Adam on the same task stream."""
    return {
        "maml": meta.MetaSettings(iterations=iterations, inner_steps=1, seed=seed),
        "reptile": meta.MetaSettings(iterations=iterations, inner_steps=5, inner_lr=0.02, meta_batch=10,
                                     reptile_epsilon=0.5, seed=seed),
        "pretrained": meta.MetaSettings(iterations=iterations, seed=seed),
    }


def train_all(*, iterations: int = 4000, seed: int = 0, methods=METHODS, settings: dict | None = None,
              progress=None, stop=None) -> SinusoidRun:
    """Meta-train (or pre-train) one MLP per method from the same initialisation.

    ``progress(method, iteration, total, loss)`` is called after each outer step; ``stop()``
    returning True ends training early (the networks keep what they learned so far).
    """
    if iterations < 1:
        raise ParameterError(f"meta-training needs at least 1 iteration, got {iterations}")
    settings = settings or default_settings(iterations, seed)
    torch.manual_seed(seed)
    init = build_mlp()
    sampler = SinusoidTasks()
    run = SinusoidRun(models={}, settings={m: asdict(settings[m]) for m in methods})
    for m in methods:
        model = copy.deepcopy(init)
        s = settings[m]

        def cb(it, loss, m=m, s=s):
            if progress is not None:
                progress(m, it, s.iterations, loss)
            return bool(stop and stop())

        t0 = time.perf_counter()
        run.losses[m] = meta.TRAINERS[m](model, sampler, s, progress=cb)
        run.seconds[m] = time.perf_counter() - t0
        model.eval()
        run.models[m] = model
        if stop and stop():
            break
    return run


def evaluate(models: dict, *, n_tasks: int = 100, seed: int = 0, steps: int = EVAL_STEPS,
             lr: float = INNER_LR) -> dict:
    """Mean query MSE on held-out tasks after 0..steps SGD steps on K = 10 points, per method:
    {method: {"mse": [steps + 1 values], "sem": [...]}}."""
    tasks, _ = held_out_tasks(seed, n_tasks)
    out = {}
    for m, model in models.items():
        curve = meta.adaptation_curve(model, tasks, steps=steps, lr=lr)
        out[m] = {"mse": curve.mean(0).tolist(), "sem": (curve.std(0) / np.sqrt(n_tasks)).tolist()}
    return out


def example_predictions(models: dict, *, seed: int = 0, index: int = 0, steps=(0, 1, 10), lr: float = INNER_LR,
                        n_points: int = 200) -> dict:
    """One held-out task: the true curve, its K points, and each method's prediction after ``steps``."""
    tasks, params = held_out_tasks(seed, index + 1)
    task = tasks.task(index)
    x = np.linspace(*X_RANGE, n_points).astype(np.float32)
    xt = torch.from_numpy(x)[:, None]
    out = {"x": x, "true": sinusoid(x, params["amplitude"][index], params["phase"][index]),
           "support_x": task.support_x[0, :, 0].numpy(), "support_y": task.support_y[0, :, 0].numpy(),
           "amplitude": float(params["amplitude"][index]), "phase": float(params["phase"][index]),
           "predictions": {}}
    for m, model in models.items():
        out["predictions"][m] = {}
        for s in steps:
            p = meta.adapt(model, task.support_x[0], task.support_y[0], steps=s, lr=lr)
            out["predictions"][m][s] = meta.predict(model, p, xt)[:, 0].numpy()
    return out


def save_checkpoint(path, run: SinusoidRun, extra: dict | None = None) -> int:
    """The three networks (float32, ~7 kB each) and their settings; returns bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "task": "sinusoid", "settings": run.settings, "seconds": run.seconds,
            "losses": {m: [float(v) for v in meta.smoothed(l, 50)[::10]] for m, l in run.losses.items()},
            "state": {m: model.state_dict() for m, model in run.models.items()}, "extra": extra or {}}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def load_checkpoint(path) -> SinusoidRun:
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"no sinusoid checkpoint at {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != CHECKPOINT_FORMAT or blob.get("task") != "sinusoid":
            raise ValueError("format")
        models = {}
        for m, state in blob["state"].items():
            model = build_mlp()
            model.load_state_dict(state)
            model.eval()
            models[m] = model
    except Exception as exc:  # noqa: BLE001 - a foreign file: one sentence
        raise ParameterError(f"{path} is not a doascope sinusoid meta-learning checkpoint "
                             f"({type(exc).__name__})") from None
    # losses are stored smoothed and every 10th iteration
    return SinusoidRun(models=models, losses=blob.get("losses", {}), settings=blob.get("settings", {}),
                       seconds=blob.get("seconds", {}))


SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "meta_sinusoid.pt"
