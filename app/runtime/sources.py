"""Audio sources behind one interface: a live sounddevice stream, a file, a simulated room.

Every source delivers (frames, channels) float32 at the profile's sample rate into a
:class:`~doascope.app.runtime.ringbuffer.RingBuffer`; ``mic_map`` says which of its channels are the
profile's microphones, in the profile's order (the ring keeps every device channel, so raw
recordings are lossless).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod

import numpy as np

from doascope import AudioInputError, ParameterError
from doascope.app.runtime.ringbuffer import RingBuffer
from doascope.hardware_profiles import Profile

log = logging.getLogger(__name__)


class AudioSource(ABC):
    """What the engine needs from any input.

    Attributes: fs (Hz), channels (delivered into the ring), mic_map (ring channel of each
    profile microphone), xruns (input overflows reported by the device), error (last error
    sentence or None), description (for status lines).
    """

    fs: int
    channels: int
    mic_map: tuple[int, ...]
    description: str = ""

    def __init__(self) -> None:
        self.xruns = 0
        self.error: str | None = None

    @abstractmethod
    def start(self, ring: RingBuffer) -> None:
        """Begin delivering audio into ``ring`` (returns at once)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop delivering; safe to call twice."""

    @property
    def finished(self) -> bool:
        """True when a finite input has delivered everything (files without --loop)."""
        return False

    def restart(self) -> None:
        """Try to recover after an error (live devices); others need nothing."""


# ---------------------------------------------------------------------------------------------
# In-memory playback (files and simulated scenes)


class ArraySource(AudioSource):
    """Plays a (frames, channels) array into the ring, paced at real time or as fast as the
    consumer takes it (``speed`` = 0), optionally looping."""

    def __init__(self, audio: np.ndarray, fs: int, mic_map, *, speed: float = 1.0, loop: bool = False,
                 chunk: int | None = None, description: str = ""):
        super().__init__()
        if audio.ndim != 2 or audio.shape[0] == 0:
            raise AudioInputError("the input holds no audio")
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.fs = int(fs)
        self.channels = self.audio.shape[1]
        self.mic_map = tuple(int(c) for c in mic_map)
        if speed < 0:
            raise ParameterError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        self.speed = float(speed)
        self.loop = bool(loop)
        self.chunk = int(chunk or max(1, self.fs // 100))  # 10 ms, like a sound card's period
        self.description = description
        self.stop_after: int | None = None  # samples to deliver in all (run --duration), then finish
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def start(self, ring: RingBuffer) -> None:
        self._stop.clear()
        self._done.clear()
        self._thread = threading.Thread(target=self._run, args=(ring,), name="doascope-playback", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    # The pacing clock; tests replace these two to check the pacing without depending on the machine.
    def _now(self) -> float:
        return time.monotonic()

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; True if stopped meanwhile."""
        return self._stop.wait(seconds)

    def _run(self, ring: RingBuffer) -> None:
        n = self.audio.shape[0]
        pos = 0
        sent = 0
        t0 = self._now()
        while not self._stop.is_set():
            if pos >= n:
                if not self.loop:
                    break
                pos = 0
            if self.stop_after is not None and sent >= self.stop_after:
                break
            m = min(self.chunk, n - pos, self.stop_after - sent if self.stop_after is not None else n)
            if self.speed > 0:
                # Pace against the clock, not by sleeping a fixed period, so timing errors never add up.
                due = t0 + (sent + m) / (self.fs * self.speed)
                delay = due - self._now()
                if delay > 0 and self._pause(delay):
                    break
            else:
                # As fast as possible, but stay within half a ring of the slowest reader (the engine
                # treats that as keeping up; further behind, it would skip ahead), so that neither
                # the analysis nor a raw recording loses a sample.
                while ring.written + m - min((r.position for r in ring.readers), default=ring.written) \
                        > ring.capacity // 2:
                    if self._stop.wait(0.001):
                        return
            ring.write(self.audio[pos:pos + m])
            pos += m
            sent += m
        self._done.set()


def file_source(path: str, profile: Profile, *, speed: float = 1.0, loop: bool = False) -> ArraySource:
    """A recording as a source: read, resampled to the profile's rate; all its channels go into the
    ring and ``mic_map`` picks the microphones (see app.audio.read_recording for what is accepted)."""
    from doascope.app.runtime.audio import read_raw

    audio, mic_map = read_raw(path, profile)
    return ArraySource(audio, profile.sample_rate, mic_map, speed=speed, loop=loop, description=f"file {path}")


def sim_source(scene: str, profile: Profile, *, speed: float = 1.0, loop: bool = True, seed: int = 0) -> ArraySource:
    """A simulated scene (see app.simulation.PRESETS) rendered for the profile's geometry."""
    from doascope.sim.presets import render_preset
    from doascope.extras import require

    require("sim")
    log.info("simulating the scene %r for %s", scene, profile.id)
    rendered = render_preset(scene, profile.positions, profile.sample_rate, seed=seed, room=profile.room)
    src = ArraySource(rendered.audio, profile.sample_rate, range(profile.n_mics), speed=speed, loop=loop,
                      description=f"simulated scene '{scene}'")
    src.truth = rendered  # tests and demos compare with it
    return src


# ---------------------------------------------------------------------------------------------
# Live capture


def import_sounddevice():
    """sounddevice, or one sentence saying what to install. Imported only here, when a device is
    asked for, so that replaying files and simulated rooms works without PortAudio."""
    try:
        import sounddevice as sd
    except OSError:  # the module is there but the PortAudio library is not
        raise AudioInputError("live capture needs PortAudio (the libportaudio2 library), which is not installed: "
                              "on Debian or Ubuntu run 'sudo apt-get install libportaudio2' (files and --sim work "
                              "without it)") from None
    except ImportError:
        raise AudioInputError("live capture needs the sounddevice package: pip install sounddevice") from None
    quiet_alsa()
    return sd


def resolve_device(device, *, channels: int | None = None) -> tuple[int, dict]:
    """(index, info) of the input device given by index or by a substring of its name."""
    sd = import_sounddevice()
    try:
        devices = list(sd.query_devices())
    except Exception as exc:  # PortAudio errors come in several types
        raise AudioInputError(f"cannot list audio devices: {exc}") from None
    inputs = [(i, d) for i, d in enumerate(devices) if d["max_input_channels"] > 0]
    if not inputs:
        wanted = "" if device is None else f"no input device matches {str(device).strip()!r}: "
        raise AudioInputError(f"{wanted}no audio input device found (is the array plugged in? see "
                              "`doascope devices`)")
    if device is None:
        try:
            idx = sd.default.device[0]
        except Exception:
            idx = -1
        if idx is None or idx < 0:
            idx = inputs[0][0]
        return int(idx), devices[int(idx)]
    text = str(device).strip()
    if text.lstrip("-").isdigit():
        idx = int(text)
        if not 0 <= idx < len(devices) or devices[idx]["max_input_channels"] == 0:
            raise AudioInputError(f"there is no input device number {idx} (see `doascope devices`)")
        return idx, devices[idx]
    hits = [(i, d) for i, d in inputs if text.lower() in d["name"].lower()]
    if not hits:
        names = ", ".join(repr(d["name"]) for _, d in inputs)
        raise AudioInputError(f"no input device matches {text!r}; inputs are: {names}")
    if channels is not None:  # prefer one that can deliver the channels we need
        wide = [(i, d) for i, d in hits if d["max_input_channels"] >= channels]
        hits = wide or hits
    return hits[0]


def check_device(device, profile: Profile | None) -> tuple[int, dict]:
    """(index, info) of the input ``device`` (a number or part of a name; None: the system's),
    which must deliver ``profile``'s channels; AudioInputError with one sentence otherwise."""
    channels = profile.channels if profile is not None else None
    index, info = resolve_device(device, channels=channels)
    if channels is not None and info["max_input_channels"] < channels:
        raise AudioInputError(
            f"device {info['name']!r} has {info['max_input_channels']} input channels but profile "
            f"'{profile.id}' needs {channels}")
    return index, info


class LiveSource(AudioSource):
    """A sounddevice InputStream. The callback only copies into the ring and counts xruns.

    A supervisor thread watches the stream: when it ends (the device was unplugged, its server
    went away) or stops delivering for ``STALL_SECONDS``, ``error`` says "no audio from DEVICE
    since HH:MM:SS, retrying" and the device is looked up and reopened every second until audio
    flows again; then ``error`` is cleared and ``recoveries`` counts up. Samples keep their
    positions in the ring: the stream's time continues where it stopped.
    """

    STALL_SECONDS = 1.0      # no callback for this long (once audio flowed) means the device is gone
    STARTUP_SECONDS = 5.0    # an opened stream may take this long to deliver its first block
    RETRY_SECONDS = 1.0

    def __init__(self, profile: Profile, device=None, *, blocksize: int = 0):
        super().__init__()
        self.profile = profile
        self.fs = profile.sample_rate
        self.channels = profile.channels
        self.mic_map = tuple(profile.mic_channels)
        self.index, info = check_device(device, profile)
        self.device_name = info["name"]
        self.blocksize = blocksize
        self.description = f"device {self.index}: {self.device_name}"
        self.callbacks = 0
        self.recoveries = 0           # times audio came back after a loss
        self.lost_since: float | None = None   # time.time() of the last audio before a loss, None while fine
        self._stream = None
        self._ring: RingBuffer | None = None
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    def _callback(self, indata, frames, time_info, status):  # runs on PortAudio's thread
        self._ring.write(indata)
        self.callbacks += 1
        if status.input_overflow:
            self.xruns += 1

    def _open(self) -> None:
        sd = import_sounddevice()
        try:
            self._stream = sd.InputStream(device=self.index, channels=self.channels, samplerate=self.fs,
                                          dtype="float32", blocksize=self.blocksize, callback=self._callback)
            self._stream.start()
        except Exception as exc:  # PortAudioError, or ValueError for unsupported settings
            self._stream = None
            raise AudioInputError(f"cannot open {self.description} at {self.fs} Hz with {self.channels} "
                                  f"channels (busy, or unsupported settings): {exc}") from None

    def start(self, ring: RingBuffer) -> None:
        self._ring = ring
        self._open()
        self.error = None
        self._stop.clear()
        self._supervisor = threading.Thread(target=self._supervise, name="doascope-device", daemon=True)
        self._supervisor.start()

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=5.0)
        self._close()

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        # A wedged device can block close(); never let that hang the process.
        t = threading.Thread(target=_close_quietly, args=(stream,), daemon=True)
        t.start()
        t.join(timeout=2.0)

    @property
    def alive(self) -> bool:
        s = self._stream
        return s is not None and bool(getattr(s, "active", False))

    def _supervise(self) -> None:
        seen = self.callbacks
        last_audio = time.monotonic()   # when callbacks last advanced (or the stream was opened)
        last_wall = time.time()
        flowing = False                 # the current stream has delivered since it was opened
        retry_at = 0.0
        while not self._stop.wait(0.05):
            now = time.monotonic()
            if self.callbacks != seen:
                seen, last_audio, last_wall, flowing = self.callbacks, now, time.time(), True
                if self.lost_since is not None:
                    log.info("audio from %s again after %.1f s", self.description, time.time() - self.lost_since)
                    self.lost_since = None
                    self.error = None
                    self.recoveries += 1
                continue
            quiet = now - last_audio
            if self.lost_since is None and (not self.alive or quiet > (self.STALL_SECONDS if flowing
                                                                       else self.STARTUP_SECONDS)):
                self.lost_since = last_wall
                stamp = time.strftime("%H:%M:%S", time.localtime(last_wall))
                self.error = f"no audio from {self.description} since {stamp}, retrying"
                log.warning(self.error)
                retry_at = 0.0
            if self.lost_since is not None and now >= retry_at:
                retry_at = now + self.RETRY_SECONDS
                if self._reopen():
                    last_audio, flowing = time.monotonic(), False

    def _reopen(self) -> bool:
        """Close the stream, look the device up again and reopen it; True if it opened."""
        self._close()
        sd = import_sounddevice()
        try:  # PortAudio lists devices once per initialisation: re-initialise to see a replugged array
            sd._terminate()
            sd._initialize()
        except Exception as exc:
            log.debug("re-initialising PortAudio failed: %s", exc)
        try:
            self.index, _ = resolve_device(self.device_name, channels=self.channels)
            self._open()
        except AudioInputError as exc:
            log.debug("reopening %s failed: %s", self.device_name, exc)
            return False
        log.info("reopened %s", self.description)
        return True

    def restart(self) -> None:
        self._reopen()


_alsa_handler = None


def quiet_alsa() -> None:
    """Send ALSA's own error lines (printed straight to stderr by the C library, e.g. when the audio
    server is gone) to the debug log instead; our status line says what matters."""
    global _alsa_handler
    if _alsa_handler is not None:
        return
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("asound")
    if not name:
        return
    try:
        lib = ctypes.CDLL(name)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)

        def handler(file, line, function, err, fmt):
            log.debug("ALSA %s:%d %s: %s", (file or b"").decode(errors="replace"), line,
                      (function or b"").decode(errors="replace"), (fmt or b"").decode(errors="replace"))

        _alsa_handler = proto(handler)
        lib.snd_lib_error_set_handler(_alsa_handler)
    except (OSError, AttributeError) as exc:
        log.debug("cannot redirect ALSA messages: %s", exc)


def _close_quietly(stream) -> None:
    try:
        stream.abort()
        stream.close()
    except Exception:
        pass


def make_source(inp, profile):
    """The AudioSource an input section (doascope.app.config.InputConfig: --device, --file, --sim)
    asks for."""
    if inp.file:
        return file_source(inp.file, profile, speed=inp.replay_speed, loop=inp.loop)
    if inp.sim:
        return sim_source(inp.sim, profile, speed=inp.replay_speed, loop=inp.loop)
    return LiveSource(profile, inp.device)
