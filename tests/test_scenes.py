"""Tests of doascope.sim.scenes: simulated rooms and the ground truth they report.

Everything here is short (<= 2 s scenes, 4 mics, 16 kHz): each scene renders in well under a second.
"""

import math

import numpy as np
import pytest

from doascope import AudioInputError, ParameterError
from doascope.sim import scenes, signals
from doascope.sim.scenes import SourceSpec, random_scene, simulate_scene

FS = 16000
C = 343.0

needs_espeak = pytest.mark.skipif(
    not scenes.espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


def ring(n=4, radius=0.1):
    """Uniform circular array in the x-y plane, mic 0 on +x, counter-clockwise; shape (n, 3)."""
    a = 2 * np.pi * np.arange(n) / n
    return np.c_[radius * np.cos(a), radius * np.sin(a), np.zeros(n)]


def tetra(radius=0.08):
    """Non-planar 4-mic array (regular tetrahedron), so elevation shows in the delays; shape (4, 3)."""
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
    return radius * v / np.sqrt(3)


def delay_samples(x, ref, max_lag):
    """Lag (fractional samples) by which x lags ref, from the cross-correlation peak.

    Sub-sample precision from the band-limited interpolation of the cross-correlation (zero-padded
    FFT, 16x), valid for white-ish signals.
    """
    n = len(x) + len(ref)
    up = 16
    spec = np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n))
    cc = np.fft.irfft(spec, n * up) * up
    lags = np.r_[np.arange(0, max_lag * up + 1), np.arange(-max_lag * up, 0)]
    vals = cc[lags]
    return lags[np.argmax(vals)] / up


def expected_delays(spec, positions):
    """Arrival time at each mic (s) for a point source given in the array frame by spec."""
    az, el = math.radians(spec.azimuth), math.radians(spec.elevation)
    src = spec.distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    return np.linalg.norm(src[None, :] - positions, axis=1) / C


def test_deterministic_for_a_seed():
    pos = ring(4, 0.05)
    srcs = [SourceSpec(30.0), SourceSpec(200.0, kind="noise")]
    kw = dict(duration=1.0, rt60=0.3, snr_db=15.0)
    a = simulate_scene(pos, FS, srcs, seed=7, **kw)
    b = simulate_scene(pos, FS, srcs, seed=7, **kw)
    c = simulate_scene(pos, FS, srcs, seed=8, **kw)
    assert a.audio.dtype == np.float32 and a.audio.shape == (FS, 4)
    assert a.dry.dtype == np.float32 and a.dry.shape == (FS, 2)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.dry, b.dry)
    np.testing.assert_array_equal(a.array_centre, b.array_centre)
    assert not np.array_equal(a.audio, c.audio)
    # peak-normalised, never clipping
    assert 0.49 < np.max(np.abs(a.audio)) <= 0.5 + 1e-6

    r1 = random_scene(pos, FS, np.random.default_rng(3), n_sources=2, duration=0.5)
    r2 = random_scene(pos, FS, np.random.default_rng(3), n_sources=2, duration=0.5)
    np.testing.assert_array_equal(r1.audio, r2.audio)
    assert r1.sources == r2.sources and r1.room_dim == r2.room_dim


@pytest.mark.parametrize("rotation", [0.0, 77.0])
def test_anechoic_delay_matches_geometry(rotation):
    # 4 mics on a 0.1 m circle (mic 0 on +x, mic 1 on +y), white source at azimuth 60 in the array
    # frame: it reaches mic 0 before mic 2 (x-axis pair) and mic 1 before mic 3 (y-axis pair).
    pos = ring(4, 0.1)
    sc = simulate_scene(
        pos, FS, [SourceSpec(60.0, distance=1.5, kind="white")],
        duration=0.5, rt60=0.0, snr_db=math.inf, rotation_deg=rotation, seed=1,
    )
    assert sc.sources[0].azimuth == pytest.approx(60.0, abs=1e-6)
    x = sc.audio.astype(np.float64)
    lag_20 = delay_samples(x[:, 2], x[:, 0], 20)  # how much later mic 2 hears it than mic 0
    lag_31 = delay_samples(x[:, 3], x[:, 1], 20)
    t = expected_delays(sc.sources[0], pos)
    assert lag_20 == pytest.approx((t[2] - t[0]) * FS, abs=0.1)
    assert lag_31 == pytest.approx((t[3] - t[1]) * FS, abs=0.1)
    # ...and the far-field values, sign included: 0.2 m cos(60) / c and 0.2 m sin(60) / c
    assert lag_20 == pytest.approx(0.2 * math.cos(math.radians(60)) / C * FS, abs=0.15)
    assert lag_31 == pytest.approx(0.2 * math.sin(math.radians(60)) / C * FS, abs=0.15)
    assert lag_20 > 0 and lag_31 > 0


def test_truth_matches_placement_with_rotation_and_shrinking():
    # Non-planar array yawed 130 degrees; the second source is asked for 20 m away and must be pulled in
    # to fit the room, and the truth reported must be where it actually is.
    pos = tetra()
    room = (5.0, 4.0, 3.0)
    centre = np.array([2.2, 1.9, 1.3])
    sc = simulate_scene(
        pos, FS,
        [SourceSpec(300.0, elevation=25.0, distance=1.2, kind="white"),
         SourceSpec(110.0, elevation=-15.0, distance=20.0, kind="white", start=0.5)],
        duration=1.0, rt60=0.0, snr_db=math.inf, room_dim=room, array_centre=centre,
        rotation_deg=130.0, seed=2,
    )
    s0, s1 = sc.sources
    assert (s0.azimuth, s0.elevation, s0.distance) == pytest.approx((300.0, 25.0, 1.2), abs=1e-6)
    assert (s1.azimuth, s1.elevation) == pytest.approx((110.0, -15.0), abs=1e-6)
    assert s1.distance < 20.0
    # the shortened source sits exactly 0.3 m from the nearest wall
    R = np.array([[math.cos(math.radians(130)), -math.sin(math.radians(130)), 0],
                  [math.sin(math.radians(130)), math.cos(math.radians(130)), 0], [0, 0, 1]])
    az, el = math.radians(s1.azimuth), math.radians(s1.elevation)
    u = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    p = centre + s1.distance * R @ u
    gap = min(np.min(p), np.min(np.array(room) - p))
    assert gap == pytest.approx(0.3, abs=1e-9)
    np.testing.assert_allclose(sc.mic_positions_room, centre + pos @ R.T)

    # The audio agrees with the reported truth. Source 0 plays alone for the first 0.5 s: its
    # inter-mic delays must be those of its reported position.
    x = sc.audio.astype(np.float64)
    n0 = FS // 2
    t0 = expected_delays(s0, pos)
    for m in range(1, 4):
        assert delay_samples(x[:n0, m], x[:n0, 0], 20) == pytest.approx((t0[m] - t0[0]) * FS, abs=0.1)
    # dry is the signal at the array centre: each mic lags it by (|src - mic| - distance) / c
    for i, s in enumerate(sc.sources):
        t = expected_delays(s, pos)
        seg = slice(n0 + FS // 10, FS) if i == 1 else slice(0, n0)
        for m in range(4):
            # the other source is on too after 0.5 s, but it is uncorrelated with this dry signal
            lag = delay_samples(x[seg, m], sc.dry[seg, i].astype(np.float64), 40)
            assert lag == pytest.approx((t[m] - s.distance / C) * FS, abs=0.15)


def test_snr_is_achieved():
    # Source on for the first second only; after its short reverberant tail the mics hold noise alone.
    pos = ring(4, 0.05)
    sc = simulate_scene(
        pos, FS, [SourceSpec(45.0, kind="noise", stop=1.0)],
        duration=1.6, rt60=0.2, snr_db=10.0, seed=4,
    )
    x = sc.audio.astype(np.float64)
    p_on = np.mean(x[:FS] ** 2)  # signal + noise while the source is on
    p_noise = np.mean(x[int(1.3 * FS):] ** 2)  # 0.3 s after the stop: the 0.2 s RT60 tail is < -90 dB
    snr = 10 * np.log10((p_on - p_noise) / p_noise)
    assert snr == pytest.approx(10.0, abs=1.0)


def test_rt60_of_the_room_model():
    # The image-source + diffuse-tail room decays at the requested rate (T30 of the impulse responses).
    from pyroomacoustics.experimental import measure_rt60

    room = np.array([6.0, 5.0, 3.0])
    mics = np.array([3.1, 2.4, 1.2]) + ring(4, 0.05)
    src = np.array([[4.3, 3.1, 1.5]])
    for rt60 in (0.3, 0.8):
        rirs, info = scenes._room_impulse_responses(mics, src, FS, room, rt60, None, np.random.default_rng(0))
        t30 = np.median([measure_rt60(h, FS, decay_db=30) for h in rirs[0]])
        assert t30 == pytest.approx(rt60, rel=0.1)
        assert info["order"] >= 1


def test_active_is_false_after_stop():
    pos = ring(4, 0.05)
    sc = simulate_scene(
        pos, FS,
        [SourceSpec(90.0, kind="noise", start=0.0, stop=1.0), SourceSpec(250.0, kind="noise", start=0.5)],
        duration=2.0, rt60=0.3, snr_db=20.0, seed=5,
    )
    block = 1024
    starts = range(0, sc.audio.shape[0] - block + 1, block)
    act = np.array([sc.active(s, s + block) for s in starts])
    t = np.array([(s + block / 2) / FS for s in starts])
    assert not act[t > 1.05, 0].any()  # source 0 stopped at 1.0 s
    assert act[(t > 0.1) & (t < 0.95), 0].all()  # steady noise: on all the time it plays
    assert not act[t < 0.45, 1].any()  # source 1 starts at 0.5 s
    assert act[t > 0.6, 1].all()


def test_active_marks_speech_pauses():
    # A talker is not active everywhere: the lead-in silence and the pauses between phrases are not.
    pos = ring(4, 0.05)
    sc = simulate_scene(pos, FS, [SourceSpec(10.0)], duration=2.0, rt60=0.2, seed=6)
    block = 512
    act = np.array([sc.active(s, s + block)[0] for s in range(0, 2 * FS - block + 1, block)])
    assert act.any()
    assert not act[0]  # 50-200 ms of lead-in silence before the first word


@needs_espeak
def test_speech_is_audible_and_plausibly_long():
    text = "The birch canoe slid on the smooth planks."
    x = scenes.speech(text, FS)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 1.0 < len(x) / FS < 5.0  # eight words at 160 words per minute, plus espeak's padding
    assert np.max(np.abs(x)) == pytest.approx(0.5, abs=1e-6)
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 0.02
    y = scenes.speech(text, 48000)
    assert len(y) / 48000 == pytest.approx(len(x) / FS, abs=0.01)
    with pytest.raises(ParameterError):
        scenes.speech("", FS)


@needs_espeak
def test_talker_has_exact_length():
    x = scenes.talker(1.3, FS, np.random.default_rng(0), voice_index=4)
    assert x.shape == (round(1.3 * FS),) and x.dtype == np.float32
    assert np.max(np.abs(x)) > 0.4


def test_without_espeak(monkeypatch):
    # speech() says what to install; talker() falls back to the synthetic talker of the same length
    monkeypatch.setattr(signals.shutil, "which", lambda name: None)
    with pytest.raises(AudioInputError, match="apt-get install espeak-ng"):
        scenes.speech("hello", FS)
    x = scenes.talker(0.8, FS, np.random.default_rng(1))
    np.testing.assert_array_equal(x, scenes.speech_like(0.8, FS, np.random.default_rng(1)))


def test_synthetic_signals():
    rng = np.random.default_rng(0)
    s = scenes.speech_like(1.5, FS, rng)
    assert s.shape == (round(1.5 * FS),) and s.dtype == np.float32
    assert np.max(np.abs(s)) == pytest.approx(0.5, abs=1e-6)
    # syllables come and go: the 20 ms frame energy spans a wide range, as in speech
    e = np.sum(s[: len(s) // 320 * 320].reshape(-1, 320).astype(np.float64) ** 2, axis=1)
    assert np.percentile(e, 90) > 100 * (np.percentile(e, 10) + 1e-12)
    for kind in scenes.NOISE_KINDS:
        x = scenes.noise_source(0.5, FS, rng, kind=kind)
        assert x.shape == (FS // 2,) and x.dtype == np.float32 and np.max(np.abs(x)) > 0.49
    with pytest.raises(ParameterError):
        scenes.noise_source(0.5, FS, rng, kind="purple")


def test_random_scene_respects_its_ranges():
    pos = ring(4, 0.05)
    sc = random_scene(pos, FS, np.random.default_rng(11), n_sources=3, duration=0.5, min_separation_deg=40.0)
    assert sc.audio.shape == (FS // 2, 4) and sc.dry.shape == (FS // 2, 3)
    assert sc.sources[0].kind == "speech"
    az = np.array([s.azimuth for s in sc.sources])
    d = np.abs(az[:, None] - az[None, :]) % 360
    d = np.minimum(d, 360 - d) + 360 * np.eye(3)
    assert d.min() >= 40.0 - 1e-6
    assert all(-10.0 - 1e-6 <= s.elevation <= 30.0 + 1e-6 for s in sc.sources)
    assert all(0.3 <= s.distance <= 2.5 + 1e-9 for s in sc.sources)
    assert 0.2 <= sc.rt60 <= 0.9 and 0.0 <= sc.snr_db <= 25.0
    with pytest.raises(ParameterError):
        random_scene(pos, FS, np.random.default_rng(0), n_sources=4, min_separation_deg=100.0)


def test_invalid_inputs_are_explained():
    pos = ring(4, 0.05)
    with pytest.raises(ParameterError, match="outside"):
        simulate_scene(pos, FS, [SourceSpec(0.0)], array_centre=(0.01, 2.0, 1.2), duration=0.2)
    with pytest.raises(ParameterError, match="cannot be placed"):
        simulate_scene(pos, FS, [SourceSpec(180.0)], array_centre=(0.4, 2.0, 1.2), duration=0.2)
    with pytest.raises(ParameterError):
        simulate_scene(pos, FS, [], duration=0.2)
    with pytest.raises(ParameterError):
        SourceSpec(10.0, start=2.0, stop=1.0)
    with pytest.raises(ParameterError):
        simulate_scene(np.zeros((4, 4)), FS, [SourceSpec(0.0)], duration=0.2)
