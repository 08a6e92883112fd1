"""Scenes for judging the tracker: talkers that cross, take turns, walk and talk over a fan.

Each scene has a known truth over time (who speaks, and from where), is rendered in a reverberant
shoebox room (moving talkers as chains of short static segments with cross-fades), and is run
through the live engine exactly as ``doascope run --file F --fast --sources K`` would, K being the
number of sources in the scene. ``doascope bench --tracking`` scores the tracks with
:mod:`doascope.dsp.track_metrics`.

The four kinds (after what users report):

- ``crossing``: two talkers walking past each other, each at up to 15 deg/s (30 deg/s apart);
- ``dialogue``: two static talkers taking turns, with gaps between turns;
- ``walking``: one talker walking through 120 degrees, with a pause on the way;
- ``three-and-fan``: three talkers speaking at once and a fan, four sources in all.

Real acoustics: :func:`r3vival_scene` builds static talkers from measured responses of a real
7-mic array in a real room (``shared/data/r3vival``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path as FsPath

import numpy as np

from doascope import ParameterError
from doascope.hardware_profiles import Profile, load_profile, profile_from_dict

KINDS = ("crossing", "dialogue", "walking", "three-and-fan")
# 4-, 7- and 8-mic arrays.
PROFILES = ("respeaker_usb_v2", "respeaker_v1_7mic", "matrix_creator")


@dataclass(frozen=True)
class Talker:
    """One source of a scene: azimuth keyframes (piecewise linear, unwrapped) and speaking intervals."""

    times: tuple[float, ...]
    azimuths: tuple[float, ...]
    talk: tuple[tuple[float, float], ...]
    kind: str = "speech"
    distance: float = 1.5

    def azimuth(self, t) -> np.ndarray:
        return np.interp(t, self.times, self.azimuths) % 360.0

    @property
    def moving(self) -> bool:
        return len(set(self.azimuths)) > 1


@dataclass(frozen=True)
class TrackingScene:
    name: str
    kind: str
    profile: str
    talkers: tuple[Talker, ...]
    duration: float
    rt60: float
    snr_db: float
    room_dim: tuple[float, float, float]
    seed: int
    segment: float = 0.5   # seconds per static segment of a moving scene


@dataclass(frozen=True, eq=False)
class RenderedScene:
    scene: TrackingScene
    profile: Profile
    audio: np.ndarray          # (samples, mics) float32
    fs: int
    truth: object = field(repr=False)     # the first segment's Scene: who is on when
    owner: np.ndarray = field(repr=False)  # (simulated sources,) index of the talker each belongs to

    def speaking(self, start: int, stop: int) -> np.ndarray:
        """Which talkers speak in samples [start, stop)."""
        per_source = self.truth.active(max(0, start), min(stop, self.audio.shape[0]))
        return np.array([bool(per_source[self.owner == i].any()) for i in range(len(self.scene.talkers))])

    def azimuths(self, t: float) -> np.ndarray:
        return np.array([tk.azimuth(t) for tk in self.scene.talkers])


def _separated(rng: np.random.Generator, n: int, min_sep: float) -> list[float]:
    """n azimuths at least min_sep degrees apart (circularly)."""
    while True:
        az = rng.uniform(0, 360, n)
        d = np.abs((az[:, None] - az[None, :] + 180) % 360 - 180) + np.eye(n) * 360
        if d.min() >= min_sep:
            return [float(a) for a in az]


def make_scene(kind: str, profile: str, seed: int) -> TrackingScene:
    """One scene of ``kind`` for ``profile``, every random choice drawn from ``seed``."""
    if kind not in KINDS:
        raise ParameterError(f"unknown scene kind {kind!r}; choose one of: {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind), 7])
    rt60 = float(rng.uniform(0.25, 0.7))
    snr = float(rng.uniform(10, 25))
    room = (float(rng.uniform(5.5, 8.0)), float(rng.uniform(4.5, 6.5)), float(rng.uniform(2.6, 3.2)))
    dist = lambda: float(rng.uniform(1.0, 1.8))  # noqa: E731
    if kind == "crossing":
        duration = 9.0
        a0 = float(rng.uniform(0, 360))
        span = float(rng.uniform(90, 130))        # each walks span degrees in `duration`: <= 15 deg/s
        talkers = (Talker((0.0, duration), (a0, a0 + span), ((0.0, duration),), distance=dist()),
                   Talker((0.0, duration), (a0 + span, a0), ((0.0, duration),), distance=dist()))
    elif kind == "dialogue":
        duration = 12.0
        a, b = _separated(rng, 2, 60.0)
        turns: list[list[tuple[float, float]]] = [[], []]
        t, who = 0.2, 0
        while t < duration - 1.0:
            length = float(rng.uniform(1.5, 3.0))
            turns[who].append((t, min(duration, t + length)))
            t += length + float(rng.uniform(0.2, 0.8))
            who = 1 - who
        talkers = (Talker((0.0,), (a,), tuple(turns[0]), distance=dist()),
                   Talker((0.0,), (b,), tuple(turns[1]), distance=dist()))
    elif kind == "walking":
        duration = 10.0
        a0 = float(rng.uniform(0, 360))
        sign = 1 if rng.random() < 0.5 else -1
        pause = float(rng.uniform(3.5, 5.5))
        talkers = (Talker((0.0, 1.0, 9.0, duration), (a0, a0, a0 + sign * 120, a0 + sign * 120),
                          ((0.0, pause), (pause + 1.0, duration)), distance=dist()),)
    else:  # three-and-fan
        duration = 8.0
        az = _separated(rng, 4, 50.0)
        talkers = tuple(Talker((0.0,), (a,), ((float(rng.uniform(0, 1.5)), duration),), distance=dist())
                        for a in az[:3])
        talkers += (Talker((0.0,), (az[3],), ((0.0, duration),), kind="fan", distance=dist()),)
    return TrackingScene(f"{kind}/{profile}/{seed}", kind, profile, talkers, duration, rt60, snr, room, seed)


def scene_set(seeds, kinds=KINDS, profiles=PROFILES) -> list[TrackingScene]:
    return [make_scene(k, p, s) for s in seeds for k in kinds for p in profiles]


def render(scene: TrackingScene) -> RenderedScene:
    """Simulate the scene: one render per static segment (same seed, so the same voices, tail and
    noise), cross-faded; each speaking interval of a talker is one source of the simulation."""
    from doascope.sim.scenes import SourceSpec, simulate_scene
    from doascope.sim.presets import crossfade

    profile = load_profile(scene.profile)
    fs = profile.sample_rate
    owners = [i for i, tk in enumerate(scene.talkers) for _ in tk.talk]
    moving = any(tk.moving for tk in scene.talkers)
    n_seg = int(math.ceil(scene.duration / scene.segment)) if moving else 1
    renders = []
    for k in range(n_seg):
        t_mid = (k + 0.5) * scene.segment if moving else 0.0
        specs = [SourceSpec(azimuth=float(tk.azimuth(t_mid)), distance=tk.distance, kind=tk.kind, start=a, stop=b)
                 for tk in scene.talkers for a, b in tk.talk]
        renders.append(simulate_scene(profile.positions, fs, specs, duration=scene.duration, rt60=scene.rt60,
                                      snr_db=scene.snr_db, room_dim=scene.room_dim, seed=scene.seed))
    audio = renders[0].audio if n_seg == 1 else crossfade([r.audio for r in renders],
                                                           int(round(scene.segment * fs)), int(0.1 * fs))
    return RenderedScene(scene, profile, audio, fs, renders[0], np.array(owners))


# --- real acoustics -------------------------------------------------------------------------------

R3VIVAL_POSITIONS = [[0.050, 0.0, 0.0], [-0.050, 0.0, 0.0], [0.0, -0.03536, 0.03536], [0.0, 0.03536, 0.03536],
                     [0.0, -0.03536, -0.03536], [0.0, 0.03536, -0.03536], [0.0, 0.0, 0.0]]


def r3vival_profile() -> Profile:
    """The R3VIVAL FRL 10 cm 7-mic array (see shared/data/r3vival/README.md) at 16 kHz."""
    return profile_from_dict({"name": "R3VIVAL FRL 10 cm array", "sample_rate": 16000, "channels": 7,
                              "mic_channels": list(range(7)), "positions": R3VIVAL_POSITIONS,
                              "reference": "shared/data/r3vival/README.md"}, source="r3vival")


def r3vival_scene(folder, dataset_azimuths, talk, *, duration: float, seed: int = 0, snr_db: float = 20.0):
    """Static talkers made from measured responses: talker i is dry speech during ``talk[i]``
    (intervals, seconds) convolved with the response at dataset azimuth ``dataset_azimuths[i]``.

    Returns (audio (samples, 7) float32 at 16 kHz, doascope azimuths, active(start, stop) function).
    """
    import soundfile as sf
    from scipy.signal import oaconvolve, resample_poly

    from doascope.sim.signals import talker as speech

    fs = 16000
    rng = np.random.default_rng(seed)
    n = int(round(duration * fs))
    mix = np.zeros((n, 7))
    dry = np.zeros((n, len(dataset_azimuths)))
    for i, (aaa, intervals) in enumerate(zip(dataset_azimuths, talk, strict=True)):
        path = FsPath(folder) / f"RLRVarAcLab_Absorptive_050_S{int(aaa):03d}-150_R1_FRL10cm.wav"
        if not path.exists():
            raise ParameterError(f"no measured response for dataset azimuth {aaa}: {path} is missing")
        h, fs_h = sf.read(path, dtype="float64", always_2d=True)
        h = resample_poly(h, fs, fs_h, axis=0)
        for a, b in intervals:
            lo, hi = int(a * fs), min(n, int(b * fs))
            s = speech((hi - lo) / fs, fs, rng, voice_index=i).astype(np.float64)[: hi - lo]
            dry[lo:lo + len(s), i] = s / max(float(np.sqrt(np.mean(s ** 2))), 1e-12)
        mix += oaconvolve(dry[:, i:i + 1], h, axes=0)[:n]
    p = float(np.mean(mix ** 2))
    mix += rng.standard_normal(mix.shape) * math.sqrt(p / 10 ** (snr_db / 10))
    mix *= 0.5 / float(np.abs(mix).max())
    azimuths = np.array([(360 - a) % 360 for a in dataset_azimuths], float)
    win = 1024
    ref = [np.percentile(np.sqrt(np.convolve(dry[:, i] ** 2, np.ones(win) / win, "valid")), 95)
           for i in range(dry.shape[1])]

    def active(start: int, stop: int) -> np.ndarray:
        seg = dry[max(0, start):stop]
        return np.sqrt(np.mean(seg ** 2, axis=0)) >= 10 ** (-30 / 20) * np.array(ref)

    return mix.astype(np.float32), azimuths, active


# --- running the engine ---------------------------------------------------------------------------

def run_engine(audio: np.ndarray, fs: int, profile: Profile, config, timeout: float = 600.0) -> list:
    """Every frame of a fast replay through the live engine (what ``run --file --fast`` sees)."""
    from doascope.app.runtime.engine import Engine
    from doascope.app.runtime.sources import ArraySource

    frames: list = []
    engine = Engine(ArraySource(audio, fs, range(audio.shape[1]), speed=0), profile, config)
    engine.subscribe(frames.append)
    engine.start()
    finished = engine.wait(timeout)
    engine.stop()
    if not finished:
        raise TimeoutError(f"the engine did not finish the scene within {timeout:.0f} s")
    if engine.error:
        raise RuntimeError(engine.error)
    return frames


def score_frames(frames, speaking_fn, azimuth_fn, fs: int, window: int):
    """Score an engine run: ``speaking_fn(start, stop)`` and ``azimuth_fn(t)`` give the truth."""
    from doascope.dsp.track_metrics import score_tracks

    times = np.array([f.t for f in frames])
    half = window // 2
    speaking = np.array([speaking_fn(int(round(t * fs)) - half, int(round(t * fs)) + half) for t in times])
    truth = np.array([azimuth_fn(t) for t in times])
    tracks = [[(tr.id, tr.azimuth) for tr in f.tracks] for f in frames]
    return score_tracks(times, speaking, truth, tracks)


def run_scene(rendered: RenderedScene, config) -> object:
    """TrackScores of one rendered scene under an AnalysisConfig."""
    frames = run_engine(rendered.audio, rendered.fs, rendered.profile, config)
    from doascope.dsp.analysis import build_localizer

    window = build_localizer(config, rendered.profile, rendered.fs).block_samples
    return score_frames(frames, rendered.speaking, rendered.azimuths, rendered.fs, window)
