"""Where frames and audio go besides the screen: JSON-lines frame files and raw recordings.

Both work on their own threads so that disk I/O never stalls the engine: the frame writer takes
frames from a bounded queue (counting any it had to drop), the recorder reads the ring buffer
itself, a second reader behind the engine.

Nothing is lost without a word: a write that fails (disk full, file removed, permission lost)
sets ``error`` (one sentence) and ``failed``, which the command watches and stops on. What was
written stays valid at any moment, even after a SIGKILL: frame lines go to the file whole and
unbuffered (and the part of a line that a full disk took is cut off again), WAV
headers are rewritten with every block, and a FLAC recording's STREAMINFO is kept up to date with
the samples already encoded.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading

import numpy as np

from doascope import ParameterError
from doascope.app.runtime.ringbuffer import Overrun, RingBuffer

log = logging.getLogger(__name__)


def _write_error(path: str, exc: BaseException) -> str:
    why = getattr(exc, "strerror", None)
    if not why:
        # libsndfile reports a failed write as "System error." and keeps errno to itself.
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(path)))
            if st.f_bavail * st.f_frsize < 1 << 16:
                why = os.strerror(28)  # ENOSPC: "No space left on device"
        except OSError:
            pass
    why = why or str(exc).strip().rstrip(".") or type(exc).__name__
    return f"cannot write {path}: {why}"


def _removed(fd: int, path: str) -> str | None:
    """Why further writes to ``fd`` would be lost: the file was deleted (or replaced) under us."""
    try:
        st = os.fstat(fd)
        if st.st_nlink == 0:
            return f"{path} was removed while writing"
        if os.stat(path).st_ino != st.st_ino:
            return f"{path} was replaced while writing"
    except FileNotFoundError:
        return f"{path} was removed while writing"
    except OSError:
        return None
    return None


class _Output:
    """What a file output shares: the error sentence and the event a command waits on."""

    def __init__(self, path: str):
        self.path = path
        self.error: str | None = None
        self.failed = threading.Event()

    def _fail(self, message: str, exc: BaseException | None = None) -> None:
        if self.error is None:
            self.error = message
            log.info(message)
            if exc is not None:
                log.debug("write error on %s", self.path, exc_info=exc)
        self.failed.set()


class FrameWriter(_Output):
    """Writes ``frame.record()`` as one JSON object per line; subscribe ``put`` to an engine.

    Each line goes to the file whole and unbuffered, so a killed process leaves only complete
    lines, and a line that a full disk took only part of is cut off again."""

    def __init__(self, path: str, *, capacity: int = 4096):
        super().__init__(path)
        try:
            self._fh = open(path, "wb", buffering=0)   # unbuffered: no half line waits in a buffer
        except OSError as exc:
            raise ParameterError(f"cannot write {path}: {exc.strerror}") from None
        self._complete = 0   # bytes of whole lines in the file
        self.dropped = 0
        self.written = 0
        self._q: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="doascope-frames", daemon=True)
        self._thread.start()

    def put(self, frame) -> None:
        if self.error is not None:
            return
        try:
            self._q.put_nowait(frame)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        fd = self._fh.fileno()
        regular = os.path.isfile(self.path)
        last_seq = None
        while True:
            frame = self._q.get()
            if frame is None:
                break
            if self.error is not None or frame.seq == last_seq:
                continue  # a status update re-published with the last frame is no new record
            last_seq = frame.seq
            line = (json.dumps(frame.record()) + "\n").encode("utf-8")
            try:
                # The whole line straight to the file (a crash cuts between lines, never inside one) ...
                view = memoryview(line)
                while view:
                    view = view[self._fh.write(view):]
            except (OSError, ValueError) as exc:
                self._cut_partial_line(fd, regular)
                self._fail(_write_error(self.path, exc), exc)
                continue
            self._complete += len(line)
            self.written += 1
            gone = _removed(fd, self.path) if regular else None
            if gone:
                self._fail(gone)

    def _cut_partial_line(self, fd: int, regular: bool) -> None:
        """... and when a write fails part-way (a disk that fills up takes what fits), the part of
        the line that got in is cut off again, so the file ends with the last whole line."""
        if regular:
            try:
                os.ftruncate(fd, self._complete)
            except OSError as exc:
                log.debug("could not cut the partial line of %s", self.path, exc_info=exc)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)
        try:
            self._fh.close()
        except OSError as exc:
            self._fail(_write_error(self.path, exc), exc)


# FLAC's STREAMINFO (after "fLaC" and the 4-byte block header) holds the total sample count in 36
# bits starting at bit 4 of its byte 13; libsndfile writes it only when the file is closed.
_FLAC_TOTAL_AT = 8 + 13


class RawRecorder(_Output):
    """Records every channel the source delivers, losslessly, from the ring buffer."""

    def __init__(self, path: str, ring: RingBuffer, fs: int):
        import soundfile as sf

        super().__init__(path)
        ext = os.path.splitext(path)[1].lower()
        fmt = {".flac": "FLAC", ".wav": "WAV", ".w64": "W64", ".caf": "CAF"}.get(ext)
        if fmt is None:
            raise ParameterError(f"record to .flac, .wav, .w64 or .caf, not {ext or 'no extension'!r}")
        if fmt == "FLAC" and ring.channels > 8:
            raise ParameterError(f"FLAC holds at most 8 channels and the input has {ring.channels}: "
                                 "record to .wav or .w64 instead")
        # FLAC is lossless at 24 bits; WAV-like containers keep the float32 samples as they are.
        subtype = "PCM_24" if fmt == "FLAC" else "FLOAT"
        fd = -1
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
            self._sf = sf.SoundFile(fd, "w", samplerate=fs, channels=ring.channels, format=fmt, subtype=subtype,
                                    closefd=True)
        except Exception as exc:
            if fd >= 0:
                os.close(fd)
            raise ParameterError(_write_error(path, exc)) from None
        self._fd = fd
        self._flac = fmt == "FLAC"
        if not self._flac:
            _update_header_on_every_write(self._sf)
        self.ring, self.fs = ring, fs
        self.frames = 0
        self.gaps = 0
        self.position = ring.written  # next sample to record
        ring.readers.append(self)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="doascope-recorder", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        gone = _removed(self._fd, self.path)
        if gone:
            self._fail(gone)
        while self.error is None:
            n = min(self.ring.written - self.position, self.ring.capacity // 4)
            if n <= 0:
                return
            try:
                block = self.ring.read(self.position, n)
            except Overrun:  # the disk could not keep up: note the gap, resume at the oldest sample
                self.gaps += 1
                self.position = self.ring.oldest() + self.ring.capacity // 4
                continue
            try:
                self._sf.write(np.clip(block, -1.0, 1.0) if self._flac else block)
                if self._flac:
                    self._mark_flac_length()
            except Exception as exc:  # LibsndfileError (disk full) or OSError
                self._fail(_write_error(self.path, exc), exc)
                return
            self.position += n
            self.frames += n

    def _mark_flac_length(self) -> None:
        """Write into STREAMINFO how many samples the file already holds in whole FLAC frames, so
        that a recording cut short by a crash is read (by soundfile, flac, ffmpeg) up to there."""
        # libsndfile hands samples to libFLAC, which encodes whole blocks (4096 samples at most)
        # and may hold one back: count only what is surely on disk.
        done = max(0, self.frames - 2 * 4096)
        if done <= 0:
            return
        buf = bytearray(os.pread(self._fd, 5, _FLAC_TOTAL_AT))
        if len(buf) < 5:
            return
        buf[0] = (buf[0] & 0xF0) | ((done >> 32) & 0x0F)
        buf[1:5] = (done & 0xFFFFFFFF).to_bytes(4, "big")
        os.pwrite(self._fd, bytes(buf), _FLAC_TOTAL_AT)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._drain()
        self._drain()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self._sf.close()
        except Exception as exc:
            self._fail(_write_error(self.path, exc), exc)
        if self in self.ring.readers:
            self.ring.readers.remove(self)


def _update_header_on_every_write(f) -> None:
    """libsndfile's SFC_SET_UPDATE_HEADER_AUTO: the WAV/W64/CAF header is rewritten after every
    write, so the file is valid at any moment (soundfile does not expose the command)."""
    try:
        from soundfile import _ffi, _snd

        _snd.sf_command(f._file, 0x1061, _ffi.NULL, 1)  # SFC_SET_UPDATE_HEADER_AUTO = 0x1061, SF_TRUE
    except Exception as exc:  # an older or different soundfile: the file is still valid once closed
        log.debug("cannot make the recording header update itself: %s", exc)
