"""Where frames and audio go besides the screen: JSON-lines frame files and raw recordings.

Both work on their own threads so that disk I/O never stalls the engine: the frame writer takes
frames from a bounded queue (counting any it had to drop), the recorder reads the ring buffer
itself, a second reader behind the engine.
"""

from __future__ import annotations

import json
import os
import queue
import threading

import numpy as np

from doascope import ParameterError
from doascope.app.ringbuffer import Overrun, RingBuffer


class FrameWriter:
    """Writes ``frame.record()`` as one JSON object per line; subscribe ``put`` to an engine."""

    def __init__(self, path: str, *, capacity: int = 4096):
        try:
            self._fh = open(path, "w", encoding="utf-8")
        except OSError as exc:
            raise ParameterError(f"cannot write {path}: {exc.strerror}") from None
        self.path = path
        self.dropped = 0
        self.written = 0
        self._q: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="doascope-frames", daemon=True)
        self._thread.start()

    def put(self, frame) -> None:
        try:
            self._q.put_nowait(frame)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            frame = self._q.get()
            if frame is None:
                break
            self._fh.write(json.dumps(frame.record()) + "\n")
            self.written += 1
        self._fh.flush()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)
        self._fh.close()


class RawRecorder:
    """Records every channel the source delivers, losslessly, from the ring buffer."""

    def __init__(self, path: str, ring: RingBuffer, fs: int):
        import soundfile as sf

        ext = os.path.splitext(path)[1].lower()
        fmt = {".flac": "FLAC", ".wav": "WAV", ".w64": "W64", ".caf": "CAF"}.get(ext)
        if fmt is None:
            raise ParameterError(f"record to .flac, .wav, .w64 or .caf, not {ext or 'no extension'!r}")
        if fmt == "FLAC" and ring.channels > 8:
            raise ParameterError(f"FLAC holds at most 8 channels and the input has {ring.channels}: "
                                 "record to .wav or .w64 instead")
        # FLAC is lossless at 24 bits; WAV-like containers keep the float32 samples as they are.
        subtype = "PCM_24" if fmt == "FLAC" else "FLOAT"
        try:
            self._sf = sf.SoundFile(path, "w", samplerate=fs, channels=ring.channels, format=fmt, subtype=subtype)
        except Exception as exc:
            raise ParameterError(f"cannot write {path}: {exc}") from None
        self.path, self.ring, self.fs = path, ring, fs
        self.frames = 0
        self.gaps = 0
        self.position = ring.written  # next sample to record
        ring.readers.append(self)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="doascope-recorder", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            n = min(self.ring.written - self.position, self.ring.capacity // 4)
            if n <= 0:
                return
            try:
                block = self.ring.read(self.position, n)
            except Overrun:  # the disk could not keep up: note the gap, resume at the oldest sample
                self.gaps += 1
                self.position = self.ring.oldest() + self.ring.capacity // 4
                continue
            self._sf.write(np.clip(block, -1.0, 1.0) if self._sf.format == "FLAC" else block)
            self.position += n
            self.frames += n

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._drain()
        self._drain()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sf.close()
        if self in self.ring.readers:
            self.ring.readers.remove(self)
