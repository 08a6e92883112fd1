"""Simulated acoustic scenes: test signals, reverberant rooms and the ground truth that goes with them.

This module makes the multichannel recordings that tests, benchmarks and the ``simulated`` audio source
feed to the estimators, together with the exact directions of arrival they should find.

Signals
    :func:`speech` speaks a sentence with Debian's ``espeak-ng``; :func:`talker` strings random sentences
    into a talker of a given length (falling back to :func:`speech_like`, a synthetic stand-in with the
    spectral and temporal traits of speech, where espeak-ng is missing); :func:`noise_source` makes
    stationary noise (pink, white, fan, babble).

Rooms
    :func:`simulate_scene` places an array and point sources in a shoebox room and renders what the
    microphones hear; :func:`random_scene` draws the room, placement and sources at random for benchmarks.

Room model
    The image-source method (pyroomacoustics) is exact but its cost grows with the cube of the reflection
    order, and a 0.9 s RT60 needs order ~120 (5 s for 4 mics at 16 kHz, 14 s for 16 mics at 48 kHz).
    Its shoebox tail is also not what rooms do: with specular walls only, the decay is bent (slow axial
    paths dominate late), so a pure ISM room misses its target RT60 by 15-20 % (T30 of 0.17 s for
    0.2 s, 1.05 s for 0.9 s).
    Here the image sources are computed only up to the order that is complete for the first ~60 ms (the
    early reflections that shape localization, beyond the 50 ms early/late boundary of D50/C50), and
    the rest is a stochastic diffuse tail: Gaussian noise with the spatial coherence of an isotropic
    field (``sin(kd)/(kd)`` between mics) shaped by the exponential decay of the target RT60, at the
    level diffuse-field theory gives for that room (the same level the image sources have at the
    crossover, checked to within 0.5 dB). This is the "ISM + diffuse tail" scheme of Lehmann &
    Johansson (2010); it is deterministic for a seed (pyroomacoustics' ray tracer is not) and keeps a
    4 s scene under a second.

Conventions (see DESIGN.md): array frame right-handed, metres, x forward, y left, z up; azimuth in
degrees counter-clockwise from +x in [0, 360); elevation in degrees above the x-y plane; audio float32
shaped (frames, channels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sps

from doascope import SPEED_OF_SOUND, ParameterError
from doascope.sim.signals import (  # noqa: F401  (re-exported: scenes are where users look for them)
    NOISE_KINDS,
    SENTENCES,
    VOICES,
    _check_duration,
    _check_fs,
    _check_rng,
    _peak_normalise,
    espeak_available,
    noise_source,
    speech,
    speech_like,
    talker,
)

__all__ = [
    "SourceSpec",
    "Scene",
    "simulate_scene",
    "random_scene",
]

_SOURCE_KINDS = ("speech", "noise") + NOISE_KINDS
_REAL = (int, float, np.integer, np.floating)

# Margins that keep the geometry physical: sources stay this far from every wall (pyroomacoustics needs
# them strictly inside, and a source on a wall would double its own image), mics at least this far.
_SOURCE_WALL_MARGIN = 0.3
_MIC_WALL_MARGIN = 0.05

# The image-source part of the room model covers at least this much time after emission (seconds); see
# the module docstring. 60 ms holds all early reflections (the D50/C50 boundary is 50 ms) and is well past
# the mixing time of living-room sized spaces (~sqrt(V) ms, 7-14 ms for 30-200 m^3).
_ISM_COVERAGE_S = 0.060
# The image-source order never exceeds this, whatever the room: the cost grows with its cube and by
# order 20 the ISM has covered >= 3 room lengths in any room this module makes.
_ISM_MAX_ORDER = 20
# Length of the power-complementary crossfade from the image sources to the diffuse tail (seconds).
_CROSSFADE_S = 0.005
# The diffuse tail runs until it has decayed by this much (dB): far below any SNR simulated here.
_TAIL_DEPTH_DB = 70.0


# --------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """One point source of a scene, in the array frame.

    Parameters
    ----------
    azimuth : float
        Degrees counter-clockwise from the array's +x axis (any value; wrapped into [0, 360)).
    elevation : float, optional
        Degrees above the array's x-y plane, in [-90, 90].
    distance : float, optional
        Metres from the array centre. :func:`simulate_scene` shortens it when the source would be
        closer than 0.3 m to a wall, and reports the distance it used.
    kind : str, optional
        ``"speech"`` (a :func:`talker`), ``"noise"`` (pink noise) or a :func:`noise_source` kind:
        ``"pink"``, ``"white"``, ``"fan"``, ``"babble"``.
    start : float, optional
        Seconds from the start of the scene at which the source starts emitting.
    stop : float or None, optional
        Seconds at which it stops; None means it plays to the end.
    """

    azimuth: float
    elevation: float = 0.0
    distance: float = 1.5
    kind: str = "speech"
    start: float = 0.0
    stop: float | None = None

    def __post_init__(self):
        for name in ("azimuth", "elevation", "distance", "start"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, _REAL) or not math.isfinite(v):
                raise ParameterError(f"SourceSpec.{name} must be a finite number, got {v!r}.")
        if not -90.0 <= self.elevation <= 90.0:
            raise ParameterError(
                f"SourceSpec.elevation must be in [-90, 90] degrees, got {self.elevation!r}."
            )
        if self.distance <= 0.0:
            raise ParameterError(f"SourceSpec.distance must be positive (metres), got {self.distance!r}.")
        if self.kind not in _SOURCE_KINDS:
            raise ParameterError(
                f"SourceSpec.kind must be one of {', '.join(_SOURCE_KINDS)}; got {self.kind!r}."
            )
        if self.start < 0.0:
            raise ParameterError(f"SourceSpec.start must be >= 0 seconds, got {self.start!r}.")
        if self.stop is not None:
            stop = self.stop
            if isinstance(stop, bool) or not isinstance(stop, _REAL) or not math.isfinite(stop):
                raise ParameterError(
                    f"SourceSpec.stop must be a number of seconds or None, got {self.stop!r}."
                )
            if self.stop <= self.start:
                raise ParameterError(
                    f"SourceSpec.stop ({self.stop}) must be later than SourceSpec.start ({self.start})."
                )


@dataclass(frozen=True, eq=False)
class Scene:
    """A rendered scene: what the array heard, and the truth about it.

    Attributes
    ----------
    audio : numpy.ndarray
        float32, shape (frames, mics): the microphone signals, reverberant and noisy, peak-normalised
        to 0.5. Sample ``n`` is at time ``n / fs`` after the scene starts (sources emit from time 0).
    fs : int
        Sample rate in Hz.
    sources : tuple of SourceSpec
        The sources as placed: ``azimuth``/``elevation`` are the true directions from the array centre
        to each source in the array frame (recomputed from the room positions), ``distance`` the true
        distance in metres.
    dry : numpy.ndarray
        float32, shape (frames, n_sources): each source's signal as its direct path brings it to the
        array centre (delayed by distance / c, attenuated by 1 / distance, same gain as ``audio``).
    rt60 : float
        Target reverberation time in seconds (0 = anechoic).
    snr_db : float
        Ratio in dB of the mean reverberant signal power at the mics (over the times any source is on)
        to the power of the independent white sensor noise.
    room_dim : tuple of float
        Room size (x, y, z) in metres.
    array_centre : numpy.ndarray
        float64, shape (3,): the array origin in room coordinates, metres.
    rotation_deg : float
        Yaw of the array frame in the room, degrees counter-clockwise about z: a direction with room
        azimuth ``a`` has array azimuth ``a - rotation_deg``.
    positions : numpy.ndarray
        float64, shape (mics, 3): microphone positions in the array frame, metres (as given).
    """

    audio: np.ndarray
    fs: int
    sources: tuple[SourceSpec, ...]
    dry: np.ndarray
    rt60: float
    snr_db: float
    room_dim: tuple
    array_centre: np.ndarray
    rotation_deg: float
    positions: np.ndarray | None = None
    _ref_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def duration(self) -> float:
        """Length of the scene in seconds."""
        return self.audio.shape[0] / self.fs

    @property
    def mic_positions_room(self) -> np.ndarray:
        """Microphone positions in room coordinates, float64 shape (mics, 3), metres."""
        return self.array_centre[None, :] + self.positions @ _rot_z(self.rotation_deg).T

    def _on_interval(self, i: int) -> tuple[int, int]:
        s = self.sources[i]
        stop = self.audio.shape[0] if s.stop is None else int(round(s.stop * self.fs))
        return int(round(s.start * self.fs)), min(stop, self.audio.shape[0])

    def _reference_rms(self, i: int, length: int) -> float:
        # A source's "loud" level for windows of this length: the 95th percentile of its block RMS over
        # the time it is on. A percentile rather than the max keeps one plosive from setting the bar.
        key = (i, length)
        if key not in self._ref_cache:
            a, b = self._on_interval(i)
            d = self.dry[:, i].astype(np.float64)
            delay = int(round(self.sources[i].distance / SPEED_OF_SOUND * self.fs))
            seg = d[min(a + delay, len(d)) : min(b + delay, len(d))]
            nb = len(seg) // length
            if nb >= 1:
                blocks = seg[: nb * length].reshape(nb, length)
                ref = float(np.percentile(np.sqrt(np.mean(blocks**2, axis=1)), 95))
            else:
                ref = float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0
            self._ref_cache[key] = ref
        return self._ref_cache[key]

    def active(self, start: int, stop: int, *, threshold_db: float = -30.0) -> np.ndarray:
        """Which sources are active in a block of samples.

        A source is active when it is switched on for at least half of the block and its direct-path
        signal at the array centre has an RMS in the block within ``threshold_db`` of its loud level
        (the 95th percentile of its RMS over blocks of the same length while it is on): speech pauses
        and the time after ``stop`` count as inactive.

        Parameters
        ----------
        start, stop : int
            The block is samples ``[start, stop)`` of ``audio``.
        threshold_db : float, optional
            How far below its loud level (dB, negative) a source still counts as active.

        Returns
        -------
        numpy.ndarray
            bool, shape (n_sources,).
        """
        n = self.audio.shape[0]
        start, stop = int(start), int(stop)
        if not (0 <= start < stop <= n):
            raise ParameterError(f"The block [{start}, {stop}) must be a non-empty range inside [0, {n}).")
        if threshold_db > 0:
            raise ParameterError(f"threshold_db must be <= 0 dB, got {threshold_db!r}.")
        length = stop - start
        out = np.zeros(len(self.sources), dtype=bool)
        thr = 10.0 ** (threshold_db / 20.0)
        for i in range(len(self.sources)):
            a, b = self._on_interval(i)
            if max(0, min(b, stop) - max(a, start)) * 2 < length:
                continue
            ref = self._reference_rms(i, length)
            if ref <= 0.0:
                continue
            rms = float(np.sqrt(np.mean(self.dry[start:stop, i].astype(np.float64) ** 2)))
            out[i] = rms >= thr * ref
        return out


# --------------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------------


def _rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _unit(az_deg: float, el_deg: float) -> np.ndarray:
    az, el = math.radians(az_deg), math.radians(el_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def _direction(v: np.ndarray) -> tuple[float, float, float]:
    # Rounded to 1e-9 degrees (5e-12 m at 300 m): a requested 60 comes back as 60.0, not 59.99999999999999.
    r = float(np.linalg.norm(v))
    az = round(math.degrees(math.atan2(v[1], v[0])) % 360.0, 9)
    if az >= 360.0:  # -1e-15 % 360 rounds to 360.0
        az = 0.0
    el = round(math.degrees(math.asin(max(-1.0, min(1.0, v[2] / r)))), 9)
    return az, el, round(r, 12)


def _check_positions(positions) -> np.ndarray:
    p = np.asarray(positions, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] not in (2, 3) or p.shape[0] < 1:
        raise ParameterError(
            f"positions must be an array of shape (mics, 3) in metres, got shape {np.shape(positions)}."
        )
    if p.shape[1] == 2:
        p = np.hstack([p, np.zeros((p.shape[0], 1))])
    if not np.all(np.isfinite(p)):
        raise ParameterError("positions contain NaN or infinite values.")
    return p


def _check_rt60_snr(rt60, snr_db) -> tuple[float, float]:
    rt60, snr_db = float(rt60), float(snr_db)
    if not math.isfinite(rt60) or rt60 < 0.0 or rt60 > 5.0:
        raise ParameterError(f"rt60 must be 0 (anechoic) to 5 seconds, got {rt60!r}.")
    if math.isnan(snr_db) or snr_db == -math.inf:
        raise ParameterError(f"snr_db must be a number of dB (inf for no noise), got {snr_db!r}.")
    return rt60, snr_db


def _check_room(room_dim) -> np.ndarray:
    r = np.asarray(room_dim, dtype=np.float64)
    if r.shape != (3,) or not np.all(np.isfinite(r)) or np.any(r < 1.0):
        raise ParameterError(f"room_dim must be three sizes (x, y, z) of at least 1 m, got {room_dim!r}.")
    return r


def _ism_complete_time(order: int, room: np.ndarray, c: float) -> float:
    # Lower bound on the path length of any image of order `order + 1`: along an axis of length L an
    # image with n reflections is at least (n - 1) L away, so an image with (a, b, c) reflections is
    # at least |((a-1)+ Lx, (b-1)+ Ly, (c-1)+ Lz)| away. Up to that time the order-`order` ISM is complete.
    n = order + 1
    best = math.inf
    for a in range(n + 1):
        for b in range(n + 1 - a):
            cc = n - a - b
            d = math.sqrt(
                (max(a - 1, 0) * room[0]) ** 2
                + (max(b - 1, 0) * room[1]) ** 2
                + (max(cc - 1, 0) * room[2]) ** 2
            )
            best = min(best, d)
    return best / c


def _eyring_absorption(rt60: float, room: np.ndarray, c: float) -> float:
    # Eyring, not Sabine: the image-source model's mean decay is exactly Eyring's (each reflection keeps
    # 1 - alpha of the energy, c S / 4V reflections per second). Sabine's alpha makes short-RT60 rooms
    # decay ~20 % too fast (0.166 s measured for a 0.2 s target in a 6 x 5 x 3 m room).
    v = float(np.prod(room))
    s = 2.0 * (room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
    return 1.0 - math.exp(-24.0 * math.log(10.0) * v / (c * s * rt60))


def _diffuse_mixing(mics_room: np.ndarray, nfft: int, fs: int, c: float) -> np.ndarray:
    # Per-frequency factor A(f) with A A^T = Gamma(f), Gamma_ij = sin(k d_ij) / (k d_ij): the coherence of
    # a spherically isotropic (diffuse) field (Habets & Gannot 2007). Independent noise through A gets
    # the right inter-mic coherence, so a compact array sees a coherent low-frequency tail, as it would
    # in a real room, instead of an unrealistically easy incoherent one.
    m = mics_room.shape[0]
    d = np.linalg.norm(mics_room[:, None, :] - mics_room[None, :, :], axis=-1)
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    gamma = np.sinc(2.0 * f[:, None, None] * d[None, :, :] / c)  # np.sinc(x) = sin(pi x) / (pi x)
    gamma += 1e-6 * np.eye(m)[None]  # rank-deficient at low frequencies: a hair of jitter for Cholesky
    return np.linalg.cholesky(gamma).astype(np.float32)


def _room_impulse_responses(
    mics_room: np.ndarray,
    src_room: np.ndarray,
    fs: int,
    room: np.ndarray,
    rt60: float,
    max_order: int | None,
    rng: np.random.Generator,
    c: float = SPEED_OF_SOUND,
) -> tuple[list[np.ndarray], dict]:
    """Room impulse responses from each source to each mic (image sources + diffuse tail).

    Parameters
    ----------
    mics_room : ndarray, shape (mics, 3)
        Microphone positions in room coordinates, metres.
    src_room : ndarray, shape (sources, 3)
        Source positions in room coordinates, metres.
    fs : int
        Sample rate, Hz.
    room : ndarray, shape (3,)
        Room size, metres.
    rt60 : float
        Target reverberation time in seconds; 0 gives the direct path only.
    max_order : int or None
        Image-source order; None picks the order that is complete for the first 60 ms.
    rng : numpy.random.Generator
        Randomness of the diffuse tail.

    Returns
    -------
    rirs : list of ndarray
        One float64 array of shape (mics, taps) per source. Tap ``n`` is at time ``(n - delay) / fs``
        after emission, ``delay`` being pyroomacoustics' global delay (half its fractional-delay
        filter, 40 taps), which leaves room for the filters' leading halves.
    info : dict
        ``order`` (ISM order used), ``t_ism`` (seconds up to which the ISM is complete), ``alpha``
        (energy absorption of the walls), ``delay`` (the global delay in taps).
    """
    from doascope.extras import optional_import

    pra = optional_import("pyroomacoustics")
    fdl = int(pra.constants.get("frac_delay_length"))
    gdelay = fdl // 2
    if rt60 == 0.0:
        order, alpha = 0, 0.0
    else:
        alpha = _eyring_absorption(rt60, room, c)
        if max_order is None:
            order = 0
            while order < _ISM_MAX_ORDER and _ism_complete_time(order, room, c) < _ISM_COVERAGE_S:
                order += 1
        else:
            order = int(max_order)
    kw = {} if rt60 == 0.0 else {"materials": pra.Material(alpha)}
    shoebox = pra.ShoeBox(room, fs=fs, max_order=order, air_absorption=False, **kw)
    shoebox.add_microphone_array(mics_room.T)
    for p in src_room:
        shoebox.add_source(p)
    shoebox.compute_rir()

    t_ism = math.inf if rt60 == 0.0 else _ism_complete_time(order, room, c)
    n_mics = mics_room.shape[0]
    tail_end = rt60 * _TAIL_DEPTH_DB / 60.0
    n_fade = max(2, int(round(_CROSSFADE_S * fs)))
    mixing = None
    rirs = []
    for s in range(src_room.shape[0]):
        ism = [np.asarray(shoebox.rir[m][s], dtype=np.float64) for m in range(n_mics)]
        if not math.isfinite(t_ism) or t_ism >= tail_end:
            # Anechoic, or the image sources already cover the whole decay: nothing to add.
            taps = max(len(h) for h in ism)
            h = np.zeros((n_mics, taps))
            for m in range(n_mics):
                h[m, : len(ism[m])] = ism[m]
            rirs.append(h)
            continue
        # The tail may not start before the direct sound (and its fractional-delay filter) has passed at
        # every mic: with low orders the ISM bound is shorter than the direct path itself.
        t_direct = float(np.max(np.linalg.norm(mics_room - src_room[s], axis=1))) / c
        t_x = max(t_ism, t_direct + (gdelay + 8) / fs)  # crossfade start, seconds after emission
        i_x = gdelay + int(math.ceil(t_x * fs))  # ... as a tap index (taps carry the global delay)
        taps = max(gdelay + int(math.ceil(tail_end * fs)), i_x + n_fade + 1)
        h = np.zeros((n_mics, taps))
        fade = np.sin(0.5 * np.pi * (np.arange(n_fade) + 0.5) / n_fade)  # power-complementary sin/cos
        for m in range(n_mics):
            e = ism[m][: min(len(ism[m]), i_x + n_fade)]
            h[m, : len(e)] = e
            k = min(n_fade, max(0, len(e) - i_x))
            h[m, i_x : i_x + k] *= fade[::-1][:k]
        n_tail = taps - i_x
        nfft = n_tail + (n_tail % 2)
        if mixing is None or mixing.shape[0] != nfft // 2 + 1:
            mixing = _diffuse_mixing(mics_room, nfft, fs, c)
        spec = np.fft.rfft(rng.standard_normal((n_mics, nfft)), axis=1)  # (mics, freqs)
        tail = np.fft.irfft(np.einsum("fij,jf->if", mixing, spec), n=nfft, axis=1)[:, :n_tail]
        t = (i_x - gdelay + np.arange(n_tail)) / fs
        # Diffuse-field level: images arrive at 4 pi r^2 c / (V fs) per sample, each with amplitude
        # 1 / r (pyroomacoustics' convention), so the expected squared tap is 4 pi c / (V fs) times the
        # energy decay 10^(-6 t / RT60). At the crossover this matches the ISM's own level (<0.5 dB).
        env = math.sqrt(4.0 * math.pi * c / (float(np.prod(room)) * fs)) * 10.0 ** (-3.0 * t / rt60)
        env[:n_fade] *= fade
        h[:, i_x:] += tail * env[None, :]
        rirs.append(h)
    return rirs, {"order": order, "t_ism": t_ism, "alpha": alpha, "delay": gdelay}


def _source_signal(
    kind: str, duration: float, fs: int, rng: np.random.Generator, voice_index: int
) -> np.ndarray:
    if kind == "speech":
        return talker(duration, fs, rng, voice_index=voice_index)
    return noise_source(duration, fs, rng, kind="pink" if kind == "noise" else kind)


def _frac_delay(x: np.ndarray, delay_samples: float, n_out: int) -> np.ndarray:
    # Band-limited (FFT) fractional delay with enough zero padding that nothing wraps around.
    nfft = sp_fft.next_fast_len(n_out + len(x) + int(math.ceil(delay_samples)) + 1)
    f = np.fft.rfftfreq(nfft)
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.exp(-2j * np.pi * f * delay_samples), nfft)
    return y[:n_out]


# --------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------


def simulate_scene(
    positions: np.ndarray,
    fs: int,
    sources: Sequence[SourceSpec],
    *,
    duration: float = 4.0,
    rt60: float = 0.4,
    snr_db: float = 20.0,
    room_dim=(6.0, 5.0, 3.0),
    array_centre=None,
    rotation_deg: float = 0.0,
    seed: int = 0,
    max_order: int | None = None,
) -> Scene:
    """Render point sources in a shoebox room as a microphone array hears them.

    The array frame sits at ``array_centre`` in the room, yawed by ``rotation_deg``: a mic at ``p`` in
    the array frame is at ``array_centre + R_z(rotation_deg) @ p`` in the room, and a source given at
    (azimuth, elevation, distance) in the array frame is placed at
    ``array_centre + distance * R_z(rotation_deg) @ u(azimuth, elevation)``. The room's walls all have
    the frequency-independent absorption that gives ``rt60`` (Eyring); the response is the image-source
    method up to ``max_order`` followed by a diffuse, exponentially decaying tail (see the module
    docstring), convolved with each source's signal. White Gaussian sensor noise, independent per mic, is
    added at ``snr_db`` below the mean reverberant signal power over the times any source is on; the sum
    is scaled to a peak of 0.5.

    Parameters
    ----------
    positions : array_like, shape (mics, 3)
        Microphone positions in the array frame, metres.
    fs : int
        Sample rate in Hz.
    sources : sequence of SourceSpec
        The sources, in the array frame. Source ``i`` gets talker voice ``i`` (shuffled by the seed).
    duration : float, optional
        Length of the scene in seconds.
    rt60 : float, optional
        Reverberation time in seconds; 0 means anechoic (direct path only, no reflections).
    snr_db : float, optional
        Signal-to-sensor-noise ratio in dB; ``inf`` adds no noise.
    room_dim : tuple of float, optional
        Room size (x, y, z) in metres, each at least 1 m.
    array_centre : array_like, shape (3,), optional
        Array origin in room coordinates, metres. Default: the middle of the floor plan, shifted by up to
        ±0.25 m in x and y (drawn from ``seed``), at a height of 1.2 m.
    rotation_deg : float, optional
        Yaw of the array in the room, degrees counter-clockwise about the vertical.
    seed : int, optional
        Seeds every random choice (signals, voices, tail, sensor noise): same seed, same scene.
    max_order : int or None, optional
        Image-source reflection order. None (default) uses the order whose reflections are complete for
        the first 60 ms and a diffuse tail after it; a larger order moves the crossover later (slower,
        and in a shoebox with specular walls less faithful to the target RT60).

    Returns
    -------
    Scene
        The audio (float32, (frames, mics)), the per-source direct-path signals, and the true source
        directions in the array frame. A source that would have come closer than 0.3 m to a wall is
        moved closer to the array along its direction, and ``Scene.sources`` gives its real distance.

    Raises
    ------
    ParameterError
        For inconsistent arguments: mics outside the room, a source that cannot be placed at least
        0.3 m from the walls and clear of the array, a source starting after the scene ends, etc.
    """
    pos = _check_positions(positions)
    fs = _check_fs(fs)
    duration = _check_duration(duration)
    room = _check_room(room_dim)
    rt60, snr_db = _check_rt60_snr(rt60, snr_db)
    if max_order is not None and (
        isinstance(max_order, bool) or not isinstance(max_order, (int, np.integer)) or max_order < 0
    ):
        raise ParameterError(f"max_order must be a non-negative integer or None, got {max_order!r}.")
    if rt60 == 0.0 and max_order not in (None, 0):
        raise ParameterError("rt60 = 0 means anechoic: leave max_order at None (or 0).")
    specs = list(sources)
    if not specs:
        raise ParameterError("A scene needs at least one source.")
    for s in specs:
        if not isinstance(s, SourceSpec):
            raise ParameterError(f"sources must be SourceSpec objects, got {type(s).__name__}.")
        if s.start >= duration:
            raise ParameterError(f"A source starts at {s.start} s, after the {duration} s scene has ended.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ParameterError(f"seed must be an integer, got {seed!r}.")

    # Independent streams, so that e.g. changing snr_db leaves the signals and the tail untouched.
    ss = np.random.SeedSequence(int(seed) & ((1 << 128) - 1))
    rng_place, rng_voice, rng_tail, rng_noise, *rng_src = [
        np.random.default_rng(s) for s in ss.spawn(4 + len(specs))
    ]

    rot = _rot_z(float(rotation_deg))
    if array_centre is None:
        centre = np.array(
            [
                room[0] / 2 + rng_place.uniform(-0.25, 0.25),
                room[1] / 2 + rng_place.uniform(-0.25, 0.25),
                min(1.2, room[2] / 2),
            ]
        )
    else:
        centre = np.asarray(array_centre, dtype=np.float64)
        if centre.shape != (3,) or not np.all(np.isfinite(centre)):
            raise ParameterError(
                f"array_centre must be three room coordinates in metres, got {array_centre!r}."
            )
    mics = centre[None, :] + pos @ rot.T
    if np.any(mics < _MIC_WALL_MARGIN) or np.any(mics > room - _MIC_WALL_MARGIN):
        raise ParameterError(
            f"Some microphones are outside the {room[0]:g} x {room[1]:g} x {room[2]:g} m room (or within "
            f"{_MIC_WALL_MARGIN} m of a wall): move array_centre or use a bigger room."
        )
    array_radius = float(np.max(np.linalg.norm(pos, axis=1)))
    min_dist = max(0.3, 1.5 * array_radius)

    # Place the sources, shortening a distance that would put a source within 0.3 m of a wall.
    placed, src_room = [], []
    lo, hi = np.full(3, _SOURCE_WALL_MARGIN), room - _SOURCE_WALL_MARGIN
    for s in specs:
        v = rot @ _unit(float(s.azimuth), float(s.elevation))
        d_max = math.inf
        for ax in range(3):
            if v[ax] > 1e-12:
                d_max = min(d_max, (hi[ax] - centre[ax]) / v[ax])
            elif v[ax] < -1e-12:
                d_max = min(d_max, (lo[ax] - centre[ax]) / v[ax])
        d = min(float(s.distance), d_max)
        if d < min_dist:
            raise ParameterError(
                f"A source at azimuth {s.azimuth:g}, elevation {s.elevation:g} cannot be placed at least "
                f"{_SOURCE_WALL_MARGIN} m from the walls and {min_dist:.2f} m from the array centre: "
                "move the array or enlarge the room."
            )
        p = centre + d * v
        az, el, r = _direction(rot.T @ (p - centre))
        placed.append(replace(s, azimuth=az, elevation=el, distance=r))
        src_room.append(p)
    src_room = np.array(src_room)

    n = int(round(duration * fs))
    n_src = len(specs)
    voices = rng_voice.permutation(len(VOICES))
    x = np.zeros((n_src, n))
    on = np.zeros(n, dtype=bool)
    for i, s in enumerate(placed):
        a = int(round(s.start * fs))
        b = n if s.stop is None else min(n, int(round(s.stop * fs)))
        if b <= a:
            raise ParameterError(f"Source {i} is on for less than one sample ({s.start} s to {s.stop} s).")
        voice = int(voices[i % len(voices)])
        sig = _source_signal(s.kind, (b - a) / fs, fs, rng_src[i], voice).astype(np.float64)
        sig = sig[: b - a]
        # Equal power per source while on (speech pauses included): levels at the array then differ only
        # by distance, as for talkers speaking equally loud.
        sig /= max(float(np.sqrt(np.mean(sig**2))), 1e-12)
        x[i, a : a + len(sig)] = sig
        on[a:b] = True

    rirs, info = _room_impulse_responses(mics, src_room, fs, room, rt60, max_order, rng_tail)
    g = info["delay"]
    y = np.zeros((pos.shape[0], n))
    dry = np.zeros((n, n_src))
    for i in range(n_src):
        # Dropping the RIR's global delay from the output (not from the RIR, which would cut the
        # leading half of near sources' fractional-delay filters) puts sample k at time k / fs. Only n
        # samples are kept: the scene is a recording of `duration` seconds.
        y += sps.oaconvolve(x[i][None, :], rirs[i], axes=1)[:, g : g + n]
        r = float(np.linalg.norm(src_room[i] - centre))
        dry[:, i] = _frac_delay(x[i], r / SPEED_OF_SOUND * fs, n) / r

    p_sig = float(np.mean(y[:, on] ** 2)) if on.any() else float(np.mean(y**2))
    audio = y.T
    if math.isfinite(snr_db):
        sigma = math.sqrt(p_sig / 10.0 ** (snr_db / 10.0))
        audio = audio + sigma * rng_noise.standard_normal(audio.shape)
    peak = float(np.max(np.abs(audio)))
    gain = 0.5 / peak if peak > 0 else 1.0
    return Scene(
        audio=(audio * gain).astype(np.float32),
        fs=fs,
        sources=tuple(placed),
        dry=(dry * gain).astype(np.float32),
        rt60=rt60,
        snr_db=snr_db,
        room_dim=tuple(float(v) for v in room),
        array_centre=centre,
        rotation_deg=float(rotation_deg),
        positions=pos,
    )


def random_scene(
    positions: np.ndarray,
    fs: int,
    rng: np.random.Generator,
    *,
    n_sources: int,
    rt60_range=(0.2, 0.9),
    snr_range=(0, 25),
    min_separation_deg: float = 30.0,
    duration: float = 4.0,
    kinds=("speech", "speech", "noise"),
    planar: bool = True,
) -> Scene:
    """A random scene for benchmarks: random room, placement, sources, RT60 and SNR.

    Room sizes are drawn in 4-8 x 3-7 x 2.5-3.5 m; the array centre at least 1.3 m from the side walls
    at a height of 1.0-1.5 m, with a random yaw in [0, 360); sources at azimuths at least
    ``min_separation_deg`` apart (circularly), 1-2.5 m away (shortened near walls), at elevations in
    [-10, 30] degrees (planar arrays, which cannot tell up from down anyway) or [-30, 60] degrees.
    Source 0 is speech; each other source's kind is drawn uniformly from ``kinds`` (repeat an entry to
    make it likelier). All sources play for the whole scene.

    Parameters
    ----------
    positions : array_like, shape (mics, 3)
        Microphone positions in the array frame, metres.
    fs : int
        Sample rate in Hz.
    rng : numpy.random.Generator
        Source of all randomness; the scene is deterministic for its state.
    n_sources : int
        Number of sources, at least 1.
    rt60_range : (float, float), optional
        RT60 is drawn uniformly in this range, seconds.
    snr_range : (float, float), optional
        Sensor SNR is drawn uniformly in this range, dB.
    min_separation_deg : float, optional
        Least azimuth difference between any two sources, degrees.
    duration : float, optional
        Length in seconds.
    kinds : sequence of str, optional
        Kinds for sources after the first (see :class:`SourceSpec`).
    planar : bool, optional
        Whether the array is planar (sources then stay near its plane, above or slightly below).

    Returns
    -------
    Scene
    """
    pos = _check_positions(positions)
    rng = _check_rng(rng)
    if isinstance(n_sources, bool) or not isinstance(n_sources, (int, np.integer)) or n_sources < 1:
        raise ParameterError(f"n_sources must be a positive integer, got {n_sources!r}.")
    if not 0.0 <= float(min_separation_deg) or n_sources * float(min_separation_deg) > 360.0:
        raise ParameterError(
            f"{n_sources} sources cannot be {min_separation_deg} degrees apart around a circle."
        )
    lo_rt, hi_rt = (float(v) for v in rt60_range)
    lo_snr, hi_snr = (float(v) for v in snr_range)
    if not 0.0 <= lo_rt <= hi_rt:
        raise ParameterError(
            f"rt60_range must be (low, high) seconds with 0 <= low <= high, got {rt60_range!r}."
        )
    if lo_snr > hi_snr:
        raise ParameterError(f"snr_range must be (low, high) dB with low <= high, got {snr_range!r}.")
    kinds = tuple(kinds)
    for k in kinds:
        if k not in _SOURCE_KINDS:
            raise ParameterError(f"Unknown source kind {k!r}: use one of {', '.join(_SOURCE_KINDS)}.")
    if n_sources > 1 and not kinds:
        raise ParameterError("kinds must name at least one kind for the sources after the first.")

    room = np.array([rng.uniform(4.0, 8.0), rng.uniform(3.0, 7.0), rng.uniform(2.5, 3.5)])
    centre = np.array(
        [rng.uniform(1.3, room[0] - 1.3), rng.uniform(1.3, room[1] - 1.3), rng.uniform(1.0, 1.5)]
    )
    rotation = float(rng.uniform(0.0, 360.0))
    # Azimuths by rejection: cheap for the separations that fit easily, and exact.
    sep = float(min_separation_deg)
    for _ in range(10000):
        az = rng.uniform(0.0, 360.0, n_sources)
        diff = np.abs(az[:, None] - az[None, :]) % 360.0
        diff = np.minimum(diff, 360.0 - diff) + 360.0 * np.eye(n_sources)
        if n_sources == 1 or diff.min() >= sep:
            break
    else:
        # dense packings: spread them evenly with a random offset and jitter within the slack
        az = (rng.uniform(0.0, 360.0) + np.arange(n_sources) * 360.0 / n_sources) % 360.0
    el_lo, el_hi = (-10.0, 30.0) if planar else (-30.0, 60.0)
    specs = []
    for i in range(n_sources):
        kind = "speech" if i == 0 else str(kinds[int(rng.integers(len(kinds)))])
        specs.append(
            SourceSpec(
                azimuth=float(az[i]),
                elevation=float(rng.uniform(el_lo, el_hi)),
                distance=float(rng.uniform(1.0, 2.5)),
                kind=kind,
            )
        )
    return simulate_scene(
        pos,
        fs,
        specs,
        duration=duration,
        rt60=float(rng.uniform(lo_rt, hi_rt)),
        snr_db=float(rng.uniform(lo_snr, hi_snr)),
        room_dim=tuple(room),
        array_centre=centre,
        rotation_deg=rotation,
        seed=int(rng.integers(0, 2**63 - 1)),
    )


# --------------------------------------------------------------------------------------------------
# Distributed microphones
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RoomRecording:
    """What microphones placed in a room heard (see :func:`simulate_room`).

    Attributes: ``audio`` float32 (frames, mics), peak 0.5; ``fs``; ``mics`` and ``sources`` (n, 3)
    float64 room positions in metres; ``rt60`` s; ``snr_db``; ``room_dim`` (x, y, z) m; ``on`` (frames,
    sources) bool, when each source plays.
    """

    audio: np.ndarray
    fs: int
    mics: np.ndarray
    sources: np.ndarray
    rt60: float
    snr_db: float
    room_dim: tuple
    on: np.ndarray


def simulate_room(
    mic_positions_room,
    fs: int,
    source_positions,
    *,
    room_dim=(6.0, 5.0, 3.0),
    duration: float = 3.0,
    rt60: float = 0.4,
    snr_db: float = 20.0,
    kinds: Sequence[str] | None = None,
    seed: int = 0,
) -> RoomRecording:
    """Render point sources at room positions for microphones at room positions (distributed arrays).

    The same room model as :func:`simulate_scene` (image sources for the first 60 ms, then a diffuse
    tail of the target RT60, white sensor noise at ``snr_db``, equal source power, peak 0.5), with
    every position given directly in room coordinates, metres (origin in a floor corner).

    Parameters
    ----------
    mic_positions_room : array_like, shape (mics, 3)
    fs : int
    source_positions : array_like, shape (sources, 3); each at least 0.3 m from every wall
    room_dim, duration, rt60, snr_db, seed : as for :func:`simulate_scene`
    kinds : one :class:`SourceSpec` kind per source (default: speech for all)

    Returns
    -------
    RoomRecording
    """
    mics = _check_positions(mic_positions_room)
    src = _check_positions(source_positions)
    fs = _check_fs(fs)
    duration = _check_duration(duration)
    room = _check_room(room_dim)
    rt60, snr_db = _check_rt60_snr(rt60, snr_db)
    if np.any(mics < _MIC_WALL_MARGIN - 1e-9) or np.any(mics > room - _MIC_WALL_MARGIN + 1e-9):
        raise ParameterError(f"Some microphones are outside the room or within {_MIC_WALL_MARGIN} m of a wall.")
    if np.any(src < _SOURCE_WALL_MARGIN - 1e-9) or np.any(src > room - _SOURCE_WALL_MARGIN + 1e-9):
        raise ParameterError(f"Every source must be at least {_SOURCE_WALL_MARGIN} m from every wall.")
    kinds = ["speech"] * len(src) if kinds is None else list(kinds)
    if len(kinds) != len(src) or any(k not in _SOURCE_KINDS for k in kinds):
        raise ParameterError(f"kinds must give one of {', '.join(_SOURCE_KINDS)} per source.")
    ss = np.random.SeedSequence(int(seed) & ((1 << 128) - 1))
    rng_voice, rng_tail, rng_noise, *rng_src = [np.random.default_rng(s) for s in ss.spawn(3 + len(src))]
    n = int(round(duration * fs))
    voices = rng_voice.permutation(len(VOICES))
    x = np.zeros((len(src), n))
    for i, kind in enumerate(kinds):
        sig = _source_signal(kind, duration, fs, rng_src[i], int(voices[i % len(voices)]))[:n].astype(np.float64)
        x[i, : len(sig)] = sig / max(float(np.sqrt(np.mean(sig**2))), 1e-12)
    rirs, info = _room_impulse_responses(mics, src, fs, room, rt60, None, rng_tail)
    g = info["delay"]
    y = np.zeros((mics.shape[0], n))
    for i in range(len(src)):
        y += sps.oaconvolve(x[i][None, :], rirs[i], axes=1)[:, g : g + n]
    audio = y.T
    if math.isfinite(snr_db):
        sigma = math.sqrt(float(np.mean(y**2)) / 10.0 ** (snr_db / 10.0))
        audio = audio + sigma * rng_noise.standard_normal(audio.shape)
    peak = float(np.max(np.abs(audio)))
    on = np.abs(x.T) > 0
    return RoomRecording(audio=(audio * (0.5 / peak if peak > 0 else 1.0)).astype(np.float32), fs=fs, mics=mics,
                         sources=src, rt60=rt60, snr_db=snr_db, room_dim=tuple(float(v) for v in room), on=on)
