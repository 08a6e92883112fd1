"""The DNN estimator: an MLP on PHAT cross-spectrum features with a Gaussian-coded azimuth output.

The network maps the features of :mod:`doascope.models.features` (per-bin cross-spectra, or GCC-PHAT
on a fixed lag window, of all pairs) to ``N_AZIMUTH`` sigmoid outputs, one per degree of azimuth; it was trained to output
a Gaussian bump (``sigma`` degrees) at every active source, so the standard peak picking finds
several sources and an unknown count (He et al. 2018; Adavanne et al. 2018). Its statistics are
the pairs' PHAT cross-spectra, so the engine's temporal integration works as for SRP-PHAT.

Weights are small ``.pt`` files made by ``doascope train``; the shipped ones live in
``models/weights/<profile id>.pt`` and are found by matching the array geometry; every other
array (and rate, FFT size or grid they do not fit) gets the universal network. torch is
imported only when a network is built, so the classical methods never load it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from doascope import ParameterError
from doascope.dsp.estimators import Estimator, register
from doascope.models.features import FeatureSpec, make_features, symmetries
from doascope.models.weight_files import (  # noqa: F401  (the weight files' helpers, used through this module too)
    WEIGHT_FORMAT, WEIGHTS_DIR, import_torch, load_weights, save_weights)

N_AZIMUTH = 360             # output bins, one per degree
GEOMETRY_TOL_M = 1e-3       # positions within this count as the same array


def build_network(n_in: int, hidden=(512, 512), n_out: int = N_AZIMUTH, dropout: float = 0.1):
    """The MLP: features (batch, n_in) -> logits (batch, n_out)."""
    torch = import_torch()
    nn = torch.nn
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def same_geometry(a, b, tol: float = GEOMETRY_TOL_M) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))


def shipped_profile_for(positions) -> str | None:
    """Id of the shipped hardware profile whose microphone positions match, or None."""
    from doascope.hardware_profiles import list_profiles

    for p in list_profiles():
        if same_geometry(p.positions, positions):
            return p.id
    return None


def find_weights(positions) -> Path:
    """The shipped weight file for an array geometry, or a ParameterError saying what to run."""
    pid = shipped_profile_for(positions)
    if pid is None:
        raise ParameterError("no shipped DNN weights match this array's geometry: train them with "
                             "`doascope train --profile P --out W.pt` and pass --weights W.pt")
    path = WEIGHTS_DIR / f"{pid}.pt"
    if not path.is_file():
        raise ParameterError(f"no DNN weights are shipped for profile {pid!r}: train them with "
                             f"`doascope train --profile {pid} --out {pid}.pt` and pass --weights {pid}.pt")
    return path


def load_network(meta: dict, state: dict):
    model = build_network(int(meta["n_features"]), tuple(meta["hidden"]), int(meta["n_out"]))
    model.load_state_dict(state)
    model.eval()
    return model


def _interpolation(azimuth, n_out: int):
    """(lo, hi, frac) to read n_out bins of 360/n_out degrees linearly at the given azimuths."""
    pos = (np.asarray(azimuth, dtype=np.float64) % 360.0) * n_out / 360.0
    lo = np.floor(pos).astype(np.int64) % n_out
    return lo, (lo + 1) % n_out, (pos - np.floor(pos)).astype(np.float32)


UNIVERSAL = "universal"      # --weights universal: the universal network even where per-array weights ship


def _universal_fits(positions, weights, kw) -> bool:
    """Whether ``dnn`` should run the universal network: asked for by name or by a universal weight
    file, or no shipped per-array network fits this array, rate, FFT size and grid."""
    from doascope.dsp.grids import default_grid

    if weights is not None:
        if str(weights) == UNIVERSAL:
            return True
        import_torch()
        try:
            meta, _ = load_weights(weights)
        except ParameterError:
            return False     # the per-array path reports the unreadable file in its own words
        return meta.get("kind") == UNIVERSAL
    pid = shipped_profile_for(positions)
    if pid is None or not (WEIGHTS_DIR / f"{pid}.pt").is_file():
        return True
    grid = kw.get("grid")
    if (grid if grid is not None else default_grid(positions)).kind != "circle":
        return True
    meta, _ = load_weights(WEIGHTS_DIR / f"{pid}.pt")
    spec = meta["features"]
    nfft = int(kw.get("nfft", 512))
    return round(float(kw["fs"])) != int(spec["fs"]) or (spec.get("kind") == "phase" and nfft != int(spec["nfft"]))


@register("dnn")
class DnnEstimator(Estimator):
    """A network trained on simulated rooms for one array (see ``doascope train``), or, where none
    fits, the universal network (see :mod:`doascope.models.universal`), which works on any array,
    rate and grid.

    Extra options: ``weights`` = path of a weight file (per-array or universal), or "universal";
    None takes the shipped per-array weights where they match the geometry, rate and FFT size (and the
    grid is a circle), else the shipped universal network. ``symmetrize`` (default True) averages a block network's answers over the array's
    symmetries (8 forward rows for a square, 12 for a hexagon; one without); a per-frame network
    averages over the block's frames instead. Circle grids only: the
    network outputs azimuth.
    """

    absolute_scale = True

    def __new__(cls, positions, *, weights=None, **kw):
        # One method name for both networks: the per-array weights where they fit, else the universal one.
        if cls is DnnEstimator and _universal_fits(positions, weights, kw):
            from doascope.models.universal import UniversalDnn

            return UniversalDnn(positions, weights=None if weights == UNIVERSAL else weights, **kw)
        return super().__new__(cls)

    def __init__(self, positions, *, weights=None, symmetrize: bool = True, **kw):
        super().__init__(positions, **kw)
        if self.grid.kind != "circle":
            raise ParameterError("the dnn method estimates azimuth only: use a circle grid (--grid circle)")
        path = find_weights(self.positions) if weights is None else Path(weights)
        meta, state = load_weights(path)
        pid = meta.get("profile", "P")
        if not same_geometry(meta["positions"], self.positions):
            raise ParameterError(f"{path.name} was trained for another array geometry ({pid}); train weights "
                                 f"for this one with `doascope train --profile P --out W.pt`")
        spec = FeatureSpec.from_dict(meta["features"])
        if round(self.fs) != spec.fs:
            raise ParameterError(f"{path.name} was trained at {spec.fs} Hz but the audio is at {self.fs:g} Hz: "
                                 f"resample it, or train weights with `doascope train --profile {pid}`")
        if spec.kind == "phase" and self.nfft != spec.nfft:
            raise ParameterError(f"{path.name} reads spectra of {spec.nfft} bins' FFTs but the STFT size is "
                                 f"{self.nfft}: use --nfft {spec.nfft}")
        self.meta = meta
        self.weights_path = path
        self.features = make_features(self.positions, spec, nfft=self.nfft, c=self.c)
        # Cross-spectra live on the network's band, whatever band the caller asked for.
        self.bins = self.features.gcc.bins
        self.model = load_network(meta, state)
        self._torch = import_torch()
        # Output bin k is azimuth k * 360 / n_out: interpolate linearly onto the grid's azimuths.
        n_out = int(meta["n_out"])
        self._lo, self._hi, self._frac = _interpolation(np.asarray(self.grid.azimuth), n_out)
        # Symmetry averaging: the network sees the block once per symmetry of the array (the mics
        # relabelled as if the scene were turned or mirrored, as in training) and each answer is
        # turned back, so the output is exactly as symmetric as the array, at G forward rows.
        group = symmetries(self.positions) if symmetrize else [(0.0, False, np.arange(len(self.positions)))]
        rel = [self.features.relabel(perm) for _, _, perm in group]
        self._index = np.stack([i for i, _ in rel])
        self._sign = np.stack([np.ones(len(i), np.float32) if sg is None else sg for i, sg in rel])
        out_az = np.arange(n_out) * (360.0 / n_out)
        maps = [_interpolation((-out_az if m else out_az) + angle, n_out) for angle, m, _ in group]
        self._g_lo, self._g_hi, self._g_frac = (np.stack(a) for a in zip(*maps))
        self._rows = np.arange(len(group))[:, None]

    def _statistics(self, X):
        if self.features.spec.per_frame:
            # A frame network's statistics are its outputs averaged over the block's frames, so
            # temporal integration averages the network's answers over blocks.
            return self._forward(self.features.features(self.features.frame_cross_spectra(X)), symmetrize=False)
        return self.features.cross_spectra(X)

    def _forward(self, f, symmetrize: bool) -> np.ndarray:
        """Mean network output (n_out,) float32 over rows of features f (rows, F), each also seen
        under every symmetry of the array when ``symmetrize``."""
        if symmetrize:
            f = f[:, self._index] * self._sign                                # (rows, G, F)
        with self._torch.inference_mode():
            y = self._torch.sigmoid(self.model(self._torch.from_numpy(np.ascontiguousarray(f)))).numpy()
        if symmetrize:
            y = (1.0 - self._g_frac) * y[:, self._rows, self._g_lo] + self._g_frac * y[:, self._rows, self._g_hi]
            y = y.reshape(-1, y.shape[-1])
        return y.mean(axis=0).astype(np.float32)

    def probabilities(self, stats) -> np.ndarray:
        """Network output (n_out,) float32 in [0, 1], one bin per 360/n_out degrees, averaged over
        the array's symmetries (over frames too, for a per-frame network)."""
        if self.features.spec.per_frame:
            return np.asarray(stats, dtype=np.float32)
        return self._forward(self.features.features(stats)[None, :], symmetrize=True)

    def spectrum_from(self, stats):
        p = self.probabilities(stats)
        return ((1.0 - self._frac) * p[self._lo] + self._frac * p[self._hi]).astype(np.float32)
