"""Training the DNN estimator for one array on simulated reverberant rooms.

Data: :func:`doascope.sim.scenes.random_scene` rooms (RT60, SNR, 1-3 speech and noise sources,
random array placement and yaw), cut into the blocks the Localizer analyses; each block gives its
own PHAT cross-spectra and the cross-spectra integrated over blocks (smoothing 0.5, as the engine
does), labelled with the azimuths of the sources active in it. The cross-spectra are cached as npz
shards of SHARD_SCENES rooms (keyed by geometry, rate, FFT size, band, settings and seed), made by
``jobs`` processes at once, so a second run, a resumed one, or one with other features skips the
simulation; scene i draws everything from the generator [seed, i], so the data do not depend on
how many processes made them.

Training: BCE on Gaussian-coded azimuths, AdamW, one-cycle learning rate, one CPU thread by default.
Every batch is turned by a random symmetry of the array (a rotation or mirror image that maps the
mics onto each other, see :func:`~doascope.models.features.symmetries`): for a 4-mic square that
is 8 times the data for free. Deterministic for a seed; a checkpoint after each epoch makes it
resumable.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from doascope import ParameterError
from doascope.config import DEFAULT_FRAMES_PER_BLOCK, DEFAULT_SMOOTHING
from doascope.models.features import (
    FEATURE_VERSION,
    FeatureSpec,
    PairFeatures,
    make_features,
    symmetries,
)

MAX_SOURCES = 3
SHARD_SCENES = 50
MAX_AUTO_FEATURES = 2048            # automatic pooling keeps the network's input (and weights) small


@dataclass
class TrainSettings:
    scenes: int = 3000
    epochs: int = 15
    seed: int = 0
    duration: float = 3.0            # seconds per scene
    rt60: tuple = (0.2, 1.0)
    snr: tuple = (-5.0, 30.0)
    source_weights: tuple = (0.4, 0.35, 0.25)   # P(1, 2, 3 sources)
    frames_per_block: int = DEFAULT_FRAMES_PER_BLOCK   # the engine's (doascope.config)
    smoothing: float = DEFAULT_SMOOTHING               # the integrated copy of each block
    features: str = "phase"          # "phase" or "gcc" (see doascope.models.features)
    bands: int = 1                   # gcc: sub-bands in the features
    lags: int = 51                   # gcc: lags per pair and sub-band
    pool: int = 0                    # phase: adjacent frequency bins averaged into one feature
                                     # (0: the least that keeps the features to MAX_AUTO_FEATURES)
    per_frame: bool = True           # examples are single STFT frames (the network's output is then
                                     # averaged over a block's frames), not blocks
    hidden: tuple = (512, 512)
    sigma: float = 6.0               # degrees, the Gaussian each source draws on the output
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.05
    threads: int = 1

    def data_key(self) -> dict:
        # Not the scene count: shard i holds the same scenes whatever the total, so a run with
        # more scenes reuses the shards of a smaller one.
        key = {k: getattr(self, k) for k in ("seed", "duration", "rt60", "snr", "source_weights",
                                             "frames_per_block", "smoothing")}
        if self.per_frame:
            key["per_frame"] = True
        return key


def default_spec(profile, settings: TrainSettings) -> FeatureSpec:
    """The features ``settings`` ask for, at the profile's rate with the engine's FFT and band."""
    from doascope.config import DEFAULT_BAND, default_nfft

    spec = FeatureSpec(int(profile.sample_rate), default_nfft(profile.sample_rate), DEFAULT_BAND,
                       n_lags=settings.lags, n_bands=settings.bands, kind=settings.features,
                       pool=max(1, settings.pool), per_frame=settings.per_frame)
    if settings.features == "phase" and settings.pool == 0:
        size = make_features(profile.positions, spec).size
        spec = replace(spec, pool=max(1, -(-size // MAX_AUTO_FEATURES)))
    return spec


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "doascope"


CACHE_FORMAT = 2                    # shards hold cross-spectra (any feature kind reuses them)


def _key(profile, spec: FeatureSpec, settings: TrainSettings, shard: int | None = None) -> str:
    # What the cross-spectra depend on: geometry, rate, FFT, band and the scenes, not the feature kind.
    blob = json.dumps({"positions": np.round(profile.positions, 5).tolist(), "fs": spec.fs, "nfft": spec.nfft,
                       "band": list(spec.band), "format": CACHE_FORMAT,
                       "data": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.data_key().items()},
                       "shard": shard}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _label(truth, active) -> np.ndarray:
    y = np.full(MAX_SOURCES, np.nan, np.float32)
    y[: active.sum()] = truth[active]
    return y


def scene_examples(scene, feats: PairFeatures, frames_per_block: int, smoothing: float, per_frame: bool = False):
    """(cross-spectra (n, pairs, B) complex64, azimuths (n, MAX_SOURCES) float32 NaN-padded) of one scene.

    Each block gives its own cross-spectra, labelled with the sources active in it, and the
    cross-spectra integrated over blocks as the engine does (``smoothing``), labelled with the
    sources active in it or in the block before. With ``per_frame``, each STFT frame gives its own
    cross-spectra instead, labelled with the sources active in it.
    """
    from doascope.dsp.stft import stft

    nfft, hop = feats.gcc.nfft, feats.gcc.nfft // 2
    X = stft(scene.audio, nfft=nfft, hop=hop)
    truth = np.array([s.azimuth for s in scene.sources], dtype=np.float32)
    if per_frame:
        C = feats.frame_cross_spectra(X)
        keep = [(t, scene.active(t * hop, t * hop + nfft)) for t in range(X.shape[2])]
        keep = [(t, a) for t, a in keep if a.any()]
        if not keep:
            return np.zeros((0, feats.n_pairs, feats.gcc.bins.size), np.complex64), np.zeros((0, MAX_SOURCES), np.float32)
        return (C[[t for t, _ in keep]].reshape(len(keep), feats.n_pairs, -1),
                np.stack([_label(truth, a) for _, a in keep]).reshape(len(keep), MAX_SOURCES))
    span = (frames_per_block - 1) * hop + nfft
    xs, ys = [], []
    C_s, prev = None, np.zeros(len(truth), bool)
    for b in range(X.shape[2] // frames_per_block):
        block = np.ascontiguousarray(X[:, :, b * frames_per_block:(b + 1) * frames_per_block])
        C = feats.cross_spectra(block)
        start = b * frames_per_block * hop
        act = scene.active(start, start + span)
        C_s = C if C_s is None else smoothing * C_s + (1 - smoothing) * C
        for c, a in ((C, act), (C_s, act | prev)):
            if a.any():
                xs.append(c)
                ys.append(_label(truth, a))
        prev = act
    if not xs:
        return (np.zeros((0, feats.n_pairs, feats.gcc.bins.size), np.complex64),
                np.zeros((0, MAX_SOURCES), np.float32))
    return np.stack(xs).astype(np.complex64), np.stack(ys)


def _simulate_shard(positions, spec_dict: dict, settings_dict: dict, lo: int, hi: int, path: str) -> str:
    """Simulate scenes lo..hi-1 and write their cross-spectra, labels and scene index to ``path``.

    Scene i draws everything from the generator [seed, i], so a shard is the same whichever process
    makes it and however many there are.
    """
    from doascope.sim.scenes import random_scene

    settings = TrainSettings(**settings_dict)
    spec = FeatureSpec.from_dict(spec_dict)
    feats = make_features(positions, spec)
    xs, ys, ss = [], [], []
    for i in range(lo, hi):
        rng = np.random.default_rng([settings.seed, i])
        k = int(rng.choice(MAX_SOURCES, p=np.asarray(settings.source_weights) / sum(settings.source_weights))) + 1
        scene = random_scene(positions, spec.fs, rng, n_sources=k, rt60_range=settings.rt60,
                             snr_range=settings.snr, duration=settings.duration,
                             min_separation_deg=30.0 if k < 3 else 25.0)
        c, y = scene_examples(scene, feats, settings.frames_per_block, settings.smoothing, settings.per_frame)
        xs.append(c)
        ys.append(y)
        ss.append(np.full(len(c), i, np.int32))
    path = Path(path)
    tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, c=np.concatenate(xs), y=np.concatenate(ys), s=np.concatenate(ss))
    os.replace(tmp, path)
    return str(path)


def make_dataset(profile, spec: FeatureSpec, settings: TrainSettings, cache_dir: Path, progress=None, jobs: int = 1):
    """Features (N, F) float16, azimuths (N, MAX_SOURCES) float32 and scene index (N,) int32.

    Simulated in shards of SHARD_SCENES scenes, ``jobs`` processes at a time, each shard cached on
    its own as cross-spectra (an interrupted run keeps what it made; another feature kind or size
    reuses them).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    feats = make_features(profile.positions, spec)
    n_shards = -(-settings.scenes // SHARD_SCENES)
    shards = []
    for shard in range(n_shards):
        path = cache_dir / f"{profile.id.replace(os.sep, '_')}-{_key(profile, spec, settings, shard)}.npz"
        shards.append((path, shard * SHARD_SCENES, min(settings.scenes, (shard + 1) * SHARD_SCENES)))
    todo = [sh for sh in shards if not sh[0].is_file()]
    task = progress.add_task("simulating rooms", total=settings.scenes) if progress else None
    if progress:
        progress.advance(task, settings.scenes - sum(hi - lo for _, lo, hi in todo))
    args = [(profile.positions, spec.as_dict(), asdict(settings), lo, hi, str(path)) for path, lo, hi in todo]
    if jobs > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: the parent has torch and numba thread pools that a fork would copy half-made
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_simulate_shard, *a): a[4] - a[3] for a in args}
            for fut in as_completed(futures):
                fut.result()
                if progress:
                    progress.advance(task, futures[fut])
    else:
        for a in args:
            _simulate_shard(*a)
            if progress:
                progress.advance(task, a[4] - a[3])
    out_x, out_y, out_s = [], [], []
    for path, _, _ in shards:
        with np.load(path) as z:
            c, y, s = z["c"], z["y"], z["s"]
        # features in slices, so a big cache never holds float32 copies of everything at once
        out_x.append(np.concatenate([feats.features(c[k:k + 4096]).astype(np.float16)
                                     for k in range(0, len(c), 4096)] or [np.zeros((0, feats.size), np.float16)]))
        out_y.append(y)
        out_s.append(s)
    return np.concatenate(out_x), np.concatenate(out_y), np.concatenate(out_s)


def gaussian_targets(torch, az, n_out: int, sigma: float):
    """(batch, n_out) targets: max over sources of exp(-d^2 / 2 sigma^2), d the circular distance."""
    centres = torch.arange(n_out, dtype=torch.float32) * (360.0 / n_out)
    d = (centres[None, None, :] - az[:, :, None] + 180.0) % 360.0 - 180.0   # NaN rows stay NaN
    g = torch.exp(-0.5 * (d / sigma) ** 2)
    return torch.nan_to_num(g, nan=0.0).amax(dim=1)


def train(profile, out: Path, settings: TrainSettings, *, cache_dir: Path | None = None, resume: bool = False,
          console=None, spec: FeatureSpec | None = None, jobs: int = 1) -> dict:
    """Simulate (or load cached) data, train, save the weights to ``out``; returns a summary dict."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from doascope.models.dnn import N_AZIMUTH, build_network
    from doascope.models.weight_files import (checkpoint_path, import_torch, remove_checkpoint, resume_checkpoint,
                                              save_checkpoint, save_weights)

    torch = import_torch()
    torch.set_num_threads(max(1, int(settings.threads)))
    if profile.n_mics < 2:
        raise ParameterError(f"profile {profile.id} has {profile.n_mics} microphone: the dnn needs at least 2")
    spec = spec or default_spec(profile, settings)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    out = Path(out)
    ckpt = checkpoint_path(out)
    t0 = time.perf_counter()
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        progress.add_task = _with_info(progress.add_task)
        x, y, s = make_dataset(profile, spec, settings, cache_dir, progress, jobs=jobs)
        t_data = time.perf_counter() - t0
        if len(x) == 0:
            raise ParameterError("the simulated scenes gave no training blocks: use more --scenes")

        # Hold out whole scenes, so validation blocks never share a room with training ones.
        n_val_scenes = max(1, round(settings.scenes * settings.val_fraction))
        val = s >= settings.scenes - n_val_scenes
        xt, yt = torch.from_numpy(x[~val]), torch.from_numpy(y[~val])
        xv, yv = torch.from_numpy(x[val].astype(np.float32)), torch.from_numpy(y[val])
        group = symmetries(profile.positions)
        feats = make_features(profile.positions, spec)
        relabels = []
        for _, _, p in group:
            index, sign = feats.relabel(p)
            relabels.append((torch.from_numpy(index), None if sign is None else torch.from_numpy(sign)))

        torch.manual_seed(settings.seed)
        model = build_network(x.shape[1], settings.hidden, N_AZIMUTH)
        opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        steps_per_epoch = max(1, -(-len(xt) // settings.batch))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch,
                                                    pct_start=0.1)
        gen = torch.Generator().manual_seed(settings.seed)
        history, epoch0 = [], 0
        if resume and ckpt.is_file():
            history, epoch0 = resume_checkpoint(ckpt, model=model, opt=opt, sched=sched, gen=gen,
                                                settings=asdict(settings))
        loss_fn = torch.nn.BCEWithLogitsLoss()
        task = progress.add_task("training", total=settings.epochs, completed=epoch0)
        for epoch in range(epoch0, settings.epochs):
            model.train()
            order = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for k in range(steps_per_epoch):
                idx = order[k * settings.batch:(k + 1) * settings.batch]
                g = int(torch.randint(len(group), (1,), generator=gen))
                angle, mirrored, _ = group[g]
                index, sign = relabels[g]
                xb = xt[idx][:, index].float()
                if sign is not None:
                    xb = xb * sign
                az = yt[idx]
                az = ((-az if mirrored else az) + angle) % 360.0
                loss = loss_fn(model(xb), gaussian_targets(torch, az, N_AZIMUTH, settings.sigma))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            train_loss = total / len(xt)
            val_loss, val_acc = evaluate(torch, model, xv, yv, settings.sigma)
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_acc10": val_acc})
            save_checkpoint(ckpt, model=model, opt=opt, sched=sched, gen=gen, history=history, epoch=epoch + 1,
                            settings=asdict(settings))
            progress.update(task, advance=1, info=f"loss {train_loss:.4f} val {val_loss:.4f} "
                                                   f"1-src<=10deg {val_acc:.1%}")
    t_total = time.perf_counter() - t0
    meta = {"profile": profile.id, "profile_name": profile.name, "positions": profile.positions.tolist(),
            "features": spec.as_dict(), "feature_version": FEATURE_VERSION, "n_features": int(x.shape[1]),
            "hidden": list(settings.hidden), "n_out": N_AZIMUTH, "sigma": settings.sigma,
            "training": {**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
                         "examples": len(xt), "val_examples": len(xv), "symmetries": len(group),
                         "data_seconds": round(t_data, 1), "total_seconds": round(t_total, 1)},
            "history": history[-1:] if history else []}
    size = save_weights(out, model, meta)
    remove_checkpoint(ckpt)
    return {"out": str(out), "bytes": size, "examples": len(xt), "data_seconds": t_data,
            "total_seconds": t_total, "history": history, "symmetries": len(group)}


def evaluate(torch, model, xv, yv, sigma: float) -> tuple[float, float]:
    """Validation BCE and the share of single-source blocks whose top output is within 10 degrees."""
    from doascope.models.dnn import N_AZIMUTH

    if len(xv) == 0:
        return float("nan"), float("nan")
    model.eval()
    with torch.inference_mode():
        logits = model(xv)
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(
            logits, gaussian_targets(torch, yv, N_AZIMUTH, sigma)))
        one = torch.isnan(yv[:, 1])
        if not bool(one.any()):
            return loss, float("nan")
        top = logits[one].argmax(dim=1).float() * (360.0 / N_AZIMUTH)
        err = ((top - yv[one, 0] + 180.0) % 360.0 - 180.0).abs()
    return loss, float((err <= 10).float().mean())


def _with_info(add_task):
    def add(description, **kw):
        kw.setdefault("info", "")
        return add_task(description, **kw)
    return add
