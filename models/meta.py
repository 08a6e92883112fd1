"""Meta-learning: MAML (Finn et al. 2017), first-order MAML and Reptile (Nichol et al. 2018), and the
joint pre-training they are compared with, written with :func:`torch.func.functional_call` so that
they work on any ``torch.nn.Module`` and any task family.

A task family is a callable ``sample(rng, n_tasks) -> TaskBatch``: ``n_tasks`` tasks, each with a
support set (the K labelled examples a learner adapts on) and a query set (what the adapted learner
is scored on). ``loss_fn(prediction, target) -> scalar`` is the task loss (MSE for regression,
binary cross-entropy for the DOA network).

Adaptation is plain SGD on the support set, ``theta' = theta - alpha * grad L_support(theta)``:

- MAML meta-trains ``theta`` so that ``L_query(theta')`` is small, differentiating through the
  inner steps (second order) or treating ``grad L_support`` as a constant (first order, the default:
  nearly as good on these problems and a fraction of the cost).
- Reptile runs the inner SGD and moves ``theta`` a fraction ``epsilon`` towards the adapted weights.
- Joint pre-training fits one network to the pooled data of all tasks: the baseline that learns the
  average task and must then be fine-tuned.

Tasks of a meta-batch are adapted in parallel with :func:`torch.func.vmap` when the model allows it
(no batch norm in training mode, no in-place state); ``vectorize=False`` loops instead. torch is
imported when this module is imported: import it only where a network is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, grad, vmap


@dataclass
class TaskBatch:
    """Tasks with leading dimension ``tasks``: support (tasks, K, ...) and query (tasks, Q, ...)."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def __len__(self) -> int:
        return int(self.support_x.shape[0])

    def task(self, i: int) -> TaskBatch:
        return TaskBatch(self.support_x[i:i + 1], self.support_y[i:i + 1], self.query_x[i:i + 1],
                         self.query_y[i:i + 1])


TaskSampler = Callable[[np.random.Generator, int], TaskBatch]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred - target) ** 2)


def parameters_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_buffers())


def _task_loss(model, loss_fn):
    buffers = _buffers(model)

    def loss(params, x, y):
        return loss_fn(functional_call(model, (params, buffers), (x,)), y)
    return loss


def _sgd_adapt(loss, params: dict, x, y, *, steps: int, lr: float, first_order: bool) -> dict:
    """``steps`` SGD steps on one task's support set; differentiable unless ``first_order``."""
    for _ in range(steps):
        g = grad(loss)(params, x, y)
        params = {k: p - lr * (g[k].detach() if first_order else g[k]) for k, p in params.items()}
    return params


def _map_tasks(fn, batch_args, *, vectorize: bool, shared=()):
    """fn(*shared, *task_args) for every task; vmap over the leading dimension, or a loop."""
    if vectorize:
        return vmap(fn, in_dims=(None,) * len(shared) + (0,) * len(batch_args), randomness="different")(
            *shared, *batch_args)
    outs = [fn(*shared, *(a[i] for a in batch_args)) for i in range(batch_args[0].shape[0])]
    if isinstance(outs[0], dict):
        return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}
    return torch.stack(outs)


def adapt(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float,
          loss_fn: LossFn = mse, params: dict | None = None) -> dict[str, torch.Tensor]:
    """Weights after ``steps`` SGD steps of size ``lr`` on one task's support set (x, y).

    The model itself is not changed; use the result with :func:`predict` or load it into a copy.
    """
    params = {k: v.detach() for k, v in (params or parameters_of(model)).items()}
    loss = _task_loss(model, loss_fn)
    with torch.no_grad():  # torch.func.grad still differentiates inside; nothing is recorded outside
        return _sgd_adapt(loss, params, x, y, steps=steps, lr=lr, first_order=True)


def predict(model: torch.nn.Module, params: dict, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return functional_call(model, (params, _buffers(model)), (x,))


def adaptation_curve(model: torch.nn.Module, tasks: TaskBatch, *, steps: int, lr: float,
                     loss_fn: LossFn = mse, metric: LossFn | None = None, vectorize: bool = True) -> np.ndarray:
    """Query metric (default: the loss) after 0..steps SGD steps, per task: (tasks, steps + 1)."""
    loss = _task_loss(model, loss_fn)
    metric = metric or loss_fn
    buffers = _buffers(model)
    was_training = model.training
    model.eval()

    def curve(params, sx, sy, qx, qy):
        out = []
        for s in range(steps + 1):
            out.append(metric(functional_call(model, (params, buffers), (qx,)), qy))
            if s < steps:
                g = grad(loss)(params, sx, sy)
                params = {k: p - lr * g[k] for k, p in params.items()}
        return torch.stack(out)

    params = {k: v.detach() for k, v in parameters_of(model).items()}
    try:
        with torch.no_grad():
            res = _map_tasks(curve, (tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y),
                             vectorize=vectorize, shared=(params,))
    finally:
        model.train(was_training)
    return res.numpy()


@dataclass
class MetaSettings:
    """What the three trainers share. Defaults: Finn et al.'s sinusoid set-up at a smaller budget."""

    iterations: int = 4000        # outer steps
    meta_batch: int = 25          # tasks per outer step
    inner_lr: float = 0.01        # alpha, the adaptation step also used at test
    inner_steps: int = 1          # MAML: steps differentiated through; Reptile: SGD steps per task
    outer_lr: float = 1e-3        # Adam on the meta-objective (MAML, joint)
    first_order: bool = True      # MAML: drop second derivatives
    reptile_epsilon: float = 1.0  # Reptile: step towards the adapted weights, annealed linearly to 0
    vectorize: bool = True        # vmap over the tasks of a meta-batch
    seed: int = 0


Progress = Callable[[int, float], bool | None]  # (iteration, loss) -> True to stop


def _loop(settings: MetaSettings, step, progress: Progress | None, time_limit: float | None) -> list[float]:
    losses = []
    start = time.perf_counter()
    for it in range(settings.iterations):
        losses.append(step(it))
        if progress is not None and progress(it + 1, losses[-1]):
            break
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
    return losses


def train_maml(model: torch.nn.Module, sample: TaskSampler, settings: MetaSettings, *, loss_fn: LossFn = mse,
               progress: Progress | None = None, time_limit: float | None = None) -> list[float]:
    """Meta-train ``model`` in place with (first-order) MAML; returns the query loss per iteration."""
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    loss = _task_loss(model, loss_fn)
    opt = torch.optim.Adam(model.parameters(), lr=settings.outer_lr)
    model.train()

    def query_loss(params, sx, sy, qx, qy):
        adapted = _sgd_adapt(loss, params, sx, sy, steps=settings.inner_steps, lr=settings.inner_lr,
                             first_order=settings.first_order)
        return loss(adapted, qx, qy)

    def step(_it):
        b = sample(rng, settings.meta_batch)
        per_task = _map_tasks(query_loss, (b.support_x, b.support_y, b.query_x, b.query_y),
                              vectorize=settings.vectorize, shared=(parameters_of(model),))
        meta_loss = per_task.mean()
        opt.zero_grad()
        meta_loss.backward()
        opt.step()
        return float(meta_loss.detach())

    return _loop(settings, step, progress, time_limit)


def train_reptile(model: torch.nn.Module, sample: TaskSampler, settings: MetaSettings, *, loss_fn: LossFn = mse,
                  progress: Progress | None = None, time_limit: float | None = None) -> list[float]:
    """Meta-train ``model`` in place with batched Reptile; returns the post-adaptation query loss."""
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    loss = _task_loss(model, loss_fn)
    model.train()

    def adapt_and_score(params, sx, sy, qx, qy):
        # SGD on support and query pooled: Reptile has no support/query split of its own
        x, y = torch.cat([sx, qx]), torch.cat([sy, qy])
        adapted = _sgd_adapt(loss, params, x, y, steps=settings.inner_steps, lr=settings.inner_lr, first_order=True)
        return adapted, loss(adapted, qx, qy)

    def step(it):
        b = sample(rng, settings.meta_batch)
        params = {k: v.detach() for k, v in parameters_of(model).items()}
        with torch.no_grad():
            if settings.vectorize:
                adapted, q = vmap(adapt_and_score, in_dims=(None, 0, 0, 0, 0), randomness="different")(
                    params, b.support_x, b.support_y, b.query_x, b.query_y)
            else:
                outs = [adapt_and_score(params, *(a[i] for a in (b.support_x, b.support_y, b.query_x, b.query_y)))
                        for i in range(len(b))]
                adapted = {k: torch.stack([o[0][k] for o in outs]) for k in params}
                q = torch.stack([o[1] for o in outs])
            eps = settings.reptile_epsilon * (1.0 - it / settings.iterations)
            for name, p in model.named_parameters():
                p.add_(eps * (adapted[name].mean(0) - p))
        return float(q.mean())

    return _loop(settings, step, progress, time_limit)


def train_joint(model: torch.nn.Module, sample: TaskSampler, settings: MetaSettings, *, loss_fn: LossFn = mse,
                progress: Progress | None = None, time_limit: float | None = None) -> list[float]:
    """Pre-train ``model`` in place on the pooled examples of ``meta_batch`` tasks per step."""
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    opt = torch.optim.Adam(model.parameters(), lr=settings.outer_lr)
    model.train()

    def step(_it):
        b = sample(rng, settings.meta_batch)
        x = torch.cat([b.support_x, b.query_x], 1).flatten(0, 1)
        y = torch.cat([b.support_y, b.query_y], 1).flatten(0, 1)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return _loop(settings, step, progress, time_limit)


TRAINERS = {"maml": train_maml, "reptile": train_reptile, "pretrained": train_joint}


def smoothed(values, width: int = 50) -> np.ndarray:
    """Running mean over the last ``width`` values, for loss plots (same length as ``values``)."""
    v = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(v, 0, 0.0))
    end = np.arange(1, len(v) + 1)
    start = np.maximum(0, end - max(1, width))
    return (c[end] - c[start]) / (end - start)


__all__ = [
    "TRAINERS",
    "MetaSettings",
    "TaskBatch",
    "adapt",
    "adaptation_curve",
    "mse",
    "predict",
    "smoothed",
    "train_joint",
    "train_maml",
    "train_reptile",
]
