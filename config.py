"""The analysis settings: one typed record that owns every default, the per-mode defaults and the checks.

:class:`AnalysisConfig` is what every front end builds (the command line through
``doascope.app.config``, the GUI, the service's control messages, the bench and the Python API
``doascope.locate``), and what :func:`doascope.dsp.analysis.build_localizer` turns into a localizer.
A field left at ``None`` means "the default of the mode": directions (``doa``) and positions in a
room (``position``) need different frames, blocks, smoothing and band, so the defaults are applied
by :meth:`AnalysisConfig.resolved` for a sample rate, never guessed by comparing a value with the
DOA default (an explicit ``--smoothing 0.5`` in position mode is kept).

Every check raises :class:`SettingError`, a ParameterError whose sentence starts with the
command-line option (``--band: ...``); the Python API names its keyword instead.

It lives beside ``doascope.methods`` at the top of the package, outside ``doascope.dsp`` (whose
package loads numpy), for the same reason: it is plain Python with no numpy, numba or scipy import,
so the command line reads its help texts and checks its arguments with it before any kernel loads.
Every layer may import it (``dsp``, ``models`` and ``app`` alike), as they import ``doascope``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, fields, replace

from doascope import ParameterError
from doascope.methods import DEFAULT_METHOD, method_names

# --- the defaults (their one owner) --------------------------------------------------------------

DEFAULT_BAND = (300.0, 3500.0)
"""Analysis band of DOA mode, Hz: where speech carries its energy and small arrays resolve directions."""
DEFAULT_SMOOTHING = 0.5
DEFAULT_FRAMES_PER_BLOCK = 8
DEFAULT_MIN_SEPARATION = 20.0
DEFAULT_GRID = "auto"
DEFAULT_MODE = "doa"
DEFAULT_SEARCH = "coarse-to-fine"
FRAME_SECONDS = 0.032
"""STFT frame length the default nfft approaches (rounded to a power of two)."""

GRIDS = ("auto", "circle", "sphere")
MODES = ("doa", "position")
SEARCHES = ("coarse-to-fine", "src", "grid", "triangulation")

# `--sources K` means at most K; `auto` means up to AUTO_SOURCES (DESIGN.md).
AUTO_SOURCES = 4
MAX_SOURCES = 8
DEFAULT_SOURCES = 1

TRACK_TIMEOUT = 8.0
"""Seconds a silent talker keeps its track id (the tracker's ``death_time``, ``--track-timeout``)."""

# Position mode (distributed microphones, metres apart): inter-mic delays of up to ~20 ms need frames
# of ~128 ms (4x the DOA frame) for the PHAT cross-spectra to stay coherent, and blocks of two frames
# with smoothing 0.7 give an estimate every 128 ms; the band reaches up to 7 kHz (or 0.45 fs).
POSITION_NFFT_FACTOR = 4
POSITION_FRAMES_PER_BLOCK = 2
POSITION_SMOOTHING = 0.7
POSITION_BAND_LOW = 200.0
POSITION_BAND_HIGH = 7000.0

#: field -> the command-line option that sets it (errors name the option the user typed)
OPTIONS = {"method": "--method", "n_sources": "--sources", "band": "--band", "nfft": "--nfft", "hop": "--hop",
           "frames_per_block": "--block", "grid": "--grid", "resolution": "--resolution",
           "smoothing": "--smoothing", "min_separation": "--min-separation", "weights": "--weights",
           "tracker": "--track-timeout", "mode": "--mode", "search": "--search", "extraction": "extraction"}


class SettingError(ParameterError):
    """A setting has a value that cannot work; ``setting`` is the AnalysisConfig field, ``detail``
    the sentence without the option's name."""

    def __init__(self, setting: str, detail: str, option: str | None = None):
        self.setting, self.detail = setting, detail
        super().__init__(f"{option or OPTIONS.get(setting, setting)}: {detail}")


def default_nfft(fs: float) -> int:
    """About 32 ms, rounded to a power of two: 512 at 16 kHz, 2048 at 48 kHz."""
    return int(2 ** round(math.log2(FRAME_SECONDS * fs)))


def position_defaults(fs: float) -> dict:
    """Analysis defaults of position mode at ``fs`` (see the module's comments for why)."""
    return {"nfft": POSITION_NFFT_FACTOR * default_nfft(fs), "frames_per_block": POSITION_FRAMES_PER_BLOCK,
            "smoothing": POSITION_SMOOTHING, "band": (POSITION_BAND_LOW, min(POSITION_BAND_HIGH, 0.45 * fs))}


def mode_defaults(mode: str, fs: float) -> dict:
    """nfft, frames_per_block, smoothing and band of ``mode`` at ``fs``."""
    if mode == "position":
        return position_defaults(fs)
    return {"nfft": default_nfft(fs), "frames_per_block": DEFAULT_FRAMES_PER_BLOCK,
            "smoothing": DEFAULT_SMOOTHING, "band": DEFAULT_BAND}


# --- parsing the command line's texts --------------------------------------------------------------

def source_count(value) -> int:
    """The most sources to report: an integer in [1, MAX_SOURCES], or ``"auto"`` (AUTO_SOURCES)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return AUTO_SOURCES
        try:
            value = int(text)
        except ValueError:
            raise ParameterError(f"sources must be a whole number from 1 to {MAX_SOURCES}, or auto; "
                                 f"got {value!r}") from None
    try:
        n = None if isinstance(value, (bool, float)) else operator.index(value)  # ints and numpy integers
    except TypeError:
        n = None
    if n is None or not 1 <= n <= MAX_SOURCES:
        raise ParameterError(f"sources must be a whole number from 1 to {MAX_SOURCES}, or auto; got {value!r}")
    return int(n)


def parse_band(text: str) -> tuple[float, float]:
    """``"FMIN:FMAX"`` (or ``"FMIN,FMAX"``) in Hz."""
    try:
        lo, hi = (float(x) for x in text.replace(",", ":").split(":"))
    except ValueError:
        raise ParameterError(f"band must be FMIN:FMAX in Hz, e.g. 300:3500, got {text!r}") from None
    return _band(lo, hi, text)


def _band(lo: float, hi: float, shown) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise ParameterError(f"band must satisfy 0 <= FMIN < FMAX, got {shown!r}")
    return float(lo), float(hi)


def parse_track_timeout(text) -> float:
    """Seconds, positive and finite."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value > 0 and math.isfinite(value)):
        raise ParameterError(f"the track timeout must be a positive number of seconds, got {text!r}")
    return value


# --- the record ---------------------------------------------------------------------------------------

def _number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and not isinstance(value, bool) else None


def _integer(value) -> int | None:
    try:
        return None if isinstance(value, (bool, float)) else operator.index(value)
    except TypeError:
        return None


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything the analysis is built from. ``None``: the mode's default (see :meth:`resolved`).

    Attributes
    ----------
    method : DOA method name (doascope.methods)
    n_sources : report at most this many sources a block, 1 to MAX_SOURCES
    band : (fmin, fmax) Hz; default 300:3500 (position mode 200:min(7000, 0.45 fs))
    nfft : STFT size; default about 32 ms (position mode 4x that)
    hop : STFT hop; default nfft // 2
    frames_per_block : STFT frames per block; default 8 (position mode 2)
    grid : "auto", "circle" or "sphere"
    resolution : grid spacing in degrees (None: the grid's own)
    smoothing : exponential integration across blocks in [0, 1); default 0.5 (position mode 0.7)
    min_separation : degrees between reported sources
    weights : network weights for the dnn method
    tracker : keyword arguments of the tracker (e.g. death_time, gate_deg)
    mode : "doa" (directions) or "position" (x, y, z in a profile's room)
    search : position mode's global search; default coarse-to-fine
    extraction : how several sources are told apart (None: doascope.dsp.extraction's default)
    """

    method: str = DEFAULT_METHOD
    n_sources: int = DEFAULT_SOURCES
    band: tuple[float, float] | None = None
    nfft: int | None = None
    hop: int | None = None
    frames_per_block: int | None = None
    grid: str = DEFAULT_GRID
    resolution: float | None = None
    smoothing: float | None = None
    min_separation: float = DEFAULT_MIN_SEPARATION
    weights: str | None = None
    tracker: dict = field(default_factory=dict)
    mode: str = DEFAULT_MODE
    search: str | None = None
    extraction: str | None = None

    def __post_init__(self):
        def fix(name, value):
            object.__setattr__(self, name, value)

        if not isinstance(self.method, str) or not self.method:
            raise SettingError("method", f"a method name is needed ({', '.join(method_names())}), "
                                         f"got {self.method!r}")
        try:
            fix("n_sources", source_count(self.n_sources))
        except ParameterError as exc:
            raise SettingError("n_sources", str(exc)) from None
        if self.band is not None:
            try:
                lo, hi = self.band
            except (TypeError, ValueError):
                raise SettingError("band", f"give (FMIN, FMAX) in Hz, got {self.band!r}") from None
            if _number(lo) is None or _number(hi) is None:
                raise SettingError("band", f"FMIN and FMAX must be numbers of Hz, got {self.band!r}")
            try:
                fix("band", _band(float(lo), float(hi), f"{float(lo):g}:{float(hi):g}"))
            except ParameterError as exc:
                raise SettingError("band", str(exc)) from None
        if self.nfft is not None:
            n = _integer(self.nfft)
            if n is None or n < 16:
                raise SettingError("nfft", f"the STFT size must be a whole number of at least 16 samples, "
                                           f"got {self.nfft!r}")
            fix("nfft", int(n))
        if self.hop is not None:
            n = _integer(self.hop)
            if n is None or not 1 <= n <= (self.nfft or n):
                raise SettingError("hop", f"the STFT hop must be 1 to --nfft samples, got {self.hop!r}")
            fix("hop", int(n))
        if self.frames_per_block is not None:
            n = _integer(self.frames_per_block)
            if n is None or n < 1:
                raise SettingError("frames_per_block", f"the number of STFT frames per block must be at least 1, "
                                                       f"got {self.frames_per_block!r}")
            fix("frames_per_block", int(n))
        if self.grid not in GRIDS:
            raise SettingError("grid", f"choose one of {', '.join(GRIDS)}, got {self.grid!r}")
        if self.resolution is not None:
            r = _number(self.resolution)
            if r is None or not 0 < r <= 90:
                raise SettingError("resolution", f"the grid spacing must be more than 0 and at most 90 degrees, "
                                                 f"got {self.resolution!r}")
            fix("resolution", r)
        if self.smoothing is not None:
            a = _number(self.smoothing)
            if a is None or not 0 <= a < 1:
                raise SettingError("smoothing", f"must be at least 0 and below 1, got {self.smoothing!r}")
            fix("smoothing", a)
        sep = _number(self.min_separation)
        if sep is None or not 0 <= sep <= 180:
            raise SettingError("min_separation", f"must be 0 to 180 degrees, got {self.min_separation!r}")
        fix("min_separation", sep)
        if not isinstance(self.tracker, dict):
            raise SettingError("tracker", f"tracker settings are a dict of the tracker's parameters, "
                                          f"got {self.tracker!r}")
        if "death_time" in self.tracker:
            try:
                parse_track_timeout(self.tracker["death_time"])
            except ParameterError as exc:
                raise SettingError("tracker", str(exc)) from None
        if self.mode not in MODES:
            raise SettingError("mode", f"mode must be 'doa' or 'position', got {self.mode!r}")
        if self.search is not None and self.search not in SEARCHES:
            raise SettingError("search", f"unknown position search {self.search!r}; choose one of: "
                                         f"{', '.join(SEARCHES)}")

    @classmethod
    def given(cls, **values) -> "AnalysisConfig":
        """The config of the settings that are not None (a parser's "not given"); the rest default."""
        return cls(**{k: v for k, v in values.items() if v is not None})

    def resolved(self, fs: float) -> "AnalysisConfig":
        """This config at ``fs`` with every mode default filled in: nfft, hop, frames_per_block,
        smoothing, band (and search in position mode) are then never None."""
        d = mode_defaults(self.mode, fs)
        nfft = self.nfft or d["nfft"]
        out = replace(self, nfft=nfft, hop=self.hop or nfft // 2,
                      frames_per_block=self.frames_per_block or d["frames_per_block"],
                      smoothing=d["smoothing"] if self.smoothing is None else self.smoothing,
                      band=self.band or d["band"],
                      search=self.search or (DEFAULT_SEARCH if self.mode == "position" else None))
        return out

    def check_rate(self, fs: float, *, profile: str | None = None) -> None:
        """The settings that depend on the sample rate: the band's top below the Nyquist frequency."""
        r = self.resolved(fs)
        nyquist = fs / 2
        if r.band[1] > nyquist:
            whose = f" of profile '{profile}'" if profile else ""
            raise SettingError("band", f"{r.band[0]:g}:{r.band[1]:g} goes above {nyquist:g} Hz, the Nyquist "
                                       f"frequency{whose} ({fs:g} Hz)")

    @classmethod
    def keywords(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
