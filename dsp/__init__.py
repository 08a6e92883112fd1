"""doascope.dsp: pure numeric localization kernels (no I/O, threads, Qt or torch).

Main entry points: :func:`stft`, :func:`make_estimator` (methods in :data:`ESTIMATORS`),
:func:`find_peaks`, grids (:func:`circle_grid`, :func:`sphere_grid`, :func:`default_grid`).
"""

# Submodules load on first use (PEP 562): each compiled kernel costs start-up time, and a
# command that runs SRP-PHAT need not load the MUSIC or DPD kernels.
import importlib

# Eager: the function shares its module's name, and the module must be bound first so that the
# function, not the module, is what `doascope.dsp.stft` means. It holds no compiled kernel.
from doascope.dsp.stft import frequencies, n_frames, stft  # noqa: F401  (exported)

_EXPORTS = {
    "ActivityGate": "activity",
    "BlockResult": "localizer",
    "DEFAULT_BAND": "estimators",
    "ESTIMATORS": "estimators",
    "Estimator": "estimators",
    "GccPhat": "gcc",
    "PositionLocalizer": "position",
    "SpatialSrp": "spatial_srp",
    "Grid": "grids",
    "Localizer": "localizer",
    "Peak": "peaks",
    "angular_distance": "grids",
    "array_geometry": "grids",
    "available_methods": "estimators",
    "circle_grid": "grids",
    "channel_levels": "levels",
    "covariances": "music",
    "default_grid": "grids",
    "directions": "grids",
    "dpd_weights": "dpd",
    "energy_coherence": "activity",
    "find_peaks": "peaks",
    "make_estimator": "estimators",
    "mic_pairs": "gcc",
    "music_spectrum": "music",
    "pair_tdoas": "gcc",
    "phat_cross_spectra": "gcc",
    "register": "estimators",
    "sphere_grid": "grids",
    "srp_from_correlations": "srp",
    "steering": "music",
    "unit_vectors": "grids",
}

__all__ = sorted([*_EXPORTS, "frequencies", "n_frames", "stft", "warmup"])


def __getattr__(name):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def warmup() -> None:
    """Load (compiling and caching on first use after install) every Numba kernel."""
    # srp_coarse: the large-grid kernels, imported only when a localizer on such a grid is built
    for module in sorted(set(_EXPORTS.values()) | {"metrics", "srp_coarse"}):
        importlib.import_module(f"{__name__}.{module}")
    importlib.import_module(f"{__name__}.srp").parallel_rows()  # made on first need, not at import


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
