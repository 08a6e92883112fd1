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
from doascope.sim.scenes import SourceSpec, simulate_room, simulate_scene


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
    renders: tuple       # one Scene (or RoomRecording) per segment
    room: np.ndarray | None = None   # (3, 2) for distributed microphones: the preset is laid out in it

    def azimuths(self, t: float) -> list[float]:
        return [p.azimuth(t) for p in self.preset.paths]

    def positions(self, t: float) -> np.ndarray:
        """(sources, 3) room positions in metres at time t (distributed-microphone profiles)."""
        return np.array([_room_point(self.room, p, t) for p in self.preset.paths])

    def active(self, start: int, stop: int) -> np.ndarray:
        """Which sources are active in samples [start, stop) (see Scene.active)."""
        if self.room is not None:
            return self.renders[0].on[start:stop].any(axis=0)
        return self.renders[0].active(start, stop)


def _room_point(room: np.ndarray, path: Path, t: float) -> np.ndarray:
    """Where a preset's source stands in a room: its azimuth around the room's centre, at its
    distance (kept 0.5 m from the walls), at standing-talker height."""
    centre = room.mean(axis=1)
    a = np.radians(path.azimuth(t))
    reach = min(path.distance, *(0.5 * (room[:2, 1] - room[:2, 0]) - 0.5))
    return np.array([centre[0] + reach * np.cos(a), centre[1] + reach * np.sin(a),
                     min(1.6, room[2, 1] - 0.5)])


def render_preset(name: str, positions, fs: int, *, seed: int = 0, room=None) -> Rendered:
    """Render the preset ``name`` (see :data:`PRESETS`) for mics at ``positions`` (mics, 3) m:
    around a compact array, or, given ``room`` (3, 2), in that room with the mics where they are."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ParameterError(f"unknown simulated scene {name!r}; choose one of: {', '.join(PRESETS)}") from None
    moving = any(len(p.times) > 1 for p in preset.paths)
    n_seg = int(np.ceil(preset.duration / preset.segment)) if moving else 1
    renders = []
    room = None if room is None else np.asarray(room, float)
    for k in range(n_seg):
        t_mid = (k + 0.5) * preset.segment if moving else 0.0
        if room is not None:
            pts = [_room_point(room, p, t_mid) for p in preset.paths]
            kinds = ["speech" if p.kind == "speech" else p.kind for p in preset.paths]
            renders.append(simulate_room(positions, fs, pts, room_dim=tuple(room[:, 1]), duration=preset.duration,
                                         rt60=preset.rt60, snr_db=preset.snr_db, kinds=kinds, seed=seed))
            continue
        specs = [SourceSpec(azimuth=p.azimuth(t_mid), elevation=p.elevation, distance=p.distance, kind=p.kind,
                            start=p.start, stop=p.stop) for p in preset.paths]
        renders.append(simulate_scene(positions, fs, specs, duration=preset.duration, rt60=preset.rt60,
                                      snr_db=preset.snr_db, seed=seed, room_dim=(7.0, 6.0, 3.0)))
    if n_seg == 1:
        audio = renders[0].audio
    else:
        audio = crossfade([r.audio for r in renders], int(round(preset.segment * fs)), int(0.1 * fs))
    return Rendered(name, preset, audio, fs, tuple(renders), room)


def crossfade(renders: list[np.ndarray], seg: int, fade: int) -> np.ndarray:
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
