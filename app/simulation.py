"""Named simulated scenes for ``--sim``: talkers and noises that start, stop and move.

A moving source is rendered piecewise: the scene is simulated once per segment with every source
at its position at the segment's middle (same seed, so the same voices, tail and noise), and the
renders are cross-faded. Reflections jump a little at segment boundaries, which is inaudible to
the localizer at 0.5-1 s segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from doascope import ParameterError
from doascope.app.scenes import Scene, SourceSpec, simulate_scene


@dataclass(frozen=True)
class Path:
    """A source moving along azimuth keyframes (piecewise linear in time)."""

    times: tuple[float, ...]       # seconds
    azimuths: tuple[float, ...]    # degrees, unwrapped (350 -> 370 crosses 0)
    kind: str = "speech"
    elevation: float = 0.0
    distance: float = 1.6
    start: float = 0.0
    stop: float | None = None

    def azimuth(self, t: float) -> float:
        return float(np.interp(t, self.times, self.azimuths)) % 360.0


@dataclass(frozen=True)
class Preset:
    description: str
    paths: tuple[Path, ...]
    duration: float = 10.0
    rt60: float = 0.4
    snr_db: float = 20.0
    segment: float = 1.0


PRESETS: dict[str, Preset] = {
    "two-talkers": Preset("two talkers at 60 and 215 degrees, the second joins at 1.5 s; RT60 0.4 s",
                          (Path((0.0,), (60.0,)), Path((0.0,), (215.0,), start=1.5)), duration=12.0),
    "crossing": Preset("two talkers walking past each other: 30 -> 150 and 150 -> 30 degrees over 10 s",
                       (Path((0.0, 10.0), (30.0, 150.0)), Path((0.0, 10.0), (150.0, 30.0))), rt60=0.3,
                       segment=0.5),
    "talker-and-fan": Preset("a talker at 100 degrees and a fan at 300 degrees; RT60 0.5 s",
                             (Path((0.0,), (100.0,)), Path((0.0,), (300.0,), kind="fan")), rt60=0.5),
    "circling": Preset("one talker walking once around the array in 12 s",
                       (Path((0.0, 12.0), (0.0, 360.0)),), duration=12.0, segment=0.5),
}


@dataclass(frozen=True, eq=False)
class Rendered:
    """A rendered preset: audio (frames, mics) float32 and the truth over time."""

    name: str
    preset: Preset
    audio: np.ndarray
    fs: int
    renders: tuple[Scene, ...]   # one per segment (the first holds the per-source dry signals)

    def azimuths(self, t: float) -> list[float]:
        return [p.azimuth(t) for p in self.preset.paths]

    def active(self, start: int, stop: int) -> np.ndarray:
        """Which sources are active in samples [start, stop) (see Scene.active)."""
        return self.renders[0].active(start, stop)


def render_preset(name: str, positions, fs: int, *, seed: int = 0) -> Rendered:
    """Render the preset ``name`` (see :data:`PRESETS`) for mics at ``positions`` (mics, 3) m."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ParameterError(f"unknown simulated scene {name!r}; choose one of: {', '.join(PRESETS)}") from None
    moving = any(len(p.times) > 1 for p in preset.paths)
    n_seg = int(np.ceil(preset.duration / preset.segment)) if moving else 1
    renders = []
    for k in range(n_seg):
        t_mid = (k + 0.5) * preset.segment if moving else 0.0
        specs = [SourceSpec(azimuth=p.azimuth(t_mid), elevation=p.elevation, distance=p.distance, kind=p.kind,
                            start=p.start, stop=p.stop) for p in preset.paths]
        renders.append(simulate_scene(positions, fs, specs, duration=preset.duration, rt60=preset.rt60,
                                      snr_db=preset.snr_db, seed=seed, room_dim=(7.0, 6.0, 3.0)))
    if n_seg == 1:
        audio = renders[0].audio
    else:
        audio = _crossfade([r.audio for r in renders], int(round(preset.segment * fs)), int(0.1 * fs))
    return Rendered(name, preset, audio, fs, tuple(renders))


def _crossfade(renders: list[np.ndarray], seg: int, fade: int) -> np.ndarray:
    """Segment k of render k, with linear cross-fades of ``fade`` samples centred on boundaries."""
    n = renders[0].shape[0]
    out = np.zeros_like(renders[0])
    t = np.arange(n)
    for k, r in enumerate(renders):
        lo, hi = k * seg, (k + 1) * seg
        w = np.clip((t - (lo - fade / 2)) / fade, 0, 1) if k > 0 else np.ones(n)
        if k < len(renders) - 1:
            w = np.minimum(w, np.clip(((hi + fade / 2) - t) / fade, 0, 1))
        out += w[:, None].astype(np.float32) * r
    return out
