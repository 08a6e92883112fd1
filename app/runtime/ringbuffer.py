"""Single-producer single-consumer ring buffer of multichannel float32 audio.

The producer (an audio callback) only copies into preallocated memory and then advances a
monotonic write counter; it never blocks and never waits for the consumer. The consumer reads
any window of past samples by absolute index; if the producer has already overwritten part of
it, the read fails with :class:`Overrun` and the consumer skips ahead.

Thread safety rests on the order of operations (data first, counter second) and on reading the
counter again after copying: if the producer lapped the window during the copy, the copy is
discarded. No lock is taken on either side.
"""

from __future__ import annotations

import time

import numpy as np

from doascope import ParameterError


class Overrun(Exception):
    """The window asked for has been overwritten: the consumer fell more than a buffer behind."""


class RingBuffer:
    """Preallocated (capacity, channels) float32 ring with a monotonic write counter.

    Attributes
    ----------
    written : int
        Frames written since the start (a sample's absolute index is its position in the stream).
    stamp : tuple (int, float)
        (written, time.monotonic()) at the end of the last write: maps sample indices to capture
        wall-clock time for latency measurements.
    """

    def __init__(self, capacity: int, channels: int):
        if int(capacity) < 1 or int(channels) < 1:
            raise ParameterError(f"ring capacity and channels must be positive, got {capacity}, {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), np.float32)
        self.written = 0
        # Readers that must not be lapped when the producer can wait (file replay as fast as
        # possible): objects with a ``position``, the next sample each one needs. A live producer
        # ignores them: it never waits.
        self.readers: list = []
        self._writing = 0  # end of the write in progress: its slots may already hold new data
        self.stamp = (0, time.monotonic())

    def write(self, data: np.ndarray) -> None:
        """Append (frames, channels) samples. Real-time safe: two slice copies, no allocation."""
        n = data.shape[0]
        self._writing = self.written + n  # announced before any slot is overwritten (see read)
        if n > self.capacity:  # only the newest capacity frames can be kept
            data = data[n - self.capacity:]
            self.written += n - self.capacity
            n = self.capacity
        pos = self.written % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos:pos + first] = data[:first]
        if first < n:
            self._buf[:n - first] = data[first:]
        self.written += n
        self.stamp = (self.written, time.monotonic())

    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.written - self.capacity)

    def read(self, start: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy frames [start, start + n) into ``out`` (allocated if None) and return it.

        Raises Overrun if any of them has been overwritten, ParameterError if they are not all
        written yet or n exceeds the capacity.
        """
        if n > self.capacity:
            raise ParameterError(f"cannot read {n} frames from a ring of {self.capacity}")
        if start + n > self.written:
            raise ParameterError(f"frames up to {start + n} are not written yet (written: {self.written})")
        if start < self.oldest():
            raise Overrun(start)
        if out is None:
            out = np.empty((n, self.channels), np.float32)
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        out[:first] = self._buf[pos:pos + first]
        if first < n:
            out[first:n] = self._buf[:n - first]
        # The producer may have lapped us while we copied: then part of the copy is newer data.
        # Check against the write in progress too, whose data may be in the slots before the
        # counter moves.
        if start < self._writing - self.capacity:
            raise Overrun(start)
        return out

    def capture_time(self, index: int, fs: float) -> float:
        """Estimated time.monotonic() at which sample ``index`` was captured."""
        pos, t = self.stamp
        return t - (pos - index) / fs
