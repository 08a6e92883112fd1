"""The one place where analysis settings become a localizer: :func:`build_localizer` turns an
:class:`~doascope.config.AnalysisConfig` (defaults of its mode applied for the rate) and a
profile into the DOA :class:`~doascope.dsp.localizer.Localizer` or, in position mode, the
:class:`~doascope.dsp.position.PositionLocalizer`. ``doascope locate``, ``batch``, ``eval``, the
live engine (CLI, GUI, service), the bench and the Python API all call it, so they run the same
analysis from the same settings.
"""

from __future__ import annotations

import warnings

from doascope import DoascopeWarning, ParameterError
from doascope.config import AnalysisConfig


def doa_advice(cfg: AnalysisConfig, profile) -> list[str]:
    """Sentences about DOA settings that run but give poor answers for this profile."""
    out = []
    if profile.room is not None:
        out.append(f"profile {profile.id} has microphones spread around a room: directions from their centre mean "
                   "little (elevations far off); use --mode position for x, y, z in metres")
    if cfg.grid == "sphere" and profile.geometry == "planar":
        out.append(f"a sphere grid on the planar array {profile.id}: it cannot tell up from down and resolves "
                   "elevation poorly, so elevations can be tens of degrees off and azimuths less reliable; "
                   "--grid auto (an azimuth circle) is the better choice")
    return out


def build_localizer(cfg: AnalysisConfig, profile, fs: int, *, step: int | None = None):
    """The Localizer (or, in position mode, PositionLocalizer) ``cfg`` describes for ``profile``
    (a doascope.hardware_profiles.Profile) at ``fs`` Hz, producing one result every ``step``
    samples (default: one block, blocks not overlapping).

    Everything the first block needs is loaded here, not when it arrives: the Numba kernels (their
    explicit signatures load them from the on-disk cache as their modules are imported) and the FFT.
    """
    cfg.check_rate(fs, profile=profile.id)
    r = cfg.resolved(fs)
    _prepare_stft(r.nfft, r.hop)
    if cfg.mode == "position":
        from doascope.dsp.position import PositionLocalizer

        if profile.room is None:
            raise ParameterError(f"profile {profile.id} has no 'room': position mode needs distributed microphones "
                                 "in a room frame and the search volume room = [[xmin, xmax], [ymin, ymax], "
                                 "[zmin, zmax]]")
        return PositionLocalizer(profile.positions, room=profile.room, fs=fs, nfft=r.nfft, hop=r.hop,
                                 band=r.band, search=r.search, groups=profile.groups, n_sources=r.n_sources,
                                 frames_per_block=r.frames_per_block, smoothing=r.smoothing, step=step)
    for advice in doa_advice(cfg, profile):
        warnings.warn(advice, DoascopeWarning, stacklevel=2)
    from doascope.dsp.estimators import make_estimator
    from doascope.dsp.grids import default_grid
    from doascope.dsp.localizer import Localizer

    grid = default_grid(profile.positions, kind=r.grid, resolution=r.resolution)
    options = {"weights": r.weights} if r.weights else {}
    est = make_estimator(r.method, profile.positions, fs=fs, nfft=r.nfft, grid=grid, band=r.band,
                         n_sources=r.n_sources, **options)
    return Localizer(est, hop=r.hop, n_sources=r.n_sources, frames_per_block=r.frames_per_block,
                     smoothing=r.smoothing, min_separation=r.min_separation, step=step, extraction=r.extraction)


def _prepare_stft(nfft: int, hop: int) -> None:
    """One STFT of a silent frame: loads the FFT (doascope.dsp.fft), makes the window and plans the
    FFT size, so the first block does not wait."""
    import numpy as np

    from doascope.dsp.stft import stft

    stft(np.zeros((nfft, 1), np.float32), nfft=nfft, hop=hop)
