"""Test signals for simulated scenes: speech from espeak-ng, a synthetic speech stand-in, noises.

:func:`speech` speaks a sentence with Debian's ``espeak-ng``; :func:`talker` strings random
sentences into a talker of a given length (falling back to :func:`speech_like`, a synthetic
stand-in with the spectral and temporal traits of speech, where espeak-ng is missing);
:func:`noise_source` makes stationary noise (pink, white, fan, babble). All return float32 mono.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import tempfile
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from doascope import AudioInputError, ParameterError

__all__ = ["SENTENCES", "VOICES", "NOISE_KINDS", "speech", "speech_like", "talker", "noise_source",
           "espeak_available"]

# Harvard sentences (IEEE 1969 "Recommended practice for speech quality measurements"): phonetically
# balanced, short, and free to use, so every talker covers a similar spread of phonemes.
SENTENCES: tuple[str, ...] = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
)

# espeak-ng's English voice with its male and female variants: different pitch, formants and breathiness,
# so simultaneous talkers are told apart by the ear and are not spectrally identical.
VOICES: tuple[str, ...] = tuple(f"en+m{i}" for i in range(1, 8)) + tuple(f"en+f{i}" for i in range(1, 5))

NOISE_KINDS: tuple[str, ...] = ("pink", "white", "fan", "babble")





def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program is on the PATH.

    Returns
    -------
    bool
        True when :func:`speech` can run.
    """
    return shutil.which("espeak-ng") is not None


def _check_fs(fs) -> int:
    if isinstance(fs, bool) or not isinstance(fs, (int, np.integer)) or fs < 1000:
        raise ParameterError(f"The sample rate must be an integer of at least 1000 Hz, got {fs!r}.")
    return int(fs)


def _check_duration(duration) -> float:
    try:
        d = float(duration)
    except (TypeError, ValueError):
        raise ParameterError(f"The duration must be a number of seconds, got {duration!r}.") from None
    if not math.isfinite(d) or d <= 0.0:
        raise ParameterError(f"The duration must be a positive number of seconds, got {duration!r}.")
    return d


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ParameterError(
            "rng must be a numpy random Generator, e.g. numpy.random.default_rng(0); "
            f"got {type(rng).__name__}."
        )
    return rng


def _peak_normalise(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m > 0.0:
        x = x * (peak / m)
    return x.astype(np.float32)


@functools.lru_cache(maxsize=256)
def _espeak_cached(text: str, fs: int, voice: str, speed: int, pitch: int) -> np.ndarray:
    # espeak-ng is deterministic, and benchmarks/tests speak the same ~20 sentences again and again:
    # caching saves a process start and a resampling each time (the caller gets a copy).
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AudioInputError("espeak-ng is not installed: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory(prefix="doascope-espeak-") as tmp:
        wav = os.path.join(tmp, "speech.wav")
        # The text goes through stdin so that a sentence starting with '-' is never read as an option.
        proc = subprocess.run(
            [exe, "--stdin", "-w", wav, "-v", voice, "-s", str(speed), "-p", str(pitch)],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=60,
        )
        msg = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or not os.path.exists(wav):
            if "voice" in msg.lower():
                raise ParameterError(f"espeak-ng does not know the voice {voice!r}: {msg}")
            raise AudioInputError(f"espeak-ng failed (exit code {proc.returncode}): {msg}")
        x, fs_in = sf.read(wav, dtype="float64", always_2d=True)
    x = x[:, 0]
    if fs_in != fs:
        ratio = Fraction(fs, int(fs_in)).limit_denominator(10000)
        x = sps.resample_poly(x, ratio.numerator, ratio.denominator)
    out = _peak_normalise(x)
    out.setflags(write=False)
    return out


def speech(text: str, fs: int, *, voice: str = "en", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """Speak a text with espeak-ng.

    Parameters
    ----------
    text : str
        What to say (any language the voice supports).
    fs : int
        Sample rate of the result in Hz; espeak-ng's 22.05 kHz output is resampled (polyphase).
    voice : str, optional
        espeak-ng voice, e.g. ``"en"``, ``"en+f2"``, ``"de"`` (see ``espeak-ng --voices``).
    speed : int, optional
        Speaking rate in words per minute, 80 to 450.
    pitch : int, optional
        Pitch adjustment, 0 to 99 (50 is the voice's normal pitch).

    Returns
    -------
    numpy.ndarray
        float32, shape (samples,): mono speech at ``fs``, peak-normalised to 0.5.

    Raises
    ------
    AudioInputError
        If espeak-ng is not installed or fails.
    ParameterError
        If an argument is out of range or the voice is unknown.
    """
    fs = _check_fs(fs)
    if not isinstance(text, str) or not text.strip():
        raise ParameterError("speech() needs a non-empty text to speak.")
    if not isinstance(voice, str) or not voice.strip() or voice.startswith("-"):
        raise ParameterError(f"The voice must be an espeak-ng voice name such as 'en+f2', got {voice!r}.")
    if not (80 <= int(speed) <= 450):
        raise ParameterError(f"The speaking rate must be 80 to 450 words per minute, got {speed!r}.")
    if not (0 <= int(pitch) <= 99):
        raise ParameterError(f"The pitch must be 0 to 99, got {pitch!r}.")
    if not espeak_available():
        raise AudioInputError("espeak-ng is not installed: apt-get install espeak-ng")
    return _espeak_cached(text.strip(), fs, voice.strip(), int(speed), int(pitch)).copy()


# Vowel formants (F1, F2, F3) in Hz of an adult male (Peterson & Barney 1952); female voices scale by 1.15.
_VOWELS = np.array(
    [
        [730, 1090, 2440],  # a
        [270, 2290, 3010],  # i
        [300, 870, 2240],  # u
        [530, 1840, 2480],  # e
        [570, 840, 2410],  # o
        [660, 1720, 2410],  # ae
        [490, 1350, 1690],  # er
        [440, 1020, 2240],  # uh
    ],
    dtype=float,
)
_FORMANT_BW = np.array([80.0, 100.0, 140.0])


def _formant_gain(f: np.ndarray, formants: np.ndarray) -> np.ndarray:
    # Magnitude of a cascade of second-order resonators (one per formant), unity at DC: the classic
    # cascade formant synthesiser (Klatt 1980) evaluated at the harmonic frequencies.
    g = np.ones_like(f)
    for fc, bw in zip(formants, _FORMANT_BW):
        g = g * (fc * fc) / np.sqrt((fc * fc - f * f) ** 2 + (bw * f) ** 2)
    return g


def _smooth_noise(rng: np.random.Generator, n: int, fs: int, cutoff: float) -> np.ndarray:
    # Zero-mean unit-std noise low-passed at `cutoff` Hz: slow random contours (jitter, shimmer).
    w = rng.standard_normal(n + 64)
    sos = sps.butter(2, min(cutoff / (fs / 2), 0.99), output="sos")
    y = sps.sosfilt(sos, w)[64:]
    s = float(np.std(y))
    return y / s if s > 0 else y


def speech_like(duration: float, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic speech-like signal, for where espeak-ng is not installed.

    It has what localization cares about in speech: voiced syllables made of harmonics of a jittered
    fundamental (one talker's f0 drawn in 90-250 Hz, with declination over each phrase and ~1 % jitter)
    shaped by vowel formants, a syllable-rate on/off envelope (3-6 syllables/s) grouped into phrases with
    pauses, and some unvoiced (fricative-like) noise bursts in 2.5-7 kHz.

    Parameters
    ----------
    duration : float
        Length in seconds.
    fs : int
        Sample rate in Hz.
    rng : numpy.random.Generator
        Source of randomness; the result is a deterministic function of its state.

    Returns
    -------
    numpy.ndarray
        float32, shape (round(duration * fs),), peak-normalised to 0.5.
    """
    fs = _check_fs(fs)
    duration = _check_duration(duration)
    rng = _check_rng(rng)
    n = int(round(duration * fs))
    out = np.zeros(n)
    f0_base = rng.uniform(90.0, 250.0)
    formant_scale = 1.15 if f0_base > 165.0 else 1.0  # shorter vocal tract for higher voices
    f_top = min(0.45 * fs, 5000.0)
    n_harm = max(1, int(f_top // (0.6 * f0_base)))
    k = np.arange(1, n_harm + 1, dtype=float)[:, None]
    if fs > 2 * 2600:
        band = [2500.0 / (fs / 2), min(7000.0, 0.45 * fs) / (fs / 2)]
        fric_sos = sps.butter(4, band, "bandpass", output="sos")
    else:
        fric_sos = sps.butter(4, 0.5, "highpass", output="sos")

    t = rng.uniform(0.05, 0.2)  # lead-in silence, as before a real utterance
    while t < duration:
        n_syl = int(rng.integers(3, 10))
        rate = rng.uniform(3.0, 6.0)
        syl_durs = rng.uniform(0.7, 1.3, n_syl) / rate
        phrase_len = float(syl_durs.sum())
        t_ph = t
        for i, sd in enumerate(syl_durs):
            i0 = int(round(t * fs))
            if i0 >= n:
                break
            ns = min(int(round(sd * fs)), n - i0)
            if ns < 16:
                t += sd
                continue
            # f0 contour: declination over the phrase, a syllable accent, slow jitter around 1 %
            tt = (t - t_ph + np.arange(ns) / fs) / max(phrase_len, 1e-3)
            f0 = f0_base * (1.1 - 0.2 * tt) * (1.0 + rng.uniform(-0.06, 0.1))
            f0 = f0 * (1.0 + 0.01 * _smooth_noise(rng, ns, fs, 30.0))
            phase = 2.0 * np.pi * np.cumsum(f0) / fs + rng.uniform(0, 2 * np.pi)
            formants = _VOWELS[rng.integers(len(_VOWELS))] * formant_scale
            kf = k * f0[None, :]
            amp = _formant_gain(kf, formants) / k  # -6 dB/oct: glottal source with lip radiation
            amp[kf > f_top] = 0.0
            voiced = np.sum(amp * np.sin(k * phase[None, :]), axis=0)
            # Syllable envelope: fast attack, slower release, a little shimmer: the 3-6 Hz modulation
            # that speech detectors and the active() test key on.
            u = np.arange(ns) / ns
            attack = np.sin(0.5 * np.pi * np.clip(u / 0.3, 0, 1)) ** 2
            release = np.cos(0.5 * np.pi * np.clip((u - 0.6) / 0.4, 0, 1)) ** 2
            env = attack * release
            env *= 1.0 + 0.05 * _smooth_noise(rng, ns, fs, 20.0)
            level = rng.uniform(0.5, 1.0) * (1.25 if i == 0 else 1.0)
            seg = voiced * env
            seg /= max(float(np.sqrt(np.mean(seg**2))), 1e-12)
            out[i0 : i0 + ns] += level * seg
            if rng.random() < 0.3:
                # an unvoiced burst (s, sh, f, t) at the syllable's start or end
                nb = min(int(rng.uniform(0.04, 0.12) * fs), n)
                j0 = i0 - nb // 2 if rng.random() < 0.5 else i0 + ns - nb // 2
                j0 = int(np.clip(j0, 0, n - nb))
                burst = sps.sosfilt(fric_sos, rng.standard_normal(nb)) * np.hanning(nb)
                burst /= max(float(np.sqrt(np.mean(burst**2))), 1e-12)
                out[j0 : j0 + nb] += 0.35 * level * burst
            t += sd
        t += rng.uniform(0.15, 0.6)  # pause between phrases (breath)
    return _peak_normalise(out)


def talker(duration: float, fs: int, rng: np.random.Generator, *, voice_index: int = 0) -> np.ndarray:
    """One talker reading random sentences, exactly ``duration`` seconds long.

    Sentences from :data:`SENTENCES` are spoken by espeak-ng in voice ``VOICES[voice_index % 11]`` at a
    speaking rate drawn in 140-180 words/min and a pitch drawn in 30-70, separated by pauses of
    0.2-0.6 s, after a lead-in of 0.05-0.2 s, and cut to length. Without espeak-ng the result is
    :func:`speech_like` instead (same length and level), so simulations still run.

    Parameters
    ----------
    duration : float
        Length in seconds.
    fs : int
        Sample rate in Hz.
    rng : numpy.random.Generator
        Picks sentences, rate, pitch and pauses; the result is deterministic for its state.
    voice_index : int, optional
        Which espeak-ng voice (index into :data:`VOICES`, modulo its length): give simultaneous talkers
        different indices.

    Returns
    -------
    numpy.ndarray
        float32, shape (round(duration * fs),), peak-normalised to 0.5.
    """
    fs = _check_fs(fs)
    duration = _check_duration(duration)
    rng = _check_rng(rng)
    n = int(round(duration * fs))
    if not espeak_available():
        return speech_like(duration, fs, rng)
    voice = VOICES[int(voice_index) % len(VOICES)]
    speed = int(rng.integers(140, 181))
    pitch = int(rng.integers(30, 71))
    out = np.zeros(n, dtype=np.float32)
    pos = int(round(rng.uniform(0.05, 0.2) * fs))
    while pos < n:
        text = SENTENCES[int(rng.integers(len(SENTENCES)))]
        x = _espeak_cached(text, fs, voice, speed, pitch)
        # espeak pads each utterance with silence: trim it so pauses are the ones drawn here
        nz = np.flatnonzero(np.abs(x) > 1e-3)
        if nz.size:
            x = x[nz[0] : nz[-1] + 1]
        m = min(len(x), n - pos)
        out[pos : pos + m] = x[:m]
        pos += len(x) + int(round(rng.uniform(0.2, 0.6) * fs))
    return _peak_normalise(out)


def _pink(n: int, rng: np.random.Generator, fs: int, slope_db_per_oct: float = -3.0) -> np.ndarray:
    # Spectral shaping of white Gaussian noise (exact slope; the FFT's circularity is harmless for noise).
    x = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    g = np.zeros_like(f)
    f_lo = 20.0  # below ~20 Hz a 1/f slope only adds inaudible rumble that swamps the level
    g[1:] = np.maximum(f[1:], f_lo) ** (slope_db_per_oct / (20.0 * math.log10(2.0)))
    return np.fft.irfft(x * g, n)


def noise_source(duration: float, fs: int, rng: np.random.Generator, *, kind: str = "pink") -> np.ndarray:
    """A stationary noise source.

    Parameters
    ----------
    duration : float
        Length in seconds.
    fs : int
        Sample rate in Hz.
    rng : numpy.random.Generator
        Source of randomness; the result is deterministic for its state.
    kind : {"pink", "white", "fan", "babble"}, optional
        ``"pink"``: -3 dB/octave Gaussian noise (like HVAC or traffic); ``"white"``: flat Gaussian
        noise; ``"fan"``: a fan or projector: -4.5 dB/octave broadband noise with a low-pass rolloff
        above ~2 kHz plus blade-pass tones (80-160 Hz and two harmonics) that wobble slowly;
        ``"babble"``: six :func:`speech_like` talkers summed, the diffuse-ish chatter of a cafe.

    Returns
    -------
    numpy.ndarray
        float32, shape (round(duration * fs),), peak-normalised to 0.5.
    """
    fs = _check_fs(fs)
    duration = _check_duration(duration)
    rng = _check_rng(rng)
    n = int(round(duration * fs))
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _pink(n, rng, fs)
    elif kind == "fan":
        x = _pink(n, rng, fs, slope_db_per_oct=-4.5)
        x = sps.sosfilt(sps.butter(2, min(2000.0 / (fs / 2), 0.99), output="sos"), x)
        x /= max(float(np.std(x)), 1e-12)
        t = np.arange(n) / fs
        f_bp = rng.uniform(80.0, 160.0)
        for h, a in ((1, 0.8), (2, 0.4), (3, 0.2)):
            am = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t + rng.uniform(0, 2 * np.pi))
            x += a * am * np.sin(2 * np.pi * h * f_bp * t + rng.uniform(0, 2 * np.pi))
    elif kind == "babble":
        x = np.zeros(n)
        for _ in range(6):
            s = speech_like(duration, fs, rng).astype(float)
            x += s / max(float(np.std(s)), 1e-12)
    else:
        raise ParameterError(f"Unknown noise kind {kind!r}: use one of {', '.join(NOISE_KINDS)}.")
    return _peak_normalise(x)
