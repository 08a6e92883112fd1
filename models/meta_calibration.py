"""Few-shot array calibration: meta-learning the DOA network across perturbed arrays.

A task is a simulated room recorded by a ReSpeaker USB v2 (4-mic square) whose real geometry differs
from the nominal one by an unknown rotation offset (+-30 degrees by default), spacing scale
(0.85-1.15) and per-mic position errors (~3 mm). Features are GCC-PHAT (:mod:`models.features`)
computed as if the array were nominal, so the network sees what a DOA network shipped for the
nominal array would see on that user's hardware. A talker speaks from ``directions`` random
azimuths in turn; every analysis block with exactly one active source is one labelled example.

A small MLP (pairs * lags -> hidden -> 360 azimuth bins, Gaussian-coded targets, BCE summed over
bins) is meta-trained with MAML and Reptile (:mod:`models.meta`) and jointly pre-trained on the same
training tasks; on held-out tasks K labelled blocks adapt it by SGD, and the rest are scored
(accuracy within 10 degrees, mean absolute error). Classical baselines: SRP-PHAT with the nominal
geometry, and SRP-PHAT plus a rotation offset estimated from the same K labels (circular mean of
label minus estimate), which is what a practitioner would do first.

Features of each task are cached as an npz file keyed by geometry, settings and task index.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from doascope import ParameterError
from doascope.config import DEFAULT_FRAMES_PER_BLOCK

PROFILE = "respeaker_usb_v2"
N_OUT = 360
METHODS = ("maml", "reptile", "pretrained")
BASELINES = ("none", "srp", "srp_offset")
LABELS = {"none": "no adaptation", "pretrained": "fine-tuned (joint pre-training)", "maml": "MAML",
          "reptile": "Reptile", "srp": "SRP-PHAT (nominal)", "srp_offset": "SRP-PHAT + offset from K"}
RESULTS_NAME = "meta_calibration.json"
SHIPPED_RESULTS = Path(__file__).resolve().parent / "weights" / RESULTS_NAME


@dataclass
class CalibConfig:
    train_tasks: int = 48
    test_tasks: int = 8
    directions: int = 10           # talker positions per task
    segment: float = 0.7           # seconds per position
    max_rotation: float = 30.0     # degrees, uniform in +-
    min_rotation: float = 0.0      # degrees: |rotation| at least this (tests: clearly perturbed arrays)
    scale: tuple = (0.85, 1.15)
    mic_error_mm: float = 3.0      # std of per-mic x, y errors
    rt60: tuple = (0.2, 0.6)
    snr: tuple = (10.0, 30.0)
    lags: int = 25
    hidden: tuple = (128, 128)
    sigma: float = 8.0             # degrees, Gaussian target width
    k_train: int = 5               # support blocks per task while meta-training
    q_train: int = 15
    iterations: int = 1500
    meta_batch: int = 8
    inner_lr: float = 0.02         # SGD step at test (all methods) and MAML's inner step
    inner_steps: int = 2
    reptile_steps: int = 5
    outer_lr: float = 1e-3
    eval_steps: int = 20
    ks: tuple = (1, 5, 10)
    query: int = 20                # scored blocks per held-out task
    draws: int = 4                 # support draws per held-out task and K
    seed: int = 0

    def data_key(self, index: int) -> dict:
        keys = ("directions", "segment", "max_rotation", "min_rotation", "scale", "mic_error_mm", "rt60", "snr", "lags", "seed")
        return {**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k in keys},
                "task": index}


def tiny_config(**kw) -> CalibConfig:
    """A configuration for tests: seconds, not minutes."""
    base = {"train_tasks": 24, "test_tasks": 4, "iterations": 500, "meta_batch": 6, "eval_steps": 10, "ks": (1, 5),
            "draws": 3, "hidden": (96, 96)}
    base.update(kw)
    return CalibConfig(**base)


def default_cache_dir() -> Path:
    from doascope.models.training import default_cache_dir as d

    return d() / "meta_calibration"


def nominal_positions():
    from doascope.hardware_profiles import load_profile

    return load_profile(PROFILE).positions


def feature_spec(cfg: CalibConfig):
    from doascope.config import DEFAULT_BAND
    from doascope.models.features import FeatureSpec

    return FeatureSpec(16000, 512, DEFAULT_BAND, n_lags=cfg.lags)


def _rot(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def perturb(nominal, rng, cfg: CalibConfig) -> tuple[np.ndarray, dict]:
    """Real positions of a perturbed array and the perturbation drawn."""
    rot = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    if cfg.min_rotation > 0:  # |rotation| uniform in [min, max], either sign
        rot = float(np.sign(rot) * (cfg.min_rotation + abs(rot) * (cfg.max_rotation - cfg.min_rotation)
                                    / cfg.max_rotation))
    scale = float(rng.uniform(*cfg.scale))
    err = rng.normal(0.0, cfg.mic_error_mm * 1e-3, (len(nominal), 2))
    pos = (np.asarray(nominal) * scale) @ _rot(rot).T
    pos[:, :2] += err
    return pos, {"rotation_deg": rot, "scale": scale, "mic_error_rms_mm": float(np.sqrt((err ** 2).mean()) * 1e3)}


def block_examples(audio, feats, srp, labels_of, *, frames_per_block=DEFAULT_FRAMES_PER_BLOCK):
    """Features, azimuth labels and SRP-PHAT azimuths of every labelled block of ``audio``.

    ``labels_of(start, stop)`` gives the azimuth of a block of samples, or None to skip it.
    """
    from doascope.dsp.stft import stft

    nfft = feats.gcc.nfft
    hop = nfft // 2
    X = stft(audio, nfft=nfft, hop=hop)
    span = (frames_per_block - 1) * hop + nfft
    xs, ys, ss = [], [], []
    for b in range(X.shape[2] // frames_per_block):
        start = b * frames_per_block * hop
        az = labels_of(start, start + span)
        if az is None:
            continue
        C = feats.cross_spectra(np.ascontiguousarray(X[:, :, b * frames_per_block:(b + 1) * frames_per_block]))
        xs.append(C)
        ys.append(az)
        if srp is not None:
            ss.append(float(srp.grid.azimuth[int(np.argmax(srp.spectrum_from(C)))]))
    if not xs:
        return np.zeros((0, feats.size), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)
    return feats.features(np.stack(xs)), np.asarray(ys, np.float32), np.asarray(ss, np.float32)


def simulate_task(cfg: CalibConfig, index: int, cache_dir: Path | None = None) -> dict:
    """One task's blocks: x (n, F) float32, az (n,), srp (n,) and the perturbation (cached)."""
    from doascope.sim.scenes import SourceSpec, simulate_scene
    from doascope.dsp.estimators import make_estimator
    from doascope.dsp.grids import circle_grid
    from doascope.models.features import GccFeatures

    nominal = nominal_positions()
    spec = feature_spec(cfg)
    key = hashlib.sha1(json.dumps({"pos": np.round(nominal, 5).tolist(), "spec": spec.as_dict(),
                                   "data": cfg.data_key(index)}, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"task-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {"x": z["x"].astype(np.float32), "az": z["az"], "srp": z["srp"],
                    "perturbation": json.loads(str(z["perturbation"]))}
    rng = np.random.default_rng([cfg.seed, 7919, index])
    real, pert = perturb(nominal, rng, cfg)
    room = np.array([rng.uniform(4.0, 7.0), rng.uniform(3.5, 6.0), rng.uniform(2.5, 3.2)])
    centre = np.array([room[0] / 2 + rng.uniform(-0.5, 0.5), room[1] / 2 + rng.uniform(-0.5, 0.5),
                       rng.uniform(1.0, 1.4)])
    azimuths = rng.uniform(0, 360, cfg.directions)
    sources = [SourceSpec(float(a), elevation=float(rng.uniform(-5, 20)), distance=float(rng.uniform(1.0, 1.8)),
                          start=i * cfg.segment, stop=(i + 1) * cfg.segment) for i, a in enumerate(azimuths)]
    scene = simulate_scene(real, spec.fs, sources, duration=cfg.directions * cfg.segment,
                           rt60=float(rng.uniform(*cfg.rt60)), snr_db=float(rng.uniform(*cfg.snr)),
                           room_dim=tuple(room), array_centre=tuple(centre), rotation_deg=float(rng.uniform(0, 360)),
                           seed=int(rng.integers(2 ** 31)))
    truth = np.array([s.azimuth for s in scene.sources])

    def label(start, stop):
        act = scene.active(start, stop)
        return float(truth[act][0]) if act.sum() == 1 else None

    feats = GccFeatures(nominal, spec)
    srp = make_estimator("srp-phat", nominal, fs=spec.fs, nfft=spec.nfft, grid=circle_grid(1.0), band=spec.band)
    x, az, s = block_examples(scene.audio, feats, srp, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, x=x.astype(np.float16), az=az, srp=s, perturbation=json.dumps(pert))
    os.replace(tmp, path)
    return {"x": x, "az": az, "srp": s, "perturbation": pert}


def make_tasks(cfg: CalibConfig, cache_dir=None, progress=None) -> tuple[list, list]:
    """(training tasks, held-out tasks); held-out tasks use indices after the training ones."""
    out = []
    total = cfg.train_tasks + cfg.test_tasks
    for i in range(total):
        t = simulate_task(cfg, i, cache_dir)
        if len(t["az"]) < cfg.query + max(cfg.ks) and i >= cfg.train_tasks:
            raise ParameterError(f"held-out task {i} gave only {len(t['az'])} blocks: use more --directions")
        out.append(t)
        if progress:
            progress("simulating", i + 1, total)
    return out[:cfg.train_tasks], out[cfg.train_tasks:]


# -- the network and the task family --------------------------------------------------------------

def build_network(n_in: int, hidden=(128, 128), n_out: int = N_OUT):
    import torch

    layers, width = [], n_in
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


def bce_sum(pred, target):
    """BCE with logits summed over the azimuth bins, averaged over examples (a step size that does not
    depend on the number of bins)."""
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="sum") / pred.shape[0]


def targets(az, sigma: float, n_out: int = N_OUT) -> np.ndarray:
    centres = np.arange(n_out) * (360.0 / n_out)
    d = (centres[None, :] - np.asarray(az)[:, None] + 180.0) % 360.0 - 180.0
    return np.exp(-0.5 * (d / sigma) ** 2).astype(np.float32)


def angle_metrics(pred, target):
    """[share within 10 degrees, mean absolute error] of the top output against the target's peak."""
    import torch

    step = 360.0 / pred.shape[-1]
    est = pred.argmax(-1).float() * step
    true = target.argmax(-1).float() * step
    err = ((est - true + 180.0) % 360.0 - 180.0).abs()
    return torch.stack([(err <= 10.0).float().mean(), err.mean()])


class CalibrationTasks:
    """Task sampler over simulated perturbed arrays: K support and Q query blocks per task, each task
    turned by a random symmetry of the nominal square (a relabelled perturbed array is another one)."""

    def __init__(self, tasks, cfg: CalibConfig, *, k_shot=None, n_query=None, augment=True):
        from doascope.models.features import feature_permutation, symmetries

        self.tasks, self.cfg = tasks, cfg
        self.k = k_shot or cfg.k_train
        self.q = n_query or cfg.q_train
        group = symmetries(nominal_positions()) if augment else [(0.0, False, np.arange(4))]
        self.group = [(a, m, feature_permutation(p, cfg.lags)) for a, m, p in group]

    def __call__(self, rng, n_tasks):
        import torch
        from doascope.models.meta import TaskBatch

        xs, ys = [], []
        for _ in range(n_tasks):
            t = self.tasks[int(rng.integers(len(self.tasks)))]
            idx = rng.choice(len(t["az"]), self.k + self.q, replace=len(t["az"]) < self.k + self.q)
            angle, mirrored, perm = self.group[int(rng.integers(len(self.group)))]
            az = t["az"][idx]
            xs.append(t["x"][idx][:, perm])
            ys.append(targets(((-az if mirrored else az) + angle) % 360.0, self.cfg.sigma))
        x, y = torch.from_numpy(np.stack(xs).astype(np.float32)), torch.from_numpy(np.stack(ys))
        return TaskBatch(x[:, :self.k], y[:, :self.k], x[:, self.k:], y[:, self.k:])


def settings_for(cfg: CalibConfig) -> dict:
    from doascope.models.meta import MetaSettings

    common = {"iterations": cfg.iterations, "meta_batch": cfg.meta_batch, "outer_lr": cfg.outer_lr, "seed": cfg.seed}
    return {"maml": MetaSettings(inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps, **common),
            "reptile": MetaSettings(inner_lr=cfg.inner_lr, inner_steps=cfg.reptile_steps, reptile_epsilon=0.5,
                                    **common),
            "pretrained": MetaSettings(**common)}


@dataclass
class CalibrationRun:
    models: dict
    losses: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def train_all(cfg: CalibConfig, train_tasks, *, methods=METHODS, progress=None, stop=None) -> CalibrationRun:
    """MAML, Reptile and joint pre-training from one initialisation on the same task stream."""
    import torch
    from doascope.models import meta

    torch.manual_seed(cfg.seed)
    n_in = train_tasks[0]["x"].shape[1]
    init = build_network(n_in, cfg.hidden)
    sampler = CalibrationTasks(train_tasks, cfg)
    run = CalibrationRun(models={})
    settings = settings_for(cfg)
    for m in methods:
        model = copy.deepcopy(init)

        def cb(it, loss, m=m):
            if progress is not None:
                progress(m, it, cfg.iterations)
            return bool(stop and stop())

        t0 = time.perf_counter()
        run.losses[m] = meta.TRAINERS[m](model, sampler, settings[m], loss_fn=bce_sum, progress=cb)
        run.seconds[m] = time.perf_counter() - t0
        model.eval()
        run.models[m] = model
        if stop and stop():
            break
    return run


def _circ(d):
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


def evaluate(cfg: CalibConfig, models: dict, test_tasks) -> dict:
    """Held-out curves: {K: {method: {"acc10": [steps + 1], "mae": [...]}}} plus the baselines, flat in steps."""
    import torch
    from doascope.models import meta

    out = {}
    for k in cfg.ks:
        # the same query blocks for every K; support draws of their own
        rng = np.random.default_rng([cfg.seed, 424242, k])
        sx, sy, qx, qy, base = [], [], [], [], {b: [] for b in ("srp", "srp_offset")}
        for i, t in enumerate(test_tasks):
            order = np.random.default_rng([cfg.seed, 424243, i]).permutation(len(t["az"]))
            q, pool = order[:cfg.query], order[cfg.query:]
            for _ in range(cfg.draws):
                s = rng.choice(pool, k, replace=False)
                sx.append(t["x"][s])
                sy.append(targets(t["az"][s], cfg.sigma))
                qx.append(t["x"][q])
                qy.append(targets(t["az"][q], cfg.sigma))
                err = np.abs(_circ(t["srp"][q] - t["az"][q]))
                offset = np.degrees(np.angle(np.mean(np.exp(1j * np.radians(t["az"][s] - t["srp"][s])))))
                err_o = np.abs(_circ(t["srp"][q] + offset - t["az"][q]))
                base["srp"].append([np.mean(err <= 10), err.mean()])
                base["srp_offset"].append([np.mean(err_o <= 10), err_o.mean()])
        tasks = meta.TaskBatch(*(torch.from_numpy(np.stack(a).astype(np.float32)) for a in (sx, sy, qx, qy)))
        res = {}
        for m, model in models.items():
            c = meta.adaptation_curve(model, tasks, steps=cfg.eval_steps, lr=cfg.inner_lr, loss_fn=bce_sum,
                                      metric=angle_metrics)  # (tasks, steps + 1, 2)
            res[m] = {"acc10": c[:, :, 0].mean(0).tolist(), "mae": c[:, :, 1].mean(0).tolist()}
        if "pretrained" in res:
            res["none"] = {key: [v[0]] * (cfg.eval_steps + 1) for key, v in res["pretrained"].items()}
        for b, rows in base.items():
            a = np.asarray(rows).mean(0)
            res[b] = {"acc10": [float(a[0])] * (cfg.eval_steps + 1), "mae": [float(a[1])] * (cfg.eval_steps + 1)}
        out[str(k)] = res
    return out


def summary(cfg: CalibConfig, curves: dict) -> dict:
    """{method: {"acc10": {K: value at the last step}, "mae": {...}}}."""
    out = {}
    for k, res in curves.items():
        for m, c in res.items():
            out.setdefault(m, {"acc10": {}, "mae": {}})
            out[m]["acc10"][k] = c["acc10"][-1]
            out[m]["mae"][k] = c["mae"][-1]
    return out


def run_experiment(cfg: CalibConfig, *, cache_dir=None, progress=None, stop=None) -> dict:
    """Simulate (or load), train, evaluate: (the results dictionary that results.json holds, the run)."""
    t0 = time.perf_counter()
    train_tasks, test_tasks = make_tasks(cfg, cache_dir, progress)
    t_data = time.perf_counter() - t0
    cb = None if progress is None else (lambda m, it, total: progress(m, it, total))
    run = train_all(cfg, train_tasks, progress=cb, stop=stop)
    curves = evaluate(cfg, run.models, test_tasks)
    from doascope.models.meta import smoothed

    return {"task": "array_calibration", "profile": PROFILE,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "train_blocks": int(sum(len(t["az"]) for t in train_tasks)),
            "test_perturbations": [t["perturbation"] for t in test_tasks],
            "data_seconds": round(t_data, 1), "training_seconds": {m: round(s, 1) for m, s in run.seconds.items()},
            "losses": {m: [float(v) for v in smoothed(l, 50)[::10]] for m, l in run.losses.items()},
            "curves": curves, "summary": summary(cfg, curves), "labels": LABELS}, run


def load_results(path=SHIPPED_RESULTS) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"no calibration results at {path}")
    try:
        res = json.loads(path.read_text())
        if res.get("task") != "array_calibration":
            raise ValueError("task")
    except (ValueError, OSError) as exc:
        raise ParameterError(f"{path} is not a doascope calibration results file ({type(exc).__name__})") from None
    return res
