"""The universal DNN: one network for any array geometry, sample rate and search grid (a learned SRP).

SRP-PHAT scores a direction by the mean over microphone pairs of each pair's GCC-PHAT read at the
delay that direction predicts for that pair. This network keeps that structure and learns the parts
in between (after Neural-SRP, Grinstein et al. 2023, whose pair features plus pair geometry pooled
over pairs work on arrays of any shape):

1. each pair's PHAT cross-spectrum (averaged over a block's frames, or integrated over blocks like
   the classical methods' statistics) becomes GCC-PHAT in log-spaced sub-bands (``N_BANDS``, or the
   ``n_bands`` a weight file names) on one fixed lag axis in seconds (``LAGS``), so any sample rate
   and FFT size give the same features: the band 300-3500 Hz is read in hertz and the lags in
   seconds, the one internal representation;
2. a small 1-D convolution over lags, shared by every pair, maps those correlations plus the pair's
   geometry (its length as a delay, and each lag relative to it) to ``D`` learned correlations (its
   depth and channels, like the head's, are the weight file's ``arch``: :func:`build_network`);
3. each candidate direction reads every pair's learned correlations at the delay it predicts for
   that pair (linear interpolation), and the mean over pairs, a permutation-invariant pooling, is
   mapped point by point (with the maximum over the grid as context) to a logit.

With several sources, each STFT frame also goes through the network alone and votes for its own
maximum (:meth:`UniversalDnn.frame_peaks`), as srp-phat's frames do (doascope.dsp.extraction): a
block's averaged cross-spectra blur simultaneous talkers, single frames mostly hold one. The
estimator runs the network only on the lags the array's pairs can read, plus the convolutions' reach,
which gives the numbers of the whole lag axis at a fraction of the cost.

Nothing depends on the number or order of microphones or on the grid: pairs are pooled by a mean
and directions are scored one at a time, so a circle, a hemisphere or a sphere all work. No torch at
import time: :class:`UniversalFeatures` is plain numpy, shared by training and the estimator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.dsp._checks import as_stft
from doascope.dsp.estimators import Estimator
from doascope.dsp.extraction import DEFAULT_EXTRACTION, EXTRACTIONS, vote_extraction
from doascope.dsp.gcc import GccPhat, frame_phat_cross, pair_tdoas

#: the band the features read, Hz: the classical methods' default band
BAND = (300.0, 3500.0)
#: sub-bands of the first networks; a weight file says its own (``n_bands``), the features follow it
N_BANDS = 6
#: lag step (half a sample at 16 kHz) and half-width of the lag axis: 36 cm of path, the longest pair
#: of any shipped array (the 3-D Azimut CMA spans 32 cm) with a margin
LAG_STEP = 1.0 / 32000.0
TAU_MAX = 0.36 / SPEED_OF_SOUND
N_HALF = int(np.ceil(TAU_MAX / LAG_STEP))
LAGS = np.arange(-N_HALF, N_HALF + 1) * LAG_STEP        # (L,) seconds
UNIVERSAL_FORMAT = 1
UNIVERSAL_WEIGHTS = Path(__file__).resolve().parent / "weights" / "universal.pt"
PAIR_SCALE_M = 0.25                                     # pair lengths enter the network over this
#: the spectrum is the network's probability to this power: a monotone map (the peaks stay where they
#: are) that lifts a second talker's weaker bump over the peak picker's relative threshold. 0.5 was
#: chosen on the training run's held-out blocks (two-source recall at 15 deg 41 -> 48 %, a second peak on
#: single-source blocks 34 -> 44 %); lower powers found little more and many more false second peaks.
OUTPUT_POWER = 0.5


class UniversalFeatures:
    """Sub-band GCC-PHAT of every pair on the fixed lag axis, for one array, rate and FFT size.

    ``cross_spectra(X)``: (pairs, B) complex64 PHAT cross-spectra of an STFT block (mics, freqs,
    frames); ``features(C)``: (..., pairs, N_BANDS, L) float32 from cross-spectra (..., pairs, B);
    ``geometry()``: (pairs, 2, L) float32 pair channels; ``sampling(vectors)``: (pairs, G) int64 lag
    index and (pairs, G) float32 fraction at which direction g reads pair p.
    """

    def __init__(self, positions, *, fs: float, nfft: int, c: float = SPEED_OF_SOUND, n_bands: int = N_BANDS):
        self.n_bands = nb = int(n_bands)
        self.gcc = GccPhat(positions, fs=fs, nfft=nfft, band=(BAND[0], min(BAND[1], fs / 2)), c=c)
        self.c = float(c)
        pos = self.gcc.positions
        self.pairs = self.gcc.pairs
        self.dist = np.linalg.norm(pos[self.pairs[:, 1]] - pos[self.pairs[:, 0]], axis=1)   # (P,) m
        if self.dist.max() / self.c > TAU_MAX:
            raise ParameterError(f"the universal network covers pairs up to {TAU_MAX * SPEED_OF_SOUND * 100:.0f} cm "
                                 f"apart; this array's longest pair is {self.dist.max() * 100:.0f} cm")
        f = self.gcc.freqs
        edges = np.geomspace(BAND[0], BAND[1] * (1 + 1e-9), nb + 1)
        band_of = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, nb - 1)
        E = np.zeros((f.size, nb, LAGS.size), np.complex128)
        for k in range(nb):
            sel = band_of == k
            # exp(+j 2 pi f tau), as GccPhat: r(tau) peaks at the pair's TDOA, 1 for a coherent wave
            E[sel, k, :] = np.exp(2j * np.pi * np.outer(f[sel], LAGS)) / max(1, int(sel.sum()))
        E = E.reshape(f.size, -1)
        # Re(C E) as one real product: C's float32 view interleaves (re, im) along the bins, so the
        # rows of E interleave (Re E, -Im E): half the work of the complex product, no copy of C.
        self._E = np.empty((2 * f.size, E.shape[1]), np.float32)
        self._E[0::2], self._E[1::2] = E.real, -E.imag

    @property
    def n_pairs(self) -> int:
        return self.pairs.shape[0]

    def cross_spectra(self, X) -> np.ndarray:
        return self.gcc.cross_spectra(X)

    def features(self, C) -> np.ndarray:
        C = np.ascontiguousarray(C, dtype=np.complex64)
        r = C.view(np.float32) @ self._E
        return np.ascontiguousarray(r.reshape(*r.shape[:-1], self.n_bands, LAGS.size), dtype=np.float32)

    def geometry(self) -> np.ndarray:
        return pair_geometry(self.dist, self.c)

    def sampling(self, vectors) -> tuple[np.ndarray, np.ndarray]:
        return lag_sampling(pair_tdoas(self.gcc.positions, vectors, self.pairs, c=self.c))


def pair_geometry(dist, c: float = SPEED_OF_SOUND) -> np.ndarray:
    """(pairs, 2, L) float32: each lag's size over the pair's largest delay (clipped to 2), and the
    pair's length over PAIR_SCALE_M, constant along the lags. Both are even in the lag, as the
    network must be (see :func:`build_network`)."""
    dist = np.asarray(dist, dtype=np.float64)
    rel = np.clip(np.abs(LAGS)[None, :] / np.maximum(dist[:, None] / c, 1e-6), 0.0, 2.0)
    size = np.broadcast_to(dist[:, None] / PAIR_SCALE_M, rel.shape)
    return np.stack([rel, size], axis=1).astype(np.float32)


def lag_sampling(tdoas) -> tuple[np.ndarray, np.ndarray]:
    """(lo int64, frac float32) reading the lag axis at delays ``tdoas`` (any shape) seconds."""
    pos = np.clip((np.asarray(tdoas, dtype=np.float64) + N_HALF * LAG_STEP) / LAG_STEP, 0.0, 2 * N_HALF - 1e-6)
    lo = np.floor(pos).astype(np.int64)
    return lo, (pos - lo).astype(np.float32)


#: the first networks' layout; a weight file's ``arch`` names what it changes (older files hold
#: only hidden, width and head)
ARCH_DEFAULTS = {"hidden": 16, "width": 16, "head": 32, "layers": 2, "head_layers": 1, "context": "max",
                 "n_bands": N_BANDS}
CONTEXTS = ("max", "max+mean")


def full_arch(arch: dict) -> dict:
    """``arch`` (a weight file's, or settings') completed with the first networks' layout."""
    out = {**ARCH_DEFAULTS, **{k: v for k, v in arch.items() if k in ARCH_DEFAULTS}}
    out = {k: (str(v) if k == "context" else int(v)) for k, v in out.items()}
    if out["context"] not in CONTEXTS or out["layers"] < 1 or out["head_layers"] < 1 or out["n_bands"] < 1:
        raise ParameterError(f"unknown universal network layout: {arch}")
    return out


def arch_of(meta: dict) -> dict:
    """A universal weight file's full layout (its ``arch`` and ``n_bands``)."""
    return full_arch({**meta["arch"], "n_bands": meta.get("n_bands", N_BANDS)})


def lag_reach(arch: dict) -> int:
    """Lags the pair network looks to each side (its 5-tap lag convolutions, 2 each)."""
    return 2 * full_arch(arch)["layers"]


def build_network(hidden: int = 16, width: int = 16, head: int = 32, *, layers: int = 2, head_layers: int = 1,
                  context: str = "max", n_bands: int = N_BANDS):
    """The learned SRP (see the module docstring) as a torch module.

    forward(r (N, P, n_bands, L), geo (N, P, 2, L), lo (N, P, G) int64, frac (N, P, G), mask (N, P))
    -> logits (N, G); mask is 1 for real pairs, 0 for padding.

    The pair network: ``layers`` symmetric 5-tap lag convolutions of ``hidden`` channels and a 1x1 to
    ``width`` learned correlations; the head: ``head_layers`` 1x1 layers of ``head`` channels on each
    direction's pooled correlations and a context shared by every direction (their maximum over the
    grid, and with ``context="max+mean"`` their mean too).

    The pair (j, i) has the conjugate cross-spectrum of (i, j), so its correlations are those of
    (i, j) reversed in lag, and each direction reads it at the opposite delay. The lag convolutions'
    kernels are kept symmetric and the geometry channels even, so the pair network commutes with
    that reversal: the output does not depend on the order of the microphones at all.
    """
    from doascope.models.weight_files import import_torch

    torch = import_torch()
    nn = torch.nn
    n_ctx = 1 + (context == "max+mean")

    class SymConv1d(nn.Conv1d):
        """A lag convolution with a kernel symmetric in the lag."""

        def forward(self, x):
            w = 0.5 * (self.weight + self.weight.flip(-1))
            return self._conv_forward(x, w, self.bias)

    class LearnedSrp(nn.Module):
        def __init__(self):
            super().__init__()
            pair = [SymConv1d(n_bands + 2, hidden, 5, padding=2), nn.ReLU()]
            for _ in range(layers - 1):
                pair += [SymConv1d(hidden, hidden, 5, padding=2), nn.ReLU()]
            self.pair = nn.Sequential(*pair, nn.Conv1d(hidden, width, 1))
            hd = [nn.Conv1d((1 + n_ctx) * width, head, 1), nn.ReLU()]
            for _ in range(head_layers - 1):
                hd += [nn.Conv1d(head, head, 1), nn.ReLU()]
            self.head = nn.Sequential(*hd, nn.Conv1d(head, 1, 1))

        def forward(self, r, geo, lo, frac, mask):
            n, p, _, L = r.shape
            g = lo.shape[-1]
            h = self.pair(torch.cat([r, geo], dim=2).reshape(n * p, n_bands + 2, L)).reshape(n, p, width, L)
            idx = lo[:, :, None, :].expand(n, p, width, g)
            a = torch.gather(h, 3, idx)
            b = torch.gather(h, 3, idx + 1)
            s = a + frac[:, :, None, :] * (b - a)                                    # (N, P, D, G)
            s = (s * mask[:, :, None, None]).sum(1) / mask.sum(1).clamp_min(1.0)[:, None, None]
            ctx = [s.amax(dim=2, keepdim=True).expand_as(s)]
            if n_ctx == 2:
                ctx.append(s.mean(dim=2, keepdim=True).expand_as(s))
            return self.head(torch.cat([s, *ctx], dim=1))[:, 0]

    return LearnedSrp()


def network_from(meta: dict, state: dict):
    arch = arch_of(meta)
    model = build_network(**arch)
    model.load_state_dict(state)
    model.eval()
    return model


def grow_into(model, meta: dict, state: dict) -> None:
    """Load a smaller universal network (``meta``, ``state``) into ``model``, a wider or deeper one
    with the same sub-bands, so that ``model`` gives the very same output: the old channels keep
    their weights, the new channels keep their fresh random inputs but nothing reads them yet (zero
    weights from them into old channels), and an added layer starts as the identity (its inputs are
    ReLU outputs, which the identity and a ReLU leave as they are). Training then grows from the
    smaller network's accuracy instead of from nothing."""
    from doascope.models.weight_files import import_torch

    torch = import_torch()
    old_arch = arch_of(meta)
    old = network_from(meta, state)
    new_pair = [m for m in model.pair if isinstance(m, torch.nn.Conv1d)]
    new_head = [m for m in model.head if isinstance(m, torch.nn.Conv1d)]
    old_pair = [m for m in old.pair if isinstance(m, torch.nn.Conv1d)]
    old_head = [m for m in old.head if isinstance(m, torch.nn.Conv1d)]
    n_ctx_old = 1 + (old_arch["context"] == "max+mean")
    layer_pairs = [*zip(new_pair, old_pair[:-1]), (new_pair[-1], old_pair[-1]), *zip(new_head, old_head[:-1])]
    narrower = any(a.out_channels < b.out_channels for a, b in layer_pairs) \
        or new_head[0].in_channels < (1 + n_ctx_old) * new_pair[-1].out_channels
    if new_pair[0].in_channels != old_pair[0].in_channels or len(new_pair) < len(old_pair) \
            or len(new_head) < len(old_head) or narrower:
        raise ParameterError("the network to grow into must have the same sub-bands and at least the layers, "
                             "channels and context of the one it starts from")
    width_old, width_new = old_pair[-1].out_channels, new_pair[-1].out_channels

    def head_columns(n_in):
        """The new head's input column of each old one: [s, max(, mean)] blocks of width channels."""
        return [blk * width_new + c for blk in range(n_in // width_old) for c in range(width_old)]

    def copy(dst, src, cols=None):
        w, b = dst.weight, dst.bias
        o, i = src.weight.shape[:2]
        cols = list(range(i)) if cols is None else cols
        w[:o] = 0.0
        w[:o, cols] = src.weight
        b[:o] = src.bias

    def identity(dst, n):
        w = dst.weight
        w[:n] = 0.0
        w[torch.arange(n), torch.arange(n), w.shape[-1] // 2] = 1.0
        dst.bias[:n] = 0.0

    def grow(new, old, first_cols=None):
        """A stack of layers: the first, the old middle ones, identities for the added ones, the last."""
        copy(new[0], old[0], first_cols)
        for k, dst in enumerate(new[1:-1]):
            if k < len(old) - 2:
                copy(dst, old[1 + k])
            else:
                identity(dst, old[-2].out_channels)
        copy(new[-1], old[-1])

    with torch.no_grad():
        grow(new_pair, old_pair)
        # the head's first layer reads [s, context] in blocks of width channels
        grow(new_head, old_head, head_columns((1 + n_ctx_old) * width_old))


def is_universal(meta: dict) -> bool:
    return meta.get("kind") == "universal"


class UniversalDnn(Estimator):
    """The universal network on any array, rate and grid (``--method dnn`` where no per-array
    weights match; ``weights`` names another universal weight file, e.g. one fine-tuned by
    ``doascope train --from universal``)."""

    absolute_scale = True
    name = "dnn"

    def __init__(self, positions, *, weights=None, symmetrize: bool = True, **kw):
        super().__init__(positions, **kw)
        from doascope.models.weight_files import import_torch, load_weights

        path = UNIVERSAL_WEIGHTS if weights is None else Path(weights)
        meta, state = load_weights(path)
        if not is_universal(meta):
            raise ParameterError(f"{path.name} holds a per-array network, not the universal one")
        self.meta = meta
        self.weights_path = path
        arch = arch_of(meta)
        nb = arch["n_bands"]
        self.features = UniversalFeatures(self.positions, fs=self.fs, nfft=self.nfft, c=self.c, n_bands=nb)
        self.bins = self.features.gcc.bins            # the network's band, whatever band was asked for
        self._torch = torch = import_torch()
        self.model = network_from(meta, state)
        # Only the lags this array's pairs can read matter, plus the lag convolutions' reach (2 lags
        # per 5-tap layer) and the interpolation's next lag: the network runs on that window of the
        # lag axis and gives the very numbers of the whole axis (a small array reads a third).
        m = int(np.ceil(self.features.dist.max() / self.c / LAG_STEP))
        w = min(N_HALF, m + lag_reach(arch) + 1)
        lags = slice(N_HALF - w, N_HALF + w + 1)
        E = self.features._E
        self._E = np.ascontiguousarray(E.reshape(E.shape[0], nb, LAGS.size)[:, :, lags].reshape(E.shape[0], -1))
        self._n_lags = 2 * w + 1
        self._geo = torch.from_numpy(np.ascontiguousarray(self.features.geometry()[:, :, lags]))
        lo, frac = self.features.sampling(self.grid.vectors)
        self._reader = reading_matrix(lo - (N_HALF - w), frac, self._n_lags)
        self._layers = self._unrolled(torch, nb)

    def _unrolled(self, torch, nb: int):
        """The network's layers as plain tensors for :meth:`spectra`: the lag kernels made symmetric
        once; the first layer's part on the (constant) pair geometry computed once per pair, as a bias;
        the head's first layer split into its part on each direction and on the context."""
        F = torch.nn.functional
        convs = [m for m in self.model.pair if isinstance(m, torch.nn.Conv1d)]
        heads = [m for m in self.model.head if isinstance(m, torch.nn.Conv1d)]
        conv1, last = convs[0], convs[-1]
        width = last.out_channels

        def sym(c):
            return (0.5 * (c.weight + c.weight.flip(-1))).contiguous()

        with torch.inference_mode():
            w1 = sym(conv1)
            geo_bias = F.conv1d(self._geo, w1[:, nb:].contiguous(), conv1.bias, padding=conv1.padding)
            h1 = heads[0].weight[:, :, 0]
            return {"w1": w1[:, :nb].contiguous(), "pad1": conv1.padding, "geo_bias": geo_bias,
                    "mid": [(sym(c), c.bias, c.padding) for c in convs[1:-1]], "w3": last.weight, "b3": last.bias,
                    "h_s": heads[0].weight[:, :width].contiguous(), "h_max": h1[:, width:2 * width].contiguous(),
                    "h_mean": h1[:, 2 * width:].contiguous() if h1.shape[1] > 2 * width else None,
                    "h_b": heads[0].bias, "head": [(c.weight, c.bias) for c in heads[1:]]}

    def _statistics(self, X):
        return self.features.cross_spectra(X)

    def spectrum_from(self, stats):
        return self.spectra(np.asarray(stats)[None])[0]

    def spectra(self, C) -> np.ndarray:
        """(S, points) float32 spectra of S sets of cross-spectra (S, pairs, B): the network's forward
        pass for one array: the pair convolutions, then reading and averaging over pairs as one sparse
        product (the same numbers as the batched gather of training, at a fraction of its cost), then
        the head."""
        torch, F, t = self._torch, self._torch.nn.functional, self._layers
        C = np.ascontiguousarray(C, dtype=np.complex64)
        n, p = C.shape[:2]
        L = self._n_lags
        r = torch.from_numpy((C.view(np.float32) @ self._E).reshape(n * p, -1, L))
        with torch.inference_mode():
            h = F.conv1d(r, t["w1"], padding=t["pad1"]).view(n, p, -1, L) + t["geo_bias"]
            h = h.relu_().view(n * p, -1, L)
            for w, b, pad in t["mid"]:
                h = F.conv1d(h, w, b, padding=pad).relu_()
            h = F.conv1d(h, t["w3"], t["b3"]).view(n, p, -1, L)                     # (S, P, D, L)
            d = h.shape[2]
            hv = h.numpy().transpose(1, 3, 0, 2).reshape(p * L, n * d)               # (P*L, S*D)
            s = (self._reader @ hv).reshape(-1, n, d).transpose(1, 2, 0)             # (S, D, G)
            s = torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32))
            ctx = s.amax(dim=2) @ t["h_max"].T + t["h_b"]                             # (S, head)
            if t["h_mean"] is not None:
                ctx = ctx + s.mean(dim=2) @ t["h_mean"].T
            z = (F.conv1d(s, t["h_s"]) + ctx[:, :, None]).relu_()
            for w, b in t["head"][:-1]:
                z = F.conv1d(z, w, b).relu_()
            y = torch.sigmoid(F.conv1d(z, *t["head"][-1]))[:, 0]
        return (y.numpy() ** OUTPUT_POWER).astype(np.float32)

    def frame_peaks(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Each STFT frame's own maximum of the network's spectrum: (frames,) grid indices and values,
        the frame votes that tell simultaneous talkers apart (see doascope.dsp.extraction), as
        srp-phat's frames vote with their own SRP maxima."""
        X = as_stft(X, mics=self.n_mics)
        return self.frame_peaks_from_cross(frame_phat_cross(X, self.bins, self.features.pairs))

    def frame_peaks_from_cross(self, C) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`frame_peaks`, from each frame's PHAT cross-spectra (frames, pairs, B)."""
        s = self.spectra(C)
        points = np.argmax(s, axis=1)
        return points, s[np.arange(s.shape[0]), points]

    def candidates(self, stats, spectrum, n_sources, *, min_separation=20.0, votes=None,
                   extraction=DEFAULT_EXTRACTION, memory=None):
        """One source: the spectrum's peak. Several: by frame votes where the localizer gives them
        (``extraction="votes"``, the default), as srp-phat does; otherwise the spectrum's peaks.
        (``memory`` comes with per-bin votes only, which this network does not cast.)"""
        if extraction not in EXTRACTIONS:
            raise ParameterError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {extraction!r}")
        peaks = super().candidates(stats, spectrum, n_sources, min_separation=min_separation)
        if n_sources <= 1 or extraction != "votes" or votes is None or not peaks:
            return peaks
        return vote_extraction(votes, spectrum, peaks, self.grid, n_sources, min_separation=min_separation)


def reading_matrix(lo, frac, n_lags: int = LAGS.size):
    """Sparse (G, P * L) matrix whose product with per-pair, per-lag values (P * L, D) gives, for
    each direction, the mean over pairs of the values read at its lags (linear interpolation);
    L = ``n_lags``, the lags the values are given at (``lo`` counts from the first)."""
    from scipy.sparse import csr_matrix

    p, g = lo.shape
    L = int(n_lags)
    cols = (np.arange(p)[:, None] * L + lo)                                          # (P, G)
    rows = np.broadcast_to(np.arange(g)[None, :], (p, g))
    data = np.concatenate([(1.0 - frac).ravel(), frac.ravel()]) / p
    return csr_matrix((data.astype(np.float32), (np.concatenate([rows.ravel(), rows.ravel()]),
                                                 np.concatenate([cols.ravel(), cols.ravel() + 1]))), shape=(g, p * L))
