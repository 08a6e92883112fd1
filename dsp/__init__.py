"""doascope.dsp: pure numeric localization kernels (no I/O, threads, Qt or torch).

Main entry points: :func:`stft`, :func:`make_estimator` (methods in :data:`ESTIMATORS`),
:func:`find_peaks`, grids (:func:`circle_grid`, :func:`sphere_grid`, :func:`default_grid`).
"""

from doascope.dsp.estimators import (
    DEFAULT_BAND,
    ESTIMATORS,
    Estimator,
    available_methods,
    make_estimator,
    register,
)
from doascope.dsp.dpd import dpd_weights
from doascope.dsp.gcc import GccPhat, mic_pairs, pair_tdoas, phat_cross_spectra
from doascope.dsp.grids import (
    Grid,
    angular_distance,
    array_geometry,
    circle_grid,
    default_grid,
    directions,
    sphere_grid,
    unit_vectors,
)
from doascope.dsp.localizer import BlockResult, Localizer
from doascope.dsp.activity import ActivityGate, energy_coherence
from doascope.dsp.music import covariances, music_spectrum, steering
from doascope.dsp.peaks import Peak, find_peaks
from doascope.dsp.srp import srp_from_correlations
from doascope.dsp.stft import frequencies, n_frames, stft

__all__ = [
    "ActivityGate",
    "BlockResult",
    "DEFAULT_BAND",
    "ESTIMATORS",
    "Estimator",
    "GccPhat",
    "Grid",
    "Localizer",
    "Peak",
    "angular_distance",
    "array_geometry",
    "available_methods",
    "circle_grid",
    "covariances",
    "default_grid",
    "directions",
    "dpd_weights",
    "energy_coherence",
    "find_peaks",
    "frequencies",
    "make_estimator",
    "mic_pairs",
    "music_spectrum",
    "n_frames",
    "pair_tdoas",
    "phat_cross_spectra",
    "register",
    "sphere_grid",
    "srp_from_correlations",
    "steering",
    "stft",
    "unit_vectors",
]
