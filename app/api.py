"""The Python API: :func:`locate` for a recording or an array, :class:`Localizer` for one's own
capture loop. Both are exported as ``doascope.locate`` and ``doascope.Localizer`` and run the same
analysis as ``doascope locate`` (same defaults, same numbers).

Block-sized matrix products (a few mic pairs by a few hundred lags) only lose from BLAS threads:
a multi-threaded OpenBLAS can spend more time waking its threads than multiplying, most on a
machine with many cores or other work. The command line sets one BLAS thread before numpy loads;
the hot calls here run with BLAS limited to one thread (threadpoolctl), whatever the process set.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from doascope import ParameterError

from doascope.config import AUTO_SOURCES, AnalysisConfig, SettingError  # noqa: F401  (AUTO_SOURCES: re-exported)

_controller = None


@contextmanager
def one_blas_thread():
    """BLAS (OpenBLAS, MKL, BLIS) limited to one thread inside the block.

    The threadpoolctl controller is made once, on first use, after numpy and scipy are loaded; a
    limit then costs a few microseconds.
    """
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def _profile(profile):
    from doascope.hardware_profiles import Profile, load_profile

    return profile if isinstance(profile, Profile) else load_profile(profile)


def _config(method: str, sources, mode: str, options: dict) -> AnalysisConfig:
    """The AnalysisConfig of the API's arguments; an error names the keyword (``smoothing: ...``)."""
    known = set(AnalysisConfig.keywords()) - {"method", "n_sources", "mode", "tracker"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ParameterError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
    try:
        return AnalysisConfig(method=method, n_sources=sources, mode=mode, **options)
    except SettingError as exc:
        keyword = "sources" if exc.setting == "n_sources" else exc.setting
        raise ParameterError(f"{keyword}: {exc.detail}") from None


def _build(cfg: AnalysisConfig, profile, fs: int):
    """doascope.dsp.analysis.build_localizer, with a setting's error naming the API's keyword."""
    from doascope.dsp.analysis import build_localizer

    try:
        return build_localizer(cfg, profile, fs)
    except SettingError as exc:
        raise ParameterError(f"{exc.setting}: {exc.detail}") from None


@dataclass(frozen=True, eq=False)
class LocateResult:
    """What :func:`locate` found, block by block.

    Attributes
    ----------
    t : ndarray, shape (blocks,)
        Centre of each block, seconds from the start of the audio.
    azimuth, elevation : ndarray, shape (blocks, sources)
        Degrees (azimuth counter-clockwise from the array's +x axis in [0, 360), elevation above the
        array plane), strongest source first; NaN where a block reports fewer sources (silence, or
        fewer sources pass the presence test). All NaN in position mode.
    power : ndarray, shape (blocks, sources)
        Spatial-spectrum value of each source, in [0, 1] (1: a perfectly coherent plane wave); NaN
        as above.
    xyz : ndarray, shape (blocks, sources, 3), or None
        Position mode only: source positions in the profile's room frame, metres; NaN as above.
    blocks : tuple
        The per-block records: :class:`doascope.dsp.BlockResult` (spectrum, peaks, activity gate,
        energy, coherence) or, in position mode, ``doascope.dsp.position.PositionResult``.
    fs : int
        Sample rate the analysis ran at, Hz.
    method, mode, profile : str
        What ran: the method name, ``"doa"`` or ``"position"``, and the profile id.
    """

    t: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    power: np.ndarray
    xyz: np.ndarray | None
    blocks: tuple
    fs: int
    method: str
    mode: str
    profile: str

    def __len__(self) -> int:
        return len(self.blocks)

    def records(self) -> list[dict]:
        """One dict a block, exactly the lines ``doascope locate --format jsonl`` prints."""
        from doascope.app.runtime.offline import block_record

        return [block_record(b.t, b.sources if self.mode == "position" else b.peaks) for b in self.blocks]


def _collect(blocks: list, k: int, *, fs: int, method: str, mode: str, profile: str) -> LocateResult:
    n = len(blocks)
    az, el, pw = (np.full((n, k), np.nan) for _ in range(3))
    xyz = np.full((n, k, 3), np.nan) if mode == "position" else None
    for i, b in enumerate(blocks):
        if mode == "position":
            for j, s in enumerate(b.sources[:k]):
                xyz[i, j] = (s.x, s.y, s.z)
                pw[i, j] = s.power
        else:
            for j, p in enumerate(b.peaks[:k]):
                az[i, j], el[i, j], pw[i, j] = p.azimuth, p.elevation, p.power
    t = np.array([b.t for b in blocks], dtype=np.float64)
    return LocateResult(t, az, el, pw, xyz, tuple(blocks), int(fs), method, mode, profile)


def locate(audio, profile, *, method: str = "srp-phat", sources=1, fs: float | None = None, mode: str = "doa",
           **options) -> LocateResult:
    """Localize the sound sources in a recording or an array of samples.

    Parameters
    ----------
    audio : str, os.PathLike or array_like
        A file (any format soundfile reads, or acoular-style HDF5 with the [hdf5] extra), or samples
        of shape (samples, channels) holding either all the device's channels or only its
        microphones, in the profile's order.
    profile : str, os.PathLike or doascope.hardware_profiles.Profile
        A shipped profile id (``doascope profiles``), a TOML path, or a loaded profile.
    method : str
        ``"srp-phat"`` (default), ``"srp-dpd"``, ``"gcc-phat"``, ``"music"``, ``"normmusic"`` or
        ``"dnn"`` (the [dnn] extra).
    sources : int or "auto"
        At most this many sources a block (``"auto"``: up to 4); a source is reported only when it
        passes the presence test.
    fs : float, optional
        Sample rate of an array in Hz (default: the profile's); audio at another rate is resampled
        to the profile's rate, as files are.
    mode : str
        ``"doa"`` (directions, default) or ``"position"`` (x, y, z in metres, for profiles with a
        ``room``).
    **options
        Any other analysis setting of the command line, by its ``AnalysisConfig`` name: ``band``
        (fmin, fmax) Hz, ``nfft``, ``hop``, ``frames_per_block``, ``grid`` (``"auto"``,
        ``"circle"``, ``"sphere"``), ``resolution`` (degrees), ``smoothing``, ``min_separation``,
        ``weights``, ``search``.

    Returns
    -------
    LocateResult
        Arrays ``t``, ``azimuth``, ``elevation``, ``power`` (and ``xyz`` in position mode) plus the
        per-block records in ``blocks``.

    Raises
    ------
    doascope.DoascopeError
        With one plain sentence, for a bad file, array, profile or option.

    Examples
    --------
    A plane wave from 60 degrees reaching a 4-mic ReSpeaker (its mics are 3.2 cm from the centre):

    >>> import numpy as np, doascope
    >>> from doascope.hardware_profiles import load_profile
    >>> prof = load_profile("respeaker_usb_v2")
    >>> fs = prof.sample_rate
    >>> u = np.array([np.cos(np.radians(60.0)), np.sin(np.radians(60.0)), 0.0])
    >>> delays = -prof.positions @ u / doascope.SPEED_OF_SOUND          # seconds, per mic
    >>> f = np.fft.rfftfreq(2 * fs, 1 / fs)
    >>> noise = np.fft.rfft(np.random.default_rng(0).standard_normal(2 * fs))
    >>> mics = np.fft.irfft(noise * np.exp(-2j * np.pi * f * delays[:, None]), 2 * fs).T
    >>> res = doascope.locate(mics.astype(np.float32), prof)
    >>> res.azimuth.shape                            # (blocks, sources)
    (15, 1)
    >>> round(float(np.nanmedian(res.azimuth)))
    60
    >>> res.records()[0].keys()
    dict_keys(['t', 'sources'])
    """
    from doascope.app.runtime.audio import mic_map_for, read_recording, resample, select_channels

    prof = _profile(profile)
    cfg = _config(method, sources, mode, options)
    if isinstance(audio, (str, os.PathLike)):
        if fs is not None:
            raise ParameterError("fs is for arrays; a file's own header gives its rate")
        x, rate = read_recording(audio, prof)
    else:
        x = np.asarray(audio)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
            raise ParameterError(f"audio must be numbers of shape (samples, channels), got {x.dtype} {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ParameterError("audio contains NaN or infinite samples")
        rate = prof.sample_rate
        x = select_channels(x.astype(np.float32, copy=False), mic_map_for(x.shape[1], prof, what="the array"))
        if fs is not None and float(fs) != rate:
            if fs <= 0 or float(fs) != round(float(fs)):
                raise ParameterError(f"fs must be a positive whole number of Hz, got {fs}")
            x = resample(x, int(fs), rate)
    loc = _build(cfg, prof, rate)
    if x.shape[0] < loc.block_samples:
        raise ParameterError(f"the audio is shorter ({x.shape[0] / rate:.3f} s) than one analysis block "
                             f"({loc.block_samples / rate:.3f} s)")
    with one_blas_thread():
        blocks = list(loc.locate(x, rate))
    return _collect(blocks, cfg.n_sources, fs=rate, method=cfg.method, mode=cfg.mode, profile=prof.id)


class Localizer:
    """Streaming localization for one's own capture loop: feed audio chunks of any length, get a
    result for every whole block they complete.

    Blocks do not overlap and are the same as :func:`locate`'s (feeding a recording in pieces
    gives the same results as locating it at once).

    Parameters
    ----------
    profile : str, os.PathLike or Profile
        The array (its channel map and geometry).
    method, sources, mode, **options
        As for :func:`locate`.
    fs : int, optional
        Rate of the chunks in Hz (default: the profile's). The analysis runs at this rate; the
        chunks are not resampled.

    Attributes
    ----------
    fs : int
    block_seconds : float
        Audio a block spans.

    Examples
    --------
    >>> import numpy as np, doascope
    >>> loc = doascope.Localizer("respeaker_usb_v2", method="srp-phat", sources=2)
    >>> rng = np.random.default_rng(1)
    >>> results = []
    >>> for _ in range(10):                  # e.g. sounddevice InputStream reads of 1600 frames
    ...     chunk = 0.01 * rng.standard_normal((1600, 6)).astype(np.float32)  # all 6 device channels
    ...     results += loc.process(chunk)
    >>> [round(r.t, 3) for r in results][:3]     # block centres, seconds from the first sample
    [0.072, 0.2, 0.328]
    >>> results[0].peaks                     # sensor noise only: nothing passes the presence test
    ()
    """

    def __init__(self, profile, *, method: str = "srp-phat", sources=1, fs: int | None = None, mode: str = "doa",
                 **options):
        self.profile = _profile(profile)
        self.config = _config(method, sources, mode, options)
        self.fs = int(fs) if fs is not None else self.profile.sample_rate
        if self.fs <= 0:
            raise ParameterError(f"fs must be positive, got {fs}")
        self._loc = _build(self.config, self.profile, self.fs)
        self._buf = np.zeros((0, self._loc.n_mics), np.float32)
        self._start = 0   # stream sample index of self._buf[0]

    @property
    def block_seconds(self) -> float:
        return self._loc.block_samples / self.fs

    def reset(self) -> None:
        """Forget the audio so far and the temporal integration; the next chunk is sample 0."""
        self._loc.reset()
        self._buf = self._buf[:0]
        self._start = 0

    def process(self, chunk) -> list:
        """Add ``chunk`` (samples, channels) float audio, device or microphone channels, and return the
        :class:`doascope.dsp.BlockResult` (position mode: ``PositionResult``) of every block it completed."""
        from doascope.app.runtime.audio import mic_map_for, select_channels
        from doascope.dsp.stft import stft

        x = np.asarray(chunk)
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
            raise ParameterError(f"a chunk must be numbers of shape (samples, channels), got {x.dtype} {x.shape}")
        mic_map = mic_map_for(x.shape[1], self.profile, what="the chunk")
        self._buf = np.concatenate([self._buf, select_channels(x.astype(np.float32, copy=False), mic_map)])
        loc, out = self._loc, []
        need, advance = loc.block_samples, loc.block_advance
        with one_blas_thread():
            while self._buf.shape[0] >= need:
                X = stft(self._buf[:need], nfft=loc.nfft, hop=loc.hop, window=loc.window)
                out.append(loc.process(X, self._start, self.fs))
                self._buf = self._buf[advance:]
                self._start += advance
        self._buf = np.ascontiguousarray(self._buf)
        return out
