"""Network inputs from dsp: the PHAT cross-spectra of all microphone pairs, in one of two forms.

Both start from a block's PHAT cross-spectra of every pair (the same statistics the classical
estimators average over blocks, so the engine's temporal integration applies unchanged):

- ``kind="gcc"``: correlations at ``n_lags`` lags spanning +-``lag_margin`` times the array's
  largest travel time (in ``n_bands`` log-spaced sub-bands), scaled so the largest magnitude is 1.
  Scaling removes the coherence level and keeps the shape (He et al. 2018).
- ``kind="phase"``: the cross-spectra themselves, real and imaginary parts per frequency bin
  (averaged over groups of ``pool`` adjacent bins), after Chakrabarty & Habets' phase map. Each bin
  keeps its own phase and coherence (the frame-averaged unit phasors shrink where sources or
  reflections mix), which is what lets a network separate two talkers the way subspace methods do,
  where the broadband correlation has already summed them together.

No torch here: the features are plain numpy, so the training cache and the estimator share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.dsp.gcc import GccPhat

#: bumped whenever the features change meaning: weights record it and are refused on a mismatch
FEATURE_VERSION = 1
FEATURE_KINDS = ("gcc", "phase")


@dataclass(frozen=True)
class FeatureSpec:
    """What the network sees; stored in the weight file."""

    fs: int
    nfft: int
    band: tuple[float, float]
    n_lags: int = 51
    lag_margin: float = 1.15
    n_bands: int = 1                 # sub-bands (log-spaced), each with its own correlation
    kind: str = "gcc"                # "gcc" or "phase" (see the module docstring)
    pool: int = 1                    # phase: adjacent bins averaged into one feature
    per_frame: bool = False          # features of each STFT frame, not of the block's average

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise ParameterError(f"unknown feature kind {self.kind!r}: use one of {', '.join(FEATURE_KINDS)}")
        if self.pool < 1 or self.n_bands < 1 or self.n_lags < 2:
            raise ParameterError(f"pool and n_bands must be >= 1 and n_lags >= 2, got {self.pool}, "
                                 f"{self.n_bands}, {self.n_lags}")

    def as_dict(self) -> dict:
        return {"fs": self.fs, "nfft": self.nfft, "band": list(self.band), "n_lags": self.n_lags,
                "lag_margin": self.lag_margin, "n_bands": self.n_bands, "kind": self.kind, "pool": self.pool,
                "per_frame": self.per_frame, "version": FEATURE_VERSION}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        if int(d.get("version", -1)) != FEATURE_VERSION:
            raise ParameterError(f"the weights use feature version {d.get('version')}, this doascope "
                                 f"computes version {FEATURE_VERSION}: retrain them with `doascope train`")
        return cls(int(d["fs"]), int(d["nfft"]), (float(d["band"][0]), float(d["band"][1])),
                   int(d["n_lags"]), float(d["lag_margin"]), int(d.get("n_bands", 1)),
                   str(d.get("kind", "gcc")), int(d.get("pool", 1)), bool(d.get("per_frame", False)))


def make_features(positions, spec: FeatureSpec, *, nfft: int | None = None, c: float = SPEED_OF_SOUND):
    """The feature computer of ``spec.kind`` for an array."""
    cls = PhaseFeatures if spec.kind == "phase" else GccFeatures
    return cls(positions, spec, nfft=nfft, c=c)


class PairFeatures:
    """Features of the PHAT cross-spectra of all pairs; subclasses say how.

    ``cross_spectra(X)`` takes an STFT block (mics, freqs, frames) complex64 of ``nfft`` and returns
    (pairs, B) complex64; ``features(C)`` maps cross-spectra, possibly averaged over blocks, or a
    batch (..., pairs, B) of them, to features (..., size) float32; ``relabel(perm)`` gives the
    (index, sign) with which ``features[..., index] * sign`` are the features after relabelling mic
    i as perm[i] (see :func:`symmetries`; sign is None where no sign changes).
    """

    def __init__(self, positions, spec: FeatureSpec, *, nfft: int | None = None, c: float = SPEED_OF_SOUND):
        self.spec = spec
        self.gcc = GccPhat(positions, fs=spec.fs, nfft=nfft or spec.nfft, band=spec.band, c=c)

    @property
    def n_pairs(self) -> int:
        return self.gcc.pairs.shape[0]

    def cross_spectra(self, X) -> np.ndarray:
        return self.gcc.cross_spectra(X)

    def frame_cross_spectra(self, X) -> np.ndarray:
        """(frames, pairs, B) complex64 PHAT cross-spectra of each frame of a block (their mean over
        frames is ``cross_spectra(X)``)."""
        Y = np.asarray(X)[:, self.gcc.bins, :]
        Y = Y / (np.abs(Y) + np.float32(1e-12))
        i, j = self.gcc.pairs[:, 0], self.gcc.pairs[:, 1]
        return np.ascontiguousarray((Y[i] * np.conj(Y[j])).transpose(2, 0, 1)).astype(np.complex64)


class PhaseFeatures(PairFeatures):
    """Real and imaginary parts of each pair's cross-spectrum per (pooled) bin: (pairs * 2 * K,)."""

    def __init__(self, positions, spec: FeatureSpec, *, nfft: int | None = None, c: float = SPEED_OF_SOUND):
        super().__init__(positions, spec, nfft=nfft, c=c)
        n_bins = self.gcc.bins.size
        self.n_cols = -(-n_bins // spec.pool)
        group = np.arange(n_bins) // spec.pool
        P = np.zeros((n_bins, self.n_cols), np.float32)
        P[np.arange(n_bins), group] = 1.0
        self._P = (P / P.sum(axis=0, keepdims=True)).astype(np.complex64)   # (B, K) bin averaging

    @property
    def size(self) -> int:
        return self.n_pairs * 2 * self.n_cols

    def features(self, C) -> np.ndarray:
        z = np.asarray(C) @ self._P if self.spec.pool > 1 else np.asarray(C)   # (..., P, K)
        r = np.stack([z.real, z.imag], axis=-2).astype(np.float32)          # (..., P, 2, K)
        return r.reshape(*r.shape[:-3], -1)

    def relabel(self, perm):
        """A pair in the other order has the conjugate cross-spectrum: its imaginary part flips."""
        idx, flipped = _pair_relabel(perm)
        k = self.n_cols
        block = np.arange(2 * k)
        index = np.concatenate([p * 2 * k + block for p in idx])
        sign = np.concatenate([np.r_[np.ones(k), (-1.0 if f else 1.0) * np.ones(k)] for f in flipped])
        return index, sign.astype(np.float32)


class GccFeatures(PairFeatures):
    """GCC-PHAT features (pairs * n_bands * n_lags,) float32 of an array for one :class:`FeatureSpec`."""

    def __init__(self, positions, spec: FeatureSpec, *, nfft: int | None = None, c: float = SPEED_OF_SOUND):
        super().__init__(positions, spec, nfft=nfft, c=c)
        pos = self.gcc.positions
        pairs = self.gcc.pairs
        tmax = np.linalg.norm(pos[pairs[:, 1]] - pos[pairs[:, 0]], axis=1).max() / c
        self.lags = np.linspace(-1, 1, spec.n_lags) * spec.lag_margin * tmax  # (L,) s
        # exp(+j 2 pi f tau) / B as in GccPhat, on our own coarse lag window, one block of columns
        # per sub-band: (B, K * L). Sub-bands let the network weigh the bands reverberation spares.
        f = self.gcc.freqs
        edges = np.geomspace(f[0], f[-1] * (1 + 1e-9), spec.n_bands + 1)
        band_of = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, spec.n_bands - 1)
        E = np.zeros((f.size, spec.n_bands, spec.n_lags), np.complex128)
        for k in range(spec.n_bands):
            sel = band_of == k
            E[sel, k, :] = np.exp(2j * np.pi * np.outer(f[sel], self.lags)) / max(1, sel.sum())
        self._E = E.reshape(f.size, -1).astype(np.complex64)

    @property
    def size(self) -> int:
        return self.n_pairs * self.spec.n_bands * self.spec.n_lags

    def relabel(self, perm):
        return feature_permutation(perm, self.spec.n_lags, self.spec.n_bands), None

    def features(self, C) -> np.ndarray:
        r = (np.asarray(C) @ self._E).real.astype(np.float32)  # (..., P, K * L)
        r = r.reshape(*r.shape[:-2], self.n_pairs, self.spec.n_bands, self.spec.n_lags)
        scale = np.abs(r).max(axis=(-3, -1), keepdims=True)   # per sub-band, over pairs and lags
        return (r / np.maximum(scale, 1e-6)).reshape(*r.shape[:-3], -1).astype(np.float32)


def symmetries(positions, *, tol: float = 1e-3) -> list[tuple[float, bool, np.ndarray]]:
    """The rotations (and mirror images about the x axis) about z that map the array onto itself.

    Returns (angle degrees, mirrored, perm) with R p_i = p_perm[i] within ``tol`` metres, where R
    mirrors y -> -y first when ``mirrored``, then rotates by the angle. Always holds the identity.
    Training uses them: a scene rotated by R is the same scene with the mics relabelled.
    """
    pos = np.asarray(positions, dtype=np.float64)
    pos = pos - pos.mean(axis=0)
    out = []
    for mirrored in (False, True):
        p = pos * np.array([1.0, -1.0, 1.0]) if mirrored else pos
        found = []
        for angle in np.arange(0.0, 360.0, 0.5):
            a = np.radians(angle)
            rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
            d = np.linalg.norm((p @ rot.T)[:, None, :] - pos[None, :, :], axis=2)
            perm = d.argmin(axis=1)
            err = d[np.arange(len(pos)), perm].max()
            if err < tol and len(set(perm.tolist())) == len(pos):
                found.append((err, float(angle), perm))
        # Tables rounded to the millimetre pass at several neighbouring angles: keep the best of each.
        for err, angle, perm in sorted(found, key=lambda f: f[0]):
            if all(abs((angle - a + 180) % 360 - 180) > 5 for a, m, _ in out if m == mirrored):
                out.append((angle, mirrored, perm))
    return sorted(out, key=lambda o: (o[1], o[0]))


def feature_permutation(perm: np.ndarray, n_lags: int, n_bands: int = 1) -> np.ndarray:
    """Index array f' = f[idx] of the features after relabelling mic i as perm[i] (see symmetries).

    The correlation of the new pair (a, b) is that of the old pair (perm^-1 a, perm^-1 b), with
    its lags reversed when the old pair is in the other order (r_ji(tau) = r_ij(-tau)).
    """
    block = np.arange(n_bands * n_lags).reshape(n_bands, n_lags)   # one pair's features: (K, L)
    width = n_bands * n_lags
    idx, flipped = _pair_relabel(perm)
    return np.concatenate([p * width + (block[:, ::-1] if f else block).ravel() for p, f in zip(idx, flipped)])


def _pair_relabel(perm) -> tuple[list[int], list[bool]]:
    """For each pair (a, b), a < b, after relabelling mic i as perm[i]: the index of the old pair it
    was, and whether the old pair runs the other way (its correlation reversed, its spectrum conjugate)."""
    n = len(perm)
    inv = np.empty(n, dtype=np.int64)
    inv[np.asarray(perm)] = np.arange(n)
    i, j = np.triu_indices(n, k=1)
    index = {(int(a), int(b)): p for p, (a, b) in enumerate(zip(i, j))}
    idx, flipped = [], []
    for a, b in zip(i, j):
        oa, ob = int(inv[a]), int(inv[b])
        idx.append(index[(min(oa, ob), max(oa, ob))])
        flipped.append(oa > ob)
    return idx, flipped
