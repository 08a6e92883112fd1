"""Training the universal network (see :mod:`doascope.models.universal`) on random arrays and rooms.

Data: each scene draws an array (2-16 mics; linear, planar or 3-D; aperture 3-25 cm; random
rotation and mic order; ``random_array``) or takes a fixed one (fine-tuning), and a
:func:`doascope.sim.scenes.random_scene` room (RT60, SNR, 1-3 speech and noise sources). Its blocks
of STFT frames give the PHAT cross-spectra of every pair (and their integration over blocks, as
the engine does), turned into the network's sub-band GCC features on the fixed lag axis. A scene
keeps at most ``EXAMPLES_PER_SCENE`` blocks and ``MAX_PAIRS`` random pairs (the mean over pairs
makes a subset of pairs a valid, cheaper view of the same scene), so the cache stays small. Shards
of ``SHARD`` scenes are cached as npz (scene i draws everything from the generator [seed, i]).

Training: BCE against Gaussian bumps (``sigma`` degrees) at the active sources on a circle of
candidate directions with a random offset, at elevation 0 (azimuth distance) or, for half the
examples, at an active source's elevation (angular distance). AdamW, cosine learning rate, a
checkpoint after each epoch (resumable), one CPU thread by default.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.models.universal import (ARCH_DEFAULTS, LAGS, N_BANDS, UNIVERSAL_FORMAT, UniversalFeatures, full_arch,
                                       pair_geometry)

MAX_SOURCES = 3
MAX_PAIRS = 28
EXAMPLES_PER_SCENE = 12
SHARD = 50
RATES = ((16000, 512), (48000, 2048), (44100, 1024))   # (fs, nfft) drawn 70/20/10 % for random arrays


@dataclass
class UniversalSettings:
    scenes: int = 3000
    epochs: int = 15
    seed: int = 0
    duration: float = 2.5
    rt60: tuple = (0.1, 1.0)
    snr: tuple = (-5.0, 30.0)
    source_weights: tuple = (0.4, 0.35, 0.25)
    frames_per_block: int = 8
    smoothing: float = 0.5
    sigma: float = 6.0
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    n_candidates: int = 120
    hidden: int = 16
    width: int = 16
    head: int = 32
    #: the network's depth and context (see doascope.models.universal.build_network), and the
    #: sub-bands of its features (a change of n_bands simulates its own cache)
    layers: int = 2
    head_layers: int = 1
    context: str = "max"
    n_bands: int = N_BANDS
    threads: int = 1
    val_scenes: int = 60
    #: share of the several-source blocks kept (all single-source blocks are): below 1 leans a run,
    #: e.g. a fine-tune, towards single talkers (the shipped weights: 0.6, see the README)
    multi_share: float = 1.0

    def arch(self) -> dict:
        return full_arch({k: getattr(self, k) for k in ARCH_DEFAULTS})

    def data_key(self, positions=None, fs=None) -> str:
        key = {k: getattr(self, k) for k in ("seed", "duration", "rt60", "snr", "source_weights",
                                             "frames_per_block", "smoothing")}
        key = {k: list(v) if isinstance(v, tuple) else v for k, v in key.items()}
        key["lags"] = [len(LAGS), float(LAGS[-1]), self.n_bands, MAX_PAIRS, EXAMPLES_PER_SCENE, UNIVERSAL_FORMAT]
        if positions is not None:
            key["positions"] = np.round(np.asarray(positions), 5).tolist()
            key["fs"] = int(fs)
        return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([[a*a + b*b - c*c - d*d, 2*(b*c - a*d), 2*(b*d + a*c)],
                     [2*(b*c + a*d), a*a - b*b + c*c - d*d, 2*(c*d - a*b)],
                     [2*(b*d - a*c), 2*(c*d + a*b), a*a - b*b - c*c + d*d]])


def random_array(rng) -> np.ndarray:
    """Positions (mics, 3) m of a random array: 2-16 mics, linear (15 %), planar (60 %) or 3-D, a
    ring, grid or scatter, aperture (longest pair) 3-25 cm, randomly turned, mics in random order.
    Planar arrays lie in the x-y plane, as mounted arrays do; 3-D ones take any orientation."""
    n = int(rng.choice(np.arange(2, 17), p=_mic_weights()))
    kind = rng.choice(["linear", "planar", "3d"], p=[0.15, 0.6, 0.25]) if n >= 4 else (
        "linear" if n == 2 else rng.choice(["linear", "planar"]))
    for _ in range(100):
        if kind == "linear":
            x = np.sort(rng.uniform(-1, 1, n)) if rng.random() < 0.4 else np.linspace(-1, 1, n)
            p = np.stack([x, np.zeros(n), np.zeros(n)], axis=1)
        elif kind == "planar":
            style = rng.choice(["ring", "ring+centre", "grid", "scatter"])
            if style in ("ring", "ring+centre"):
                m = n - 1 if style == "ring+centre" else n
                a = np.arange(m) * 2 * np.pi / m + rng.uniform(0, 2 * np.pi)
                p = np.stack([np.cos(a), np.sin(a), np.zeros(m)], axis=1)
                if style == "ring+centre":
                    p = np.vstack([p, np.zeros((1, 3))])
            elif style == "grid":
                cols = int(np.ceil(np.sqrt(n)))
                g = np.array([(i % cols, i // cols, 0.0) for i in range(n)], dtype=np.float64)
                p = g - g.mean(axis=0)
            else:
                r, a = np.sqrt(rng.uniform(0, 1, n)), rng.uniform(0, 2 * np.pi, n)
                p = np.stack([r * np.cos(a), r * np.sin(a), np.zeros(n)], axis=1)
        else:
            if rng.random() < 0.5:       # a ring with mics above or below it
                m = max(3, n - int(rng.integers(1, max(2, n // 3))))
                a = np.arange(m) * 2 * np.pi / m
                p = np.stack([np.cos(a), np.sin(a), np.zeros(m)], axis=1)
                p = np.vstack([p, np.column_stack([rng.uniform(-0.5, 0.5, (n - m, 2)), rng.choice([-1, 1], n - m)
                                                   * rng.uniform(0.4, 1.0, n - m)])])
            else:
                v = rng.normal(size=(n, 3))
                p = v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(0.3, 1, (n, 1)) ** (1 / 3)
        p = p - p.mean(axis=0)
        d = np.linalg.norm(p[:, None] - p[None], axis=2)
        span = d.max()
        if span <= 0:
            continue
        p = p * (rng.uniform(0.03, 0.25) / span)
        d = np.linalg.norm(p[:, None] - p[None], axis=2) + np.eye(n)
        if d.min() >= 0.008:         # mics at least 8 mm apart
            break
    if kind == "3d":
        p = p @ random_rotation(rng).T
    else:
        a = rng.uniform(0, 2 * np.pi)
        p = p @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]]).T
    return p[rng.permutation(n)]


def _mic_weights():
    w = np.array([1.0 if n in (2, 3) else (2.0 if n <= 8 else 1.0) for n in range(2, 17)])
    return w / w.sum()


def scene_examples(scene, feats: UniversalFeatures, settings: UniversalSettings, rng):
    """The blocks of one scene: (features (n, P, K, L) float16, pair baselines (n..., P, 3), az and el
    (n, MAX_SOURCES) float32 NaN-padded); at most EXAMPLES_PER_SCENE blocks and MAX_PAIRS pairs."""
    from doascope.dsp.stft import stft

    nfft = feats.gcc.nfft
    hop = nfft // 2
    X = stft(scene.audio, nfft=nfft, hop=hop)
    az = np.array([s.azimuth for s in scene.sources], np.float32)
    el = np.array([s.elevation for s in scene.sources], np.float32)
    fpb = settings.frames_per_block
    span = (fpb - 1) * hop + nfft
    Cs, acts = [], []
    C_s, prev = None, np.zeros(len(az), bool)
    for b in range(X.shape[2] // fpb):
        C = feats.cross_spectra(np.ascontiguousarray(X[:, :, b * fpb:(b + 1) * fpb]))
        act = scene.active(b * fpb * hop, b * fpb * hop + span)
        C_s = C if C_s is None else settings.smoothing * C_s + (1 - settings.smoothing) * C
        for c, a in ((C, act), (C_s, act | prev)):
            if a.any():
                Cs.append(c)
                acts.append(a)
        prev = act
    if not Cs:
        return None
    pick = rng.permutation(len(Cs))[:EXAMPLES_PER_SCENE]
    pairs = np.sort(rng.permutation(feats.n_pairs)[:MAX_PAIRS])
    C = np.stack([Cs[i] for i in pick])[:, pairs]
    lab_az = np.full((len(pick), MAX_SOURCES), np.nan, np.float32)
    lab_el = np.full((len(pick), MAX_SOURCES), np.nan, np.float32)
    for row, i in enumerate(pick):
        a = acts[i]
        lab_az[row, :a.sum()] = az[a]
        lab_el[row, :a.sum()] = el[a]
    pos = feats.gcc.positions
    base = (pos[feats.pairs[pairs, 1]] - pos[feats.pairs[pairs, 0]]).astype(np.float32)
    return feats.features(C).astype(np.float16), base, lab_az, lab_el


def _simulate_shard(settings_dict, lo, hi, path, positions=None, fs=None, nfft=None):
    from doascope.sim.scenes import random_scene
    from doascope.dsp.grids import array_geometry

    settings = UniversalSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings_dict.items()})
    F = np.zeros((0, MAX_PAIRS, settings.n_bands, len(LAGS)), np.float16)
    out = {"x": [], "base": [], "az": [], "el": [], "np": [], "scene": []}
    for i in range(lo, hi):
        rng = np.random.default_rng([settings.seed, i])
        if positions is None:
            pos = random_array(rng)
            r = rng.random()
            s_fs, s_nfft = RATES[0] if r < 0.7 else (RATES[1] if r < 0.9 else RATES[2])
        else:
            pos, s_fs, s_nfft = np.asarray(positions, dtype=np.float64), int(fs), int(nfft)
        k = int(rng.choice(MAX_SOURCES, p=np.asarray(settings.source_weights) / sum(settings.source_weights))) + 1
        scene = random_scene(pos, s_fs, rng, n_sources=k, rt60_range=settings.rt60, snr_range=settings.snr,
                             duration=settings.duration, min_separation_deg=30.0 if k < 3 else 25.0,
                             planar=array_geometry(pos) != "3d")
        feats = UniversalFeatures(pos, fs=s_fs, nfft=s_nfft, n_bands=settings.n_bands)
        ex = scene_examples(scene, feats, settings, rng)
        if ex is None:
            continue
        x, base, az, el = ex
        n, p = x.shape[:2]
        xp = np.zeros((n, MAX_PAIRS) + x.shape[2:], np.float16)
        xp[:, :p] = x
        bp = np.zeros((MAX_PAIRS, 3), np.float32)
        bp[:p] = base
        out["x"].append(xp)
        out["base"].append(np.repeat(bp[None], n, axis=0))
        out["az"].append(az)
        out["el"].append(el)
        out["np"].append(np.full(n, p, np.int16))
        out["scene"].append(np.full(n, i, np.int32))
    if not out["x"]:
        out["x"] = [F]
        out["base"] = [np.zeros((0, MAX_PAIRS, 3), np.float32)]
        for k2, dt in (("az", np.float32), ("el", np.float32)):
            out[k2] = [np.zeros((0, MAX_SOURCES), dt)]
        out["np"], out["scene"] = [np.zeros(0, np.int16)], [np.zeros(0, np.int32)]
    path = Path(path)
    tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **{k: np.concatenate(v) for k, v in out.items()})
    os.replace(tmp, path)
    return str(path)


def make_dataset(settings: UniversalSettings, cache_dir: Path, *, first: int = 0, count: int | None = None,
                 jobs: int = 1, profile=None, progress=None) -> dict:
    """The examples of scenes first..first+count-1 (random arrays, or ``profile``'s array at its
    own rate), simulated in cached shards ``jobs`` processes at a time."""
    from doascope.config import default_nfft

    count = settings.scenes if count is None else count
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    extra = {}
    if profile is not None:
        extra = {"positions": profile.positions.tolist(), "fs": int(profile.sample_rate),
                 "nfft": default_nfft(profile.sample_rate)}
    key = settings.data_key(extra.get("positions"), extra.get("fs"))
    size = min(SHARD, settings.scenes)       # tiny runs simulate only what they use
    shards = []
    for lo in range(first - first % size, first + count, size):
        path = cache_dir / f"universal-{key}-{size}-{lo // size}.npz"
        shards.append((path, lo, lo + size))
    todo = [s for s in shards if not s[0].is_file()]
    args = [(asdict(settings), lo, hi, str(path), extra.get("positions"), extra.get("fs"), extra.get("nfft"))
            for path, lo, hi in todo]
    if jobs > 1 and len(args) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(_simulate_shard, *a) for a in args]):
                fut.result()
                if progress:
                    progress(size)
    else:
        for a in args:
            _simulate_shard(*a)
            if progress:
                progress(size)
    parts = []
    for path, _, _ in shards:
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
        keep = (d["scene"] >= first) & (d["scene"] < first + count)
        parts.append({k: v[keep] for k, v in d.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def keep_blocks(data: dict, multi_share: float) -> dict:
    """``data`` (make_dataset's) with every single-source block and a seeded ``multi_share`` of the others."""
    if multi_share >= 1.0:
        return data
    keep = np.isnan(data["az"][:, 1]) | (np.random.default_rng(1).random(len(data["az"])) < multi_share)
    return {k: v[keep] for k, v in data.items()}


def candidate_batch(torch, base, az, el, n_cand: int, gen, c: float = SPEED_OF_SOUND):
    """Candidate directions for a batch and the Gaussian-bump targets' angular distances.

    Returns (lo, frac) lag sampling (N, P, G), and the distance (N, MAX_SOURCES, G) degrees of each
    source to each candidate: a circle at elevation 0 (distance in azimuth) or, for half the
    examples, at a random active source's elevation (great-circle distance)."""
    n = base.shape[0]
    offset = torch.rand(n, 1, generator=gen) * (360.0 / n_cand)
    cand_az = offset + torch.arange(n_cand, dtype=torch.float32)[None] * (360.0 / n_cand)   # (N, G)
    lifted = torch.rand(n, generator=gen) < 0.5
    n_act = (~torch.isnan(az)).sum(1).clamp_min(1)
    pick = (torch.rand(n, generator=gen) * n_act).long().clamp_max(MAX_SOURCES - 1)
    cand_el = torch.where(lifted, torch.nan_to_num(el[torch.arange(n), pick]), torch.zeros(n))       # (N,)
    a, e = torch.deg2rad(cand_az), torch.deg2rad(cand_el)[:, None]
    vec = torch.stack([torch.cos(e) * torch.cos(a), torch.cos(e) * torch.sin(a), torch.sin(e).expand_as(a)], -1)
    tdoa = torch.einsum("npk,ngk->npg", base, vec) / c                                        # (N, P, G)
    pos = ((tdoa + float(-LAGS[0])) / float(LAGS[1] - LAGS[0])).clamp(0.0, len(LAGS) - 1 - 1e-4)
    lo = pos.floor().long()
    frac = pos - lo
    # distances: azimuth only on the horizontal circle, great-circle on the lifted one
    d_az = ((cand_az[:, None, :] - az[:, :, None] + 180.0) % 360.0) - 180.0                    # (N, S, G)
    s_el = torch.deg2rad(el)
    cosd = (torch.sin(s_el)[:, :, None] * torch.sin(e)[:, :, None] * 1.0
            + torch.cos(s_el)[:, :, None] * torch.cos(e)[:, :, None] * torch.cos(torch.deg2rad(d_az)))
    d_gc = torch.rad2deg(torch.arccos(cosd.clamp(-1.0, 1.0)))
    dist = torch.where(lifted[:, None, None], d_gc, d_az.abs())
    return lo, frac, dist


def targets(torch, dist, sigma: float):
    return torch.nan_to_num(torch.exp(-0.5 * (dist / sigma) ** 2), nan=0.0).amax(dim=1)


def train_universal(out: Path, settings: UniversalSettings, *, cache_dir: Path, resume: bool = False,
                    jobs: int = 1, init: Path | None = None, profile=None, log=print) -> dict:
    """Simulate (or load cached) scenes, train (from ``init``'s weights when given), save to ``out``."""
    from doascope.models.weight_files import (checkpoint_path, import_torch, load_weights, remove_checkpoint,
                                              resume_checkpoint, save_checkpoint, save_weights)
    from doascope.models.universal import arch_of, build_network, grow_into

    torch = import_torch()
    torch.set_num_threads(max(1, int(settings.threads)))
    t0 = time.perf_counter()
    t_cpu0 = time.process_time()
    done = [0]

    def progress(k):
        done[0] += k
        log(f"simulated {min(done[0], settings.scenes)}/{settings.scenes} rooms ({time.perf_counter() - t0:.0f} s)")

    data = keep_blocks(make_dataset(settings, cache_dir, jobs=jobs, profile=profile, progress=progress),
                       settings.multi_share)
    t_data = time.perf_counter() - t0
    if len(data["x"]) == 0:
        raise ParameterError("the simulated scenes gave no training blocks: use more --scenes")
    val = data["scene"] >= settings.scenes - settings.val_scenes
    if val.all():
        val = data["scene"] >= settings.scenes - max(1, settings.scenes // 10)
    tr = ~val
    X = torch.from_numpy(data["x"][tr])
    B = torch.from_numpy(data["base"][tr])
    NP = torch.from_numpy(data["np"][tr].astype(np.int64))
    AZ, EL = torch.from_numpy(data["az"][tr]), torch.from_numpy(data["el"][tr])
    dists = np.linalg.norm(data["base"], axis=2)                                       # (N, MAX_PAIRS)
    GEO = torch.from_numpy(pair_geometry(dists.reshape(-1)).reshape(len(dists), MAX_PAIRS, 2, len(LAGS)))
    GEO_tr = GEO[torch.from_numpy(tr)]
    torch.manual_seed(settings.seed)
    model = build_network(**settings.arch())
    if init is not None:
        meta0, state0 = load_weights(init)
        if arch_of(meta0) == settings.arch():
            model.load_state_dict(state0)
        else:               # a wider or deeper network starts as the given one (the same output)
            grow_into(model, meta0, state0)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = max(1, -(-len(X) // settings.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.epochs * steps,
                                                pct_start=0.05 if init is not None else 0.1)
    gen = torch.Generator().manual_seed(settings.seed)
    ckpt = checkpoint_path(out)
    history, epoch0 = [], 0
    if resume and ckpt.is_file():
        history, epoch0 = resume_checkpoint(ckpt, model=model, opt=opt, sched=sched, gen=gen, settings=asdict(settings))
        log(f"resumed after epoch {epoch0}")
    loss_fn = torch.nn.BCEWithLogitsLoss()
    pair_ids = torch.arange(MAX_PAIRS)[None]
    for epoch in range(epoch0, settings.epochs):
        model.train()
        order = torch.randperm(len(X), generator=gen)
        total = 0.0
        for k in range(steps):
            idx = order[k * settings.batch:(k + 1) * settings.batch]
            p = int(NP[idx].max())
            mask = (pair_ids[:, :p] < NP[idx][:, None]).float()
            lo, frac, dist = candidate_batch(torch, B[idx, :p], AZ[idx], EL[idx], settings.n_candidates, gen)
            logits = model(X[idx, :p].float(), GEO_tr[idx, :p], lo, frac, mask)
            loss = loss_fn(logits, targets(torch, dist, settings.sigma))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc = _val_accuracy(torch, model, data, val, GEO[torch.from_numpy(val)])
        history.append({"epoch": epoch + 1, "train_loss": total / len(X), "val_acc10": acc})
        save_checkpoint(ckpt, model=model, opt=opt, sched=sched, gen=gen, history=history, epoch=epoch + 1,
                        settings=asdict(settings))
        log(f"epoch {epoch + 1}/{settings.epochs}: loss {total / len(X):.4f}, held-out single-source blocks "
            f"within 10 deg {acc:.1%} ({time.perf_counter() - t0:.0f} s)")
    meta = {"kind": "universal", "universal_format": UNIVERSAL_FORMAT, "n_lags": len(LAGS), "n_bands": settings.n_bands,
            "arch": settings.arch(),
            "profile": profile.id if profile is not None else "universal",
            "training": {**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
                         "examples": int(len(X)), "from": str(init.name) if init is not None else None,
                         "data_seconds": round(t_data, 1), "total_seconds": round(time.perf_counter() - t0, 1),
                         "cpu_seconds": round(time.process_time() - t_cpu0, 1)},
            "history": history[-1:]}
    size = save_weights(out, model, meta)
    remove_checkpoint(ckpt)
    return {"out": str(out), "bytes": size, "examples": int(len(X)), "data_seconds": t_data,
            "total_seconds": time.perf_counter() - t0, "history": history}


def _val_accuracy(torch, model, data, val, geo) -> float:
    """Share of held-out single-source examples whose best of 360 azimuths (elevation 0) is within 10 deg."""
    one = val & np.isnan(data["az"][:, 1])
    if not one.any():
        return float("nan")
    sel = np.flatnonzero(one)[:2000]
    model.eval()
    hits = []
    with torch.inference_mode():
        for k in range(0, len(sel), 256):
            i = sel[k:k + 256]
            base = torch.from_numpy(data["base"][i])
            a = torch.deg2rad(torch.arange(360, dtype=torch.float32))
            vec = torch.stack([torch.cos(a), torch.sin(a), torch.zeros(360)], -1)
            tdoa = torch.einsum("npk,gk->npg", base, vec) / SPEED_OF_SOUND
            pos = ((tdoa + float(-LAGS[0])) / float(LAGS[1] - LAGS[0])).clamp(0.0, len(LAGS) - 1 - 1e-4)
            lo = pos.floor().long()
            npairs = torch.from_numpy(data["np"][i].astype(np.int64))
            mask = (torch.arange(MAX_PAIRS)[None] < npairs[:, None]).float()
            geo_i = geo[torch.from_numpy(np.searchsorted(np.flatnonzero(val), i))]
            y = model(torch.from_numpy(data["x"][i]).float(), geo_i, lo, pos - lo, mask)
            top = y.argmax(1).float()
            err = ((top - torch.from_numpy(data["az"][i, 0]) + 180.0) % 360.0 - 180.0).abs()
            hits.append((err <= 10).float())
    model.train()
    return float(torch.cat(hits).mean()) if hits else math.nan
