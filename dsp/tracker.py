"""Multi-source tracking of directions of arrival: stable ids from per-frame peaks.

In the spirit of ODAS's SST, Kalman variant (Grondin & Michaud, "Lightweight and optimized sound source
localization and tracking methods for open and closed microphone array configurations", 2019): each
source is a constant-velocity Kalman filter on the unit sphere, in Cartesian coordinates, so that the
0/360 degree wrap and the poles need no special case. Each frame, the peaks are assigned to the tracks
by the Hungarian method inside a gate; a peak no track claims starts a tentative track.

As in ODAS's SST, every track carries a probability that its source exists, fed by the evidence of
each frame: being the frame's strongest peak counts for it, going unheard while the scene is active
counts against it, and a weaker peak beside a stronger source counts for nothing, because that is
how a reflection of the stronger source behaves; unless two other shown tracks are heard in the same
frame (a talker drowned among several) or it is nearly as strong (a second talker), and, for a new
track, it lies far from every known one: then it counts a quarter of a lead. So does a peak of 70 %
of the strongest one's power for a new track, far from every known one, that has been hit in nearly
every frame since its birth and whose share of the strongest peak's power has varied: a quieter
second talker, where a reflection's share of its source's power hardly changes. Among several
talkers heard at once, a frame without a peak for a new track counts less against it (a talker is
drowned in many frames). A weaker peak between
two shown tracks, where their merged lobes put one, starts no track. A tentative track is confirmed (given an id) once
that probability is high and it has lived ``confirm_time`` (a third of it when it has led every frame
far from every known track: a new talker); it is dropped once the probability is low. A confirmed
track unheard for ``hold_time`` is no longer reported and stops moving (unless a louder talker it
is closing in on masks it: then it walks on, slowing down, still reported), but keeps its id, so
that a talker who pauses, or is masked for a while, comes back under the same id: when heard again
within the gate as the strongest peak of a frame or as one nearly as strong (a reflection, mostly
weaker, cannot wake it), or by weaker peaks
within the gate in most frames soon after it last led (a talker drowned among several talking at
once), or when a new track is confirmed within two gates of it (which also takes the id of a shown
track there unheard for a quarter of ``hold_time``). Unheard for ``death_time`` it is deleted.
The louder talker's track, meanwhile, takes its position but not its velocity from a peak dragged
towards the masked one (the two lobes merging), so that the two tracks walk past each other
instead of bouncing.

Pure numeric: no I/O, no threads. One :class:`Tracker` per stream, fed from one thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from doascope import ParameterError
from doascope.dsp.assignment import linear_sum_assignment
from doascope.dsp.peaks import Peak

# Prior spread of a newborn track's angular speed: a talker walking at 1 m/s 1-2 m away.
_V0_DEG_S = 45.0
# The fastest a track may turn (rad/s): a talker walking briskly past at 1 m.
_MAX_SPEED = math.radians(30.0)
# Two confirmed tracks merge only if their velocities would move them apart by less than merge_deg
# in this time: duplicates move together, talkers walking past each other do not.
_MERGE_HORIZON_S = 1.0
# Seconds a silent talker keeps its id (the default of --track-timeout).
from doascope.config import TRACK_TIMEOUT  # noqa: E402,F401  (its owner: the settings)
_OUT_OF_GATE = 1e6  # cost of a forbidden pair in the assignment (far above any angle in degrees)

# Existence, as log-odds (0 = even odds): what one frame's evidence adds. Being the frame's strongest
# peak is strong evidence; a weaker peak adds nothing (a reflection of a stronger source looks the
# same); a frame with sound in which the track finds no peak at all counts against it.
_LEAD_EVIDENCE = 1.0
_MISS_EVIDENCE = -0.5
_CONFIRM_LOGODDS = 2.0    # P(exists) = 0.88: confirm (after confirm_time)
_DROP_LOGODDS = -2.0      # P(exists) = 0.12: a tentative track is dropped
_MAX_LOGODDS = 4.0        # the most a track can bank, so that evidence against it still counts
# A newly confirmed track takes the id of a hidden one within this many gates.
_REVIVE_GATE = 2.0
# ... and so does one within that distance unheard on its own for this fraction of hold_time, though
# still shown: a talker who walked on while silent or masked, out of the gate of a track kept on
# screen (by a peak it shared with another track after a crossing, or for hold_time), came back
# under a new id while the old one stayed shown, off every talker (bench --tracking's tuning scenes,
# seeds 1-16 and the crossings of 17-40, replayed peaks: id switches 62 -> 54, fewer in 8 scenes and
# more in none; the same with 0.1-0.3 of hold_time, one fewer with 0.4-0.5, none with 1.0).
_REVIVE_UNHEARD = 0.25
# A tentative track farther than _ALONE_GATES gates from every confirmed track (shown or hidden) that
# has been the strongest peak of every frame since its birth (existence at _MAX_LOGODDS) is confirmed
# after this fraction of confirm_time: reflections are never the strongest peak and the halfway peaks
# of merged lobes lie near known tracks, so this is a talker starting to speak, and waiting the full
# confirm_time hid every new talker's first 0.3 s (a dialogue's coverage 0.88 -> 0.92 on the tuning
# scenes; a sound that leads for 0.1-0.3 s far from every track now shows up, as the source it is).
# A third rather than a half (0.1 s, 3-4 frames, about the fewest that reach _MAX_LOGODDS): tuning
# scenes, seeds 1-16 and the crossings of 17-40, replayed peaks: dialogues 0.924 -> 0.930 coverage,
# walks 0.956 -> 0.960, crossings 0.898 -> 0.900, ghosts and id switches unchanged; a quarter, 0.932,
# 0.963, 0.901 and crossing ghosts 0.006 -> 0.007.
_EARLY_FRACTION = 1.0 / 3.0
_ALONE_GATES = 3.0
# A confirmed track takes weaker peaks only within this time (s) of being a frame's strongest peak
# (long enough for a steady source, a fan, which leads only now and then beside talkers).
_LEAD_MEMORY_S = 5.0
# A hidden track whose talker was the strongest source within _WAKE_LEAD_S takes weaker peaks again
# once a peak has come within its gate in _WAKE_RATE of the active frames (smoothed over
# _PEAK_RATE_TAU_S): a talker drowned for a while among several talking at once (three talkers and a
# fan: its peak is there in most frames, seldom the strongest), not a reflection of the talker now
# speaking, which passes the presence test only now and then, nor a talker silent for longer.
# (Tuning scenes, seeds 1-16, 192 scenes: coverage 0.842 -> 0.850, of three talkers + fan 0.764 ->
# 0.777, ghosts unchanged at 0.020, dialogues unchanged.)
_WAKE_RATE = 0.6
_PEAK_RATE_TAU_S = 1.0
_WAKE_LEAD_S = 2.0
# A weaker peak between two shown tracks less than this far apart (degrees) starts no track: on a
# small array the lobes of two sources merge into a peak between them, which is neither.
_BETWEEN_DEG = 100.0
# Several talkers at once: a weaker peak counts for its track (a quarter of a lead) while at least
# _SUPPORT_HEARD other shown tracks are heard in the same frame and, for a tentative track, it lies
# farther than _ALONE_GATES gates from every confirmed track; and it keeps a confirmed track's lead
# memory (see _backed) as a lead does. With three talkers and a fan, a talker drowned among the
# others seldom or never leads, and the lead-only evidence never confirmed it; a lone talker's
# reflection does not get this evidence (one other track heard; but see _SUPPORT_SHARE), nor does a
# peak dragged beside a known track (bench --tracking's tuning scenes, seeds 1-16, replayed peaks:
# three talkers + fan coverage 0.792 -> 0.823, ghosts 0.023 and id switches 0.14 per talker-minute
# unchanged, dialogues unchanged; a birth within three gates of a known track gave 0.824 / 0.038 /
# 0.64, tracks born beside a misplaced one and taking its talker).
# The same holds for a weaker peak with at least _SUPPORT_SHARE of the frame's strongest peak's power,
# whoever else is heard: two talkers at once, the second nearly as loud as the first (a reflection
# is mostly weaker). A second talker 80-180 degrees from a shown track, nearly as loud, went
# unshown until it led a frame (crossings of seeds 1-16: coverage 0.876 -> 0.890, id switches 1.34
# either way; dialogue ghosts 0.015 -> 0.017; with 0.85 and 0.8: 0.894 and 0.899 coverage, but
# more ghosts with three talkers + fan, 0.029 and 0.031 against 0.024, and id switches).
_SUPPORT_EVIDENCE = 0.25
_SUPPORT_HEARD = 2
_SUPPORT_SHARE = 0.9
# A hidden track also takes a peak within its gate that holds _WAKE_SHARE of the frame's strongest
# peak's power (the share that makes a weaker peak a second talker's, see _SUPPORT_SHARE): its talker
# speaking again while the votes' memory still puts the one who spoke before first (a dialogue's turn),
# or beside several others (three talkers and a fan), or as two talkers part after a crossing; a
# reflection is mostly weaker. (bench --tracking's tuning seeds 1-16, replayed peaks: coverage 0.888 ->
# 0.899, of three talkers + fan 0.848 -> 0.868, crossings 0.898 -> 0.901 and dialogues 0.930 -> 0.934;
# id switches 19 -> 17, ghosts 0.014 -> 0.016, dialogues' 0.016 -> 0.022; with 0.95: 0.897, ghosts
# 0.015, dialogues' unchanged; with 0.8: 0.902, ghosts 0.022. 17 simulated rooms of one talker beside
# a wall: ghosts 0.193 -> 0.202.)
_WAKE_SHARE = _SUPPORT_SHARE
# Among several talkers (_SUPPORT_HEARD shown tracks heard in the frame) a talker's peak is drowned in
# many frames, so a tentative track unheard then loses less evidence: at _MISS_EVIDENCE, a weak talker
# heard in 60-70 % of the frames never gathered enough (seeds 1-16, replayed peaks: three talkers +
# fan coverage 0.845 -> 0.848, ghosts and id switches unchanged; -0.1 and -0.2 the same within 0.001).
_CROWDED_MISS_EVIDENCE = -0.15
# A quieter second talker: a weaker peak with _SECOND_SHARE of the strongest peak's power also counts
# a quarter of a lead for a new track far from every known one (as above) that has lived confirm_time,
# has been hit in _SECOND_RATE of its frames (a talker is there all the time, where most reflections
# and splits of a talker's lobe come and go) and whose power relative to the strongest peak's has
# varied: the standard deviation of the log of that ratio over its frames at least _SECOND_SPREAD. A
# reflection is a copy of its source, so its share of the source's power hardly changes, where two
# voices rise and fall each on its own (over 0.5 s, median 0.029 for a wall's mirror image, the array
# 0.25-0.3 m from the wall in 5 simulated rooms; 0.058 for a second talker in the crossings of seeds
# 1-4). A second talker walking past the first went unshown until it led a frame, up to 2 s on the
# MATRIX Creator (bench --tracking's tuning seeds 1-16, replayed peaks: crossings 0.892 -> 0.898
# coverage, id switches 17 either way, three talkers + fan ghosts 0.021 -> 0.022). Without the spread test the
# mirror image was confirmed (17 simulated rooms, one talker, the array 0.2-0.4 m from a wall: ghost
# tracks in 5 more rooms and longer ones in a sixth; with 0.03, 0.04 and 0.05, in 3, 2 and no more
# rooms); 0.06 leaves a margin.
_SECOND_SHARE = 0.7
_SECOND_RATE = 0.95
_SECOND_SPREAD = 0.06


@dataclass(frozen=True)
class TrackState:
    """One confirmed source as published with a frame (immutable)."""

    id: int
    azimuth: float     # degrees [0, 360)
    elevation: float   # degrees [-90, 90]
    x: float           # unit direction vector in the array frame
    y: float
    z: float
    activity: float    # 0..1: how sure we are that the source is active now
    age: float         # seconds since birth (as a tentative track)
    power: float       # smoothed peak power, in the units of the spatial spectrum

    def as_dict(self) -> dict:
        """The network/recorder form: ``{"id", "azimuth", "elevation", "x", "y", "z", "activity"}``."""
        return {"id": self.id, "azimuth": round(self.azimuth, 2) % 360.0, "elevation": round(self.elevation, 2),
                "x": round(self.x, 3), "y": round(self.y, 3), "z": round(self.z, 3),
                "activity": round(self.activity, 3)}


# Time constant (s) of the velocity's decay while a track receives no peak.
_COAST_TAU_S = 1.0
# An unheard track within this angle (deg) of a heard one it is closing in on is masked by it (two
# talkers crossing in one lobe), not paused: it walks on (see _CROSSING_TAU_S) for up to _MASK_MAX_S unheard.
_MASK_DEG = 45.0
_MASK_MAX_S = 4.0
# Time constant (s) of the velocity's decay while a track walks on unheard through a crossing (masked,
# or sharing the other talker's peak): two talkers share one peak for 2.5-4 s on the small arrays, and
# a track that kept its full speed so long walked ahead of its talker, out of the shared peak's gate,
# and was hidden before the two parted, its talker taken by the other track meanwhile (bench
# --tracking's tuning scenes, 120 crossings of seeds 1-40, replayed peaks: id switches 65 -> 44,
# fewer in 12 scenes and more in 2; with 1, 2, 3, 8 and 12 s: 100, 56, 48, 43 and 53). With the votes'
# longer memory (doascope.dsp.extraction) and the id taken back from an unheard track, the same 120
# crossings: 61 switches without the fade, 38 with 5 s, 40 with 8 s.
_CROSSING_TAU_S = 5.0


class _Track:
    """Mutable filter state of one track (internal), in plain floats: a handful of tracks a frame
    costs less as scalar arithmetic than as numpy calls on (3,) arrays. Position (px, py, pz) and
    velocity (vx, vy, vz); (P00, P01, P11) is the symmetric covariance of (position, velocity),
    shared by the three axes, which the model treats alike and independently."""

    __slots__ = ("px", "py", "pz", "vx", "vy", "vz", "P00", "P01", "P11", "birth", "last_hit", "updates", "hits",
                 "hit", "activity", "power", "id", "lead", "occluded", "masked", "logodds", "last_lead", "last_shared",
                 "peak_rate", "support", "ratio_n", "ratio_mean", "ratio_m2")

    def __init__(self, t: float, u: tuple[float, float, float], power: float, p_var: float, v_var: float):
        self.px, self.py, self.pz = u
        self.vx = self.vy = self.vz = 0.0
        self.P00, self.P01, self.P11 = p_var, 0.0, v_var
        self.birth = t
        self.last_hit = t
        self.updates = 1        # frames seen, the birth frame included
        self.hits = 1
        self.hit = True         # hit in the current frame
        self.activity = 0.5     # one peak is as likely clutter as a source
        self.power = float(power)
        self.id = 0             # 0 while tentative
        self.lead = False       # hit by the frame's strongest peak
        self.occluded = False   # sharing one peak with another track this frame (a crossing)
        self.masked = False     # unheard beside a louder talker it is closing in on (see Tracker._masked)
        self.logodds = 0.0      # existence, see _LEAD_EVIDENCE
        self.last_lead = -math.inf
        self.last_shared = -math.inf  # last frame whose peak it shared with another track (see _hidden)
        self.peak_rate = 0.0          # smoothed fraction of active frames with a peak within its gate
        self.support = False          # hit by a weaker peak that counts for it (see _SUPPORT_EVIDENCE)
        # log(power / the frame's strongest peak's power) over a tentative track's hits: count, mean and
        # sum of squared deviations (Welford), for its spread (see _SECOND_SPREAD)
        self.ratio_n, self.ratio_mean, self.ratio_m2 = 0, 0.0, 0.0

    @property
    def p(self) -> np.ndarray:
        """(3,) unit direction vector."""
        return np.array([self.px, self.py, self.pz])

    def cos(self, u: tuple[float, float, float]) -> float:
        """Cosine of the angle between the track's direction and unit vector u."""
        return self.px * u[0] + self.py * u[1] + self.pz * u[2]

    def add_ratio(self, share: float) -> None:
        """Count one frame's share of the strongest peak's power (> 0) in the spread of its log."""
        x = math.log(max(share, 1e-12))
        self.ratio_n += 1
        d = x - self.ratio_mean
        self.ratio_mean += d / self.ratio_n
        self.ratio_m2 += d * (x - self.ratio_mean)

    def cos_track(self, o: "_Track") -> float:
        return self.px * o.px + self.py * o.py + self.pz * o.pz

    def predict(self, dt: float, q: float) -> None:
        # Continuous white-noise acceleration: the covariance grows with dt the same way whatever
        # the frame rate, so irregular hops are handled exactly. P <- F P F' + Q, F = [[1, dt], [0, 1]].
        self.px += self.vx * dt
        self.py += self.vy * dt
        self.pz += self.vz * dt
        p01 = self.P01 + dt * self.P11
        self.P00 = self.P00 + dt * self.P01 + dt * p01 + q * dt ** 3 / 3
        self.P01 = p01 + q * dt ** 2 / 2
        self.P11 = self.P11 + q * dt

    def correct(self, u: tuple[float, float, float], r: float, learn_velocity: bool = True) -> None:
        # learn_velocity=False: a peak that places the source but whose motion is not the source's
        # (see Tracker._meeting) moves the position only.
        s = self.P00 + r
        k0, k1 = self.P00 / s, self.P01 / s     # gain for (position, velocity); H = [1, 0]
        if not learn_velocity:
            k1 = 0.0
        ix, iy, iz = u[0] - self.px, u[1] - self.py, u[2] - self.pz
        self.px += k0 * ix
        self.py += k0 * iy
        self.pz += k0 * iz
        self.vx += k1 * ix
        self.vy += k1 * iy
        self.vz += k1 * iz
        self.P11 -= k1 * self.P01
        self.P00 -= k0 * self.P00
        self.P01 -= k0 * self.P01

    def constrain(self, planar: bool) -> None:
        # The filter is linear in R^3 but a direction lives on the sphere: project back onto it,
        # and keep only the velocity tangent to it (a radial component would shrink or grow |p|).
        if planar:
            self.pz = 0.0
            self.vz = 0.0
        norm = math.sqrt(self.px * self.px + self.py * self.py + self.pz * self.pz)
        if norm > 1e-9:
            self.px /= norm
            self.py /= norm
            self.pz /= norm
        radial = self.vx * self.px + self.vy * self.py + self.vz * self.pz
        self.vx -= radial * self.px
        self.vy -= radial * self.py
        self.vz -= radial * self.pz
        # Talkers walk; a faster track is following jitter (two talkers' peaks, reflections), and would
        # carry a coasting track far from where its talker was last heard.
        speed = math.sqrt(self.vx * self.vx + self.vy * self.vy + self.vz * self.vz)
        if speed > _MAX_SPEED:
            f = _MAX_SPEED / speed
            self.vx *= f
            self.vy *= f
            self.vz *= f


def _validated(params: dict) -> dict:
    """The parameters as floats/ints/bools, or a ParameterError naming the first bad one."""
    out = dict(params)
    for name in ("gate_deg", "confirm_time", "confirm_ratio", "hold_time", "death_time", "tentative_time",
                 "merge_deg", "process_noise_deg_s", "measurement_noise_deg", "activity_tau", "min_power"):
        try:
            out[name] = float(params[name])
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be a number, got {params[name]!r}") from None
        if not math.isfinite(out[name]):
            raise ParameterError(f"{name} must be a finite number, got {params[name]!r}")
    for name in ("hold_time", "death_time", "process_noise_deg_s", "measurement_noise_deg", "activity_tau"):
        if out[name] <= 0:
            raise ParameterError(f"{name} must be positive, got {out[name]:g}")
    if not 0 < out["gate_deg"] < 180:
        raise ParameterError(f"gate_deg must be in (0, 180) degrees, got {out['gate_deg']:g}")
    if not 0 <= out["merge_deg"] < 180:
        raise ParameterError(f"merge_deg must be in [0, 180) degrees (0 turns merging off), got {out['merge_deg']:g}")
    if out["confirm_time"] < 0:
        raise ParameterError(f"confirm_time must be at least 0 seconds, got {out['confirm_time']:g}")
    if out["tentative_time"] < out["confirm_time"]:
        raise ParameterError(f"tentative_time ({out['tentative_time']:g} s) must be at least confirm_time "
                             f"({out['confirm_time']:g} s), or no track could ever be confirmed")
    if not 0 < out["confirm_ratio"] <= 1:
        raise ParameterError(f"confirm_ratio must be in (0, 1], got {out['confirm_ratio']:g}")
    max_tracks = params["max_tracks"]
    if isinstance(max_tracks, bool) or not isinstance(max_tracks, (int, np.integer)) or max_tracks < 1:
        raise ParameterError(f"max_tracks must be a positive integer, got {max_tracks!r}")
    out["max_tracks"] = int(max_tracks)
    if not isinstance(params["planar"], (bool, np.bool_)):
        raise ParameterError(f"planar must be True or False, got {params['planar']!r}")
    out["planar"] = bool(params["planar"])
    return out


class Tracker:
    """Gives the sources found frame after frame stable ids, and smooths their directions.

    Parameters
    ----------
    gate_deg : degrees; a peak farther than this from a track's predicted direction cannot update it
    confirm_time : seconds a tentative track must have lived, and still be hit, to be confirmed
    confirm_ratio : fraction of its frames in which a tentative track must have been hit to be confirmed
    hold_time : seconds without a hit after which a confirmed track is no longer reported (it keeps
        its id, hidden, until death_time)
    death_time : seconds without a hit after which a confirmed track is deleted (the track timeout:
        a talker silent for longer comes back with a new id)
    tentative_time : seconds after which a still unconfirmed track is dropped (>= confirm_time)
    merge_deg : degrees; two confirmed tracks this close, moving together, become one (the older id stays)
    process_noise_deg_s : deg/s; how fast the angular velocity may wander: the standard deviation its
        random walk reaches after one second (white acceleration of spectral density this squared,
        deg^2/s^3). Walking talkers change pace slowly; a larger value lets the velocity follow the
        peaks' jitter (on a 4-mic ring single peaks scatter by 10 degrees and more), and a track
        coasting on a wrong velocity through a crossing or a pause ends up far from its talker
    measurement_noise_deg : degrees; standard deviation of a peak's direction about the source's, per axis
    activity_tau : seconds; time constant of the activity's approach to 1 on hits and to 0 on misses
    min_power : peaks weaker than this (spectrum units) are ignored
    planar : directions are azimuths only (circle grid): the tracks stay on the horizontal plane
    max_tracks : most tracks, tentative ones included, held at once

    Notes
    -----
    The evidence for a birth is the number of frames inside ``confirm_time``: at the engine's
    32 ms frames the default 0.3 s holds ~10 frames (0.2 s at 16 ms frames holds ~13), enough to
    reject one uniformly random clutter peak a frame; at 64 ms frames raise ``confirm_time`` and
    ``tentative_time`` to about 0.5 and 0.7 s. A track that has been the strongest peak of every
    frame, more than three gates from every confirmed track, is confirmed after a third of
    ``confirm_time``.

    Examples
    --------
    >>> tracker = Tracker()
    >>> for k in range(20):
    ...     tracks = tracker.update(k * 0.016, [Peak(90.0, 0.0, 1.0, 90)])
    >>> [(s.id, round(s.azimuth)) for s in tracks]
    [(1, 90)]
    """

    def __init__(self, *, gate_deg: float = 20.0, confirm_time: float = 0.3, confirm_ratio: float = 0.6,
                 hold_time: float = 0.5, death_time: float = TRACK_TIMEOUT, tentative_time: float = 1.0,
                 merge_deg: float = 8.0,
                 process_noise_deg_s: float = 6.0, measurement_noise_deg: float = 8.0,
                 activity_tau: float = 0.3, min_power: float = 0.0, planar: bool = False, max_tracks: int = 8):
        params = dict(locals())
        del params["self"]
        self._params = _validated(params)
        self.reset()

    def reset(self) -> None:
        """Forget every track and restart ids at 1 (a new stream)."""
        self._tracks: list[_Track] = []
        self._t: float | None = None
        self._next_id = 1
        self._published: tuple[TrackState, ...] = ()

    def set_params(self, **kw) -> None:
        """Change parameters while running (same names as the constructor's); all or nothing."""
        unknown = sorted(set(kw) - set(self._params))
        if unknown:
            raise ParameterError(f"unknown tracker parameter(s): {', '.join(unknown)}")
        self._params = _validated({**self._params, **kw})

    @property
    def params(self) -> dict:
        return dict(self._params)

    @property
    def tracks(self) -> tuple[TrackState, ...]:
        """The confirmed tracks after the latest update, sorted by id."""
        return self._published

    def update(self, t: float, peaks: Sequence[Peak], active: bool = True) -> tuple[TrackState, ...]:
        """Advance to stream time ``t`` (seconds) with this frame's peaks; returns the confirmed tracks.

        ``active=False`` (the activity gate hears silence) ignores the peaks: tracks coast on their
        velocity, their activity decays, and no track is born.
        """
        t = float(t)
        if not math.isfinite(t):
            raise ParameterError(f"the frame time must be a finite number of seconds, got {t!r}")
        if self._t is not None and t < self._t:
            raise ParameterError(f"the frame time went back from {self._t:.6f} s to {t:.6f} s: "
                                 "call reset() when a stream restarts")
        dt = 0.0 if self._t is None else t - self._t
        self._t = t
        p = self._params
        planar = p["planar"]
        deg = math.pi / 180.0
        q = (p["process_noise_deg_s"] * deg) ** 2
        r = (p["measurement_noise_deg"] * deg) ** 2
        smooth = 1 - math.exp(-dt / p["activity_tau"])  # one-pole smoothing of activity and power
        rate_smooth = 1 - math.exp(-dt / _PEAK_RATE_TAU_S)
        tracks = self._tracks

        for tr in tracks:
            tr.masked = bool(tr.id) and not tr.hit and self._masked(tr, t)
        fade = math.exp(-dt / _COAST_TAU_S)
        crossing_fade = math.exp(-dt / _CROSSING_TAU_S)
        for tr in tracks:
            if dt > 0:
                if not (tr.hit or tr.occluded or tr.masked):
                    # Unheard, a talker is more likely standing still than walking on: let the
                    # velocity fade while coasting, or a pause makes the track drift away. A
                    # talker masked by another one passing by keeps walking, slowing down.
                    if _hidden(tr, t, p):
                        tr.vx = tr.vy = tr.vz = 0.0  # hidden, it waits where its talker went quiet
                    else:
                        tr.vx *= fade
                        tr.vy *= fade
                        tr.vz *= fade
                elif not tr.hit:
                    tr.vx *= crossing_fade
                    tr.vy *= crossing_fade
                    tr.vz *= crossing_fade
                tr.predict(dt, q)
                tr.constrain(planar)
            tr.hit = tr.lead = tr.occluded = tr.support = False

        kept = [pk for pk in peaks if pk.power >= p["min_power"]] if active else []
        z = [_unit(pk.azimuth, 0.0 if planar else pk.elevation) for pk in kept]
        cos_gate = math.cos(math.radians(p["gate_deg"]))
        for tr in tracks:  # how often a peak comes within its gate (see _backed); a silent frame: none
            if tr.id:
                tr.peak_rate += (float(any(tr.cos(u) >= cos_gate for u in z)) - tr.peak_rate) * rate_smooth
        heard = 0   # shown tracks heard in this frame
        if active:
            strongest = 0 if kept and kept[0] is peaks[0] else -1   # peaks come strongest first
            # each peak's share of the strongest one's power
            shares = [pk.power / kept[0].power if kept[0].power > 0 else 1.0 for pk in kept]
            free = [True] * len(kept)
            # Confirmed tracks choose first, so that a tentative one never steals a known source's peak.
            confirmed = [tr for tr in tracks if tr.id]
            for group in (confirmed, [tr for tr in tracks if not tr.id]):
                pairs = self._assign(group, z, free)
                for i, k in pairs:  # every hit marked first: _overlapped asks who went without
                    group[i].lead = k == strongest
                    group[i].hit = group[i].lead or _backed(group[i], t, p, shares[k])
                pairs = [(i, k) for i, k in pairs if group[i].hit]
                heard = sum(1 for tr in confirmed if tr.hit and not _hidden(tr, t, p))
                for i, k in pairs:
                    free[k] = False
                    tr = group[i]
                    share = shares[k]
                    if not tr.id:
                        tr.add_ratio(share)
                    tr.support = (not tr.lead and (tr.id or self._alone(tr))
                                  and (heard - bool(tr.id) >= _SUPPORT_HEARD or share >= _SUPPORT_SHARE
                                       or (not tr.id and share >= _SECOND_SHARE and self._second_talker(tr, t))))
                for i, k in pairs:
                    tr = group[i]
                    tr.power += (kept[k].power - tr.power) * smooth
                    occluder = self._overlapped(tr, confirmed, z[k]) if tr.id else None
                    if occluder is None:
                        tr.correct(z[k], r, learn_velocity=not self._meeting(tr, z[k]))
                        tr.constrain(planar)
                    else:
                        tr.occluded = occluder.occluded = True
                        if t - occluder.last_hit < _MASK_MAX_S:
                            occluder.last_shared = t  # heard through the shared peak: not hidden
            for k in sorted((k for k in range(len(kept)) if free[k]), key=lambda k: -kept[k].power):
                if k != strongest and self._between(z[k], t):
                    continue
                self._birth(t, z[k], kept[k].power, r, lead=k == strongest)

        # Several talkers heard in this frame: a new track's miss counts less (see _CROWDED_MISS_EVIDENCE).
        survivors, ready = _count_frame(self._tracks, t, smooth, p, active, self._alone,
                                        _CROWDED_MISS_EVIDENCE if heard >= _SUPPORT_HEARD else _MISS_EVIDENCE)
        self._tracks = self._merged(survivors)
        # Merge before confirming, so that an id once shown is never a duplicate dropped at once.
        self._next_id = _confirm(self._tracks, ready, self._next_id, lambda tr: self._hidden_near(tr, t))
        # A masked track stays on screen: its talker is still there, beside the louder one, and a
        # crossing shown as one track lets the two talkers' ids trade places while one of them pauses.
        self._published = tuple(self._state(tr, t) for tr in sorted(self._tracks, key=lambda tr: tr.id)
                                if tr.id and (not _hidden(tr, t, p) or tr.masked))
        return self._published

    # -- steps -------------------------------------------------------------------------------------

    def _assign(self, tracks: list[_Track], z: list, free: list) -> list[tuple[int, int]]:
        """Hungarian assignment of tracks to free peaks by angular distance; pairs beyond the gate dropped."""
        cols = [k for k, f in enumerate(free) if f]
        if not tracks or not cols:
            return []
        gate = self._params["gate_deg"]
        # Forbidden pairs get a huge cost rather than being left out, so the solver first maximises
        # the number of pairs inside the gate, then minimises their total angle.
        cost = [[a if a <= gate else _OUT_OF_GATE for a in (_degrees_between(tr.cos(z[k])) for k in cols)]
                for tr in tracks]
        if len(tracks) == 1 or len(cols) == 1:
            # One row or one column: the solver's answer is the cheapest cell (no solver call needed).
            i, j = min(((i, j) for i in range(len(tracks)) for j in range(len(cols))), key=lambda ij: cost[ij[0]][ij[1]])
            return [(i, cols[j])] if cost[i][j] < _OUT_OF_GATE else []
        rows, ks = linear_sum_assignment(np.array(cost))
        return [(int(i), cols[k]) for i, k in zip(rows, ks) if cost[i][k] < _OUT_OF_GATE]

    def _overlapped(self, tr: _Track, confirmed: list[_Track], z: tuple) -> _Track | None:
        """Another confirmed (shown) track, near tr, that got no peak although peak z could as well be
        its own, if there is one.

        That is two sources too close for the peak picker to separate (talkers crossing): fed the
        one peak between them, the track that gets it would stall there and the pair could swap
        ids when they part. Both coast on their velocities instead (tr still counts as hit, the
        other as heard, so that it stays on screen: see _hidden), and pick up their own peaks on the
        far side.
        """
        cos_gate = math.cos(math.radians(self._params["gate_deg"]))
        return next((other for other in confirmed if other is not tr and not other.hit and other.cos(z) >= cos_gate
                     and other.cos_track(tr) >= cos_gate
                     and (other.masked or not _hidden(other, self._t, self._params))), None)

    def _meeting(self, tr: _Track, z) -> bool:
        """Whether tr's peak z may be two talkers' lobes merged: a masked track (see _masked) is within
        _MASK_DEG of tr, and z lies on its side of tr. On a small array the other talker's lobe drags
        the peak towards it, up to halfway between them, where it stands still while the two walk past
        each other. tr's position still follows z, but its velocity is not learnt from it: learning
        it, tr slowed down and the two tracks bounced back from the meeting with each other's talkers
        (most of the id switches in crossings: 2.76 -> 1.97 per talker-minute on the 48 tuning
        crossings of bench --tracking)."""
        cos_mask = math.cos(math.radians(_MASK_DEG))
        return any(o is not tr and o.masked and o.cos_track(tr) >= cos_mask
                   and (z[0] - tr.px) * (o.px - tr.px) + (z[1] - tr.py) * (o.py - tr.py)
                   + (z[2] - tr.pz) * (o.pz - tr.pz) > 0 for o in self._tracks)

    def _masked(self, tr: _Track, t: float) -> bool:
        """Whether an unheard confirmed track is more likely masked by a louder talker it is walking
        towards (a crossing) than paused: another shown track, heard in the last frame, within
        _MASK_DEG and closing in, and tr heard within _MASK_MAX_S. Such a track keeps its velocity
        (and, hidden, still counts as one of two tracks sharing a peak: see _overlapped)."""
        if t - tr.last_hit >= _MASK_MAX_S or not (tr.vx or tr.vy or tr.vz):
            return False
        cos_mask = math.cos(math.radians(_MASK_DEG))
        return any(o is not tr and o.id and o.hit and not _hidden(o, t, self._params) and o.cos_track(tr) >= cos_mask
                   and (o.px - tr.px) * (tr.vx - o.vx) + (o.py - tr.py) * (tr.vy - o.vy)
                   + (o.pz - tr.pz) * (tr.vz - o.vz) > 0 for o in self._tracks)

    def _between(self, u: tuple, t: float) -> bool:
        """Whether direction u lies between two shown tracks less than _BETWEEN_DEG apart (closer to
        each of them than they are to each other): where their merged lobes put a peak."""
        shown = [tr for tr in self._tracks if tr.id and not _hidden(tr, t, self._params)]
        cos_span = math.cos(math.radians(_BETWEEN_DEG))
        for i, a in enumerate(shown):
            for b in shown[i + 1:]:
                cos_ab = a.cos_track(b)
                if cos_ab >= cos_span and a.cos(u) > cos_ab and b.cos(u) > cos_ab:
                    return True
        return False

    def _birth(self, t: float, z: tuple, power: float, r: float, lead: bool) -> None:
        """Start a tentative track at peak z; when full, evict the least likely tentative track if the
        newcomer's evidence is stronger."""
        logodds = _LEAD_EVIDENCE if lead else 0.0
        if len(self._tracks) >= self._params["max_tracks"]:
            tentative = [tr for tr in self._tracks if not tr.id]
            if not tentative:
                return  # confirmed tracks are never evicted by a newcomer
            weakest = min(tentative, key=lambda tr: (tr.logodds, tr.power))
            if (weakest.logodds, weakest.power) >= (logodds, power):
                return
            self._tracks.remove(weakest)
        track = _Track(t, z, power, r, math.radians(_V0_DEG_S) ** 2)
        track.lead = lead
        track.logodds = logodds
        self._tracks.append(track)

    def _merged(self, tracks: list[_Track]) -> list[_Track]:
        """Drop duplicates. Tracks are visited by rank (confirmed before tentative, then lower id,
        then earlier birth); one within merge_deg of a higher-ranked kept track is dropped, except
        that two confirmed tracks must also be moving together (see _MERGE_HORIZON_S)."""
        if self._params["merge_deg"] <= 0:
            return tracks
        cos_merge = math.cos(math.radians(self._params["merge_deg"]))
        kept: list[_Track] = []
        for tr in sorted(tracks, key=lambda tr: (tr.id == 0, tr.id, tr.birth)):
            if tr.id and _hidden(tr, self._t, self._params):
                kept.append(tr)  # a hidden track keeps its id for its talker, whoever passes by
                continue
            twin = next((k for k in kept if k.cos_track(tr) > cos_merge and not _hidden(k, self._t, self._params)
                         and (not tr.id or self._together(k, tr))), None)
            if twin is None:
                kept.append(tr)
            elif tr.id:
                # The survivor inherits the evidence, so that a merge does not hasten its death.
                twin.last_hit = max(twin.last_hit, tr.last_hit)
                twin.activity = max(twin.activity, tr.activity)
                twin.logodds = max(twin.logodds, tr.logodds)
        return kept

    def _second_talker(self, tr: _Track, t: float) -> bool:
        """Whether a tentative track behaves like a quieter second talker rather than a reflection
        (see _SECOND_SHARE): old enough, hit in nearly every frame (this one included, which
        tr.hits and tr.updates do not count yet), its share of the strongest peak's power varying."""
        return (t - tr.birth >= self._params["confirm_time"] and (tr.hits + 1) / (tr.updates + 1) >= _SECOND_RATE
                and tr.ratio_n >= 3 and tr.ratio_m2 / (tr.ratio_n - 1) >= _SECOND_SPREAD ** 2)

    def _alone(self, tr: _Track) -> bool:
        """Whether tr is farther than _ALONE_GATES gates from every confirmed track."""
        cos_far = math.cos(math.radians(min(179.0, _ALONE_GATES * self._params["gate_deg"])))
        return all(o.cos_track(tr) < cos_far for o in self._tracks if o.id)

    def _hidden_near(self, tr: _Track, t: float) -> _Track | None:
        """The closest confirmed track within _REVIVE_GATE gates of ``tr`` that has gone unheard on its
        own for _REVIVE_UNHEARD of hold_time (hidden, or still shown: through a shared peak, as masked,
        or not yet hidden), if any: a talker heard again after a pause or a crossing is often placed a
        little differently (other talkers' lobes, reflections), or has walked on."""
        cos_gate = math.cos(math.radians(min(179.0, _REVIVE_GATE * self._params["gate_deg"])))
        unheard = _REVIVE_UNHEARD * self._params["hold_time"]   # a hidden track: unheard for hold_time
        near = [h for h in self._tracks if h.id and t - h.last_hit >= unheard and h.cos_track(tr) >= cos_gate]
        return max(near, key=lambda h: h.cos_track(tr)) if near else None

    def _together(self, a: _Track, b: _Track) -> bool:
        # |v| is in radians per second (tangent velocity on the unit sphere).
        drift = math.degrees(math.sqrt((a.vx - b.vx) ** 2 + (a.vy - b.vy) ** 2 + (a.vz - b.vz) ** 2))
        return drift * _MERGE_HORIZON_S < self._params["merge_deg"]

    def _state(self, tr: _Track, t: float) -> TrackState:
        az = math.degrees(math.atan2(tr.py, tr.px)) % 360.0
        el = 0.0 if self._params["planar"] else math.degrees(math.atan2(tr.pz, math.hypot(tr.px, tr.py)))
        return TrackState(tr.id, az, el, tr.px, tr.py, tr.pz, tr.activity, t - tr.birth, tr.power)


def _unit(azimuth: float, elevation: float) -> tuple[float, float, float]:
    """Unit vector (x, y, z) toward a direction in degrees (as grids.unit_vectors)."""
    az, el = math.radians(azimuth), math.radians(elevation)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def _degrees_between(cosine: float) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def _backed(tr, t: float, p: dict, share: float) -> bool:
    """Whether a weaker peak, with ``share`` of the frame's strongest peak's power, may update the
    track. A tentative track, yes (it gains no evidence from it). A confirmed one only while its
    talker was the strongest source within _LEAD_MEMORY_S, and while shown, or, hidden, once peaks
    come within its gate in most frames and its talker led within _WAKE_LEAD_S, or when the peak is
    nearly as strong as the strongest (_WAKE_SHARE): a talker who has stopped must not be kept on
    screen, or dragged away, by a reflection of the one who is talking now, which shows up only now
    and then, and mostly weaker."""
    if not tr.id:
        return True
    since_lead = t - tr.last_lead
    if _hidden(tr, t, p):
        return share >= _WAKE_SHARE or (tr.peak_rate >= _WAKE_RATE and since_lead < _WAKE_LEAD_S)
    return since_lead < _LEAD_MEMORY_S   # (_WAKE_LEAD_S < _LEAD_MEMORY_S)


def _hidden(tr, t: float, p: dict) -> bool:
    """Whether a confirmed track has gone unheard so long (hold_time) that it is no longer reported.
    A track whose talker shares one peak with another track's (two talkers crossing in one lobe,
    see Tracker._overlapped) counts as heard through it, for up to _MASK_MAX_S: hidden, it would
    stop walking, and the one track left on screen would be matched to both talkers in turn."""
    return bool(tr.id) and t - max(tr.last_hit, tr.last_shared) >= p["hold_time"]


def _count_frame(tracks, t: float, smooth: float, p: dict, active: bool, alone=None,
                 miss: float = _MISS_EVIDENCE) -> tuple[list, set]:
    """One frame of every track's life, shared by both trackers: count its hit, weigh the frame's
    evidence of its existence, smooth its activity, and decide who survives (confirmed tracks until
    death_time without a hit; tentative ones until tentative_time, or sooner once their hit ratio
    falls short after confirm_time or their existence is unlikely) and which tentative tracks are
    ready to be confirmed. ``alone(tr)``, when given, tells whether a tentative track is far from
    every confirmed one (see _EARLY_FRACTION); ``miss`` is what a frame with sound but no peak for a
    track counts (see _CROWDED_MISS_EVIDENCE)."""
    survivors, ready = [], set()
    for tr in tracks:
        if tr.birth < t:  # a newborn's birth frame was counted at birth
            tr.updates += 1
            tr.hits += tr.hit
            tr.activity += (float(tr.hit) - tr.activity) * smooth
            evidence = (_LEAD_EVIDENCE if tr.lead else _SUPPORT_EVIDENCE if tr.support else 0.0 if tr.hit
                        else miss if active else 0.0)
            tr.logodds = min(_MAX_LOGODDS, max(-_MAX_LOGODDS, tr.logodds + evidence))
        if tr.hit:
            tr.last_hit = t
        if tr.lead or tr.support:
            tr.last_lead = t
        age, ratio = t - tr.birth, tr.hits / tr.updates
        if tr.id:
            if t - tr.last_hit < p["death_time"]:
                survivors.append(tr)
            continue
        # Evidence must span confirm_time: only a hit at that age or later can confirm, so a
        # burst of peaks shorter than confirm_time never shows up as a source; except a track far
        # from every known one that has been the strongest peak of (nearly) every frame since its
        # birth, which can only be a new source, after a third of confirm_time (see _EARLY_FRACTION).
        early = (alone is not None and age >= _EARLY_FRACTION * p["confirm_time"]
                 and tr.logodds >= _MAX_LOGODDS and alone(tr))
        if tr.hit and ratio >= p["confirm_ratio"] and (
                (age >= p["confirm_time"] and tr.logodds >= _CONFIRM_LOGODDS) or early):
            ready.add(tr)
        elif (age >= p["tentative_time"] or tr.logodds <= _DROP_LOGODDS
              or (not tr.hit and age >= p["confirm_time"] and ratio < p["confirm_ratio"])):
            continue  # dropped silently: tentative ids are never shown
        survivors.append(tr)
    return survivors, ready


def _confirm(tracks: list, ready: set, next_id: int, hidden_near=lambda tr: None) -> int:
    """Give the ready tracks that survived merging their ids, oldest first; returns the next id.

    A ready track that ``hidden_near`` finds a hidden or unheard track for (its talker, silent or
    masked for a while, back within two gates) takes that track's id and place, instead of a new id."""
    for tr in sorted(tracks, key=lambda tr: tr.birth):
        if tr in ready:
            old = hidden_near(tr)
            if old is not None:
                tr.id = old.id
                tracks.remove(old)
                continue
            tr.id = next_id
            next_id += 1
    return next_id


# --------------------------------------------------------------------------------------------------
# Positions in a room (distributed microphones)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionTrackState:
    """A tracked source position in the room frame, metres."""

    id: int
    x: float
    y: float
    z: float
    activity: float
    age: float
    power: float

    def as_dict(self) -> dict:
        return {"id": self.id, "x": round(self.x, 3), "y": round(self.y, 3), "z": round(self.z, 3),
                "activity": round(self.activity, 3)}


class _PosTrack:
    def __init__(self, t: float, p: np.ndarray, power: float):
        self.p = p.astype(float).copy()
        self.birth = self.last_hit = t
        self.updates = self.hits = 1
        self.hit = True
        self.activity = 0.5
        self.power = float(power)
        self.id = 0
        self.lead = False
        self.support = False    # (direction tracks only: see _SUPPORT_EVIDENCE)
        self.logodds = 0.0
        self.last_lead = -math.inf
        self.last_shared = -math.inf  # position tracks never share a peak (see _hidden)


class PositionTracker:
    """Keeps stable ids for source positions: nearest-neighbour (Hungarian) association within
    ``gate_m``, exponential smoothing of position with time constant ``position_tau``, and the same
    existence, birth, confirmation, hiding and death rules as :class:`Tracker`. A room search finds
    fewer peaks a second than a direction search (most blocks show only the loudest talker), so a
    track is shown for ``hold_time`` = 2 s unheard, not 0.5 s. Positions from an SRP search jitter by
    a few centimetres and talkers move slowly, so no velocity model is needed.
    """

    def __init__(self, *, gate_m: float = 0.6, position_tau: float = 0.25, confirm_time: float = 0.3,
                 confirm_ratio: float = 0.6, tentative_time: float = 1.0, hold_time: float = 2.0,
                 death_time: float = TRACK_TIMEOUT, activity_tau: float = 0.3, max_tracks: int = 8,
                 merge_m: float = 0.5):
        for name, value in (("gate_m", gate_m), ("merge_m", merge_m), ("position_tau", position_tau),
                            ("hold_time", hold_time), ("death_time", death_time),
                            ("activity_tau", activity_tau), ("tentative_time", tentative_time)):
            if not (math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be a positive number, got {value!r}")
        if not 0 <= confirm_time <= tentative_time:
            raise ParameterError("confirm_time must be between 0 and tentative_time seconds")
        if not 0 < confirm_ratio <= 1:
            raise ParameterError(f"confirm_ratio must be in (0, 1], got {confirm_ratio!r}")
        self.hold_time = float(hold_time)
        self.gate_m, self.position_tau = float(gate_m), float(position_tau)
        self.confirm_time, self.confirm_ratio = float(confirm_time), float(confirm_ratio)
        self.tentative_time, self.death_time = float(tentative_time), float(death_time)
        self.activity_tau, self.max_tracks = float(activity_tau), int(max_tracks)
        self.merge_m = float(merge_m)
        # Optional test (position q, position p) -> whether a source at p explains a peak at q; the
        # engine sets it from the localizer's geometry (see PositionLocalizer.same_source).
        self.same_source = None
        self.reset()

    def set_params(self, **changes) -> None:
        """Change thresholds while running (validated as in the constructor)."""
        names = ("gate_m", "position_tau", "confirm_time", "confirm_ratio", "tentative_time", "hold_time",
                 "death_time", "activity_tau", "max_tracks", "merge_m")
        unknown = set(changes) - set(names)
        if unknown:
            raise ParameterError(f"unknown position-tracker setting(s): {', '.join(sorted(unknown))}")
        probe = PositionTracker(**{**{n: getattr(self, n) for n in names}, **changes})
        for n in names:
            setattr(self, n, getattr(probe, n))

    def reset(self) -> None:
        self._tracks: list[_PosTrack] = []
        self._t: float | None = None
        self._next_id = 1

    def update(self, t: float, sources: Sequence, active: bool = True) -> tuple[PositionTrackState, ...]:
        """Advance to stream time ``t`` with this frame's positions (objects with x, y, z, power)."""
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        follow = 1 - math.exp(-dt / self.position_tau) if dt > 0 else 1.0
        smooth = 1 - math.exp(-dt / self.activity_tau) if dt > 0 else 0.0
        params = {"confirm_time": self.confirm_time, "confirm_ratio": self.confirm_ratio,
                  "tentative_time": self.tentative_time, "hold_time": self.hold_time, "death_time": self.death_time}
        for tr in self._tracks:
            tr.hit = tr.lead = tr.occluded = tr.support = False
        if active and sources:
            z = np.array([[s.x, s.y, s.z] for s in sources], float)
            strongest = 0  # sources come strongest first
            free = np.ones(len(z), bool)
            if self._tracks:
                cost = np.linalg.norm(np.array([tr.p for tr in self._tracks])[:, None] - z[None], axis=2)
                rows, cols = linear_sum_assignment(cost)
                for i, k in zip(rows, cols, strict=True):
                    tr = self._tracks[i]
                    # As for directions: a hidden track wakes only on the frame's strongest source.
                    if cost[i, k] <= self.gate_m and (k == strongest or not _hidden(tr, t, params)):
                        tr.hit, tr.lead, free[k] = True, k == strongest, False
                        tr.p += (z[k] - tr.p) * max(follow, 0.2)
                        tr.power += (sources[k].power - tr.power) * max(smooth, 0.2)
            for k in np.nonzero(free)[0]:
                if len(self._tracks) < self.max_tracks:
                    track = _PosTrack(t, z[k], sources[k].power)
                    track.lead = k == strongest
                    track.logodds = _LEAD_EVIDENCE if track.lead else 0.0
                    self._tracks.append(track)
        kept, ready = _count_frame(self._tracks, t, smooth, params, active)
        if self.same_source is not None:
            # Never confirm a track that a confirmed one explains (its echo, or a side lobe of it).
            confirmed = [tr for tr in kept if tr.id]
            ready = {tr for tr in ready if not any(self.same_source(tr.p, c.p) for c in confirmed)}
        # Two tracks on one talker (a second peak from the same source's reflections): keep the older.
        kept.sort(key=lambda tr: tr.birth)
        self._tracks = [tr for i, tr in enumerate(kept)
                        if all(np.linalg.norm(tr.p - o.p) > self.merge_m for o in kept[:i])]
        self._next_id = _confirm(self._tracks, ready, self._next_id)
        return self.tracks

    @property
    def tracks(self) -> tuple[PositionTrackState, ...]:
        t = self._t or 0.0
        params = {"hold_time": self.hold_time}
        return tuple(PositionTrackState(tr.id, *map(float, tr.p), tr.activity, t - tr.birth, tr.power)
                     for tr in sorted(self._tracks, key=lambda tr: tr.id) if tr.id and not _hidden(tr, t, params))
