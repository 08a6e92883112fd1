"""The SPSC ring buffer between the audio producer (callback, file or scene thread) and the engine:
exact wrap-around, the errors a reader can meet, and a real producer/consumer pair of threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from doascope import ParameterError
from doascope.app.runtime.ringbuffer import Overrun, RingBuffer


def _ramp(start: int, n: int, channels: int) -> np.ndarray:
    """Frames [start, start + n) of a ramp whose sample value is its index (channel c adds c * 0.25).

    float32 holds integers exactly up to 2**24, so every value below that is exact.
    """
    idx = np.arange(start, start + n, dtype=np.float64)[:, None]
    return (idx + 0.25 * np.arange(channels)[None, :]).astype(np.float32)


def test_wraparound_writes_and_reads_equal_the_input_exactly():
    rng = np.random.default_rng(1)
    cap, ch = 1009, 3  # a prime: never a multiple of any chunk size
    ring = RingBuffer(cap, ch)
    signal = rng.standard_normal((20 * cap + 123, ch)).astype(np.float32)
    pos = 0
    out = np.empty((cap, ch), np.float32)
    while pos < len(signal):
        n = int(rng.integers(1, 400))
        ring.write(signal[pos:pos + n])
        pos = min(pos + n, len(signal))
        assert ring.written == pos
        assert ring.oldest() == max(0, pos - cap)
        # Random windows among the samples still held, read into a fresh array and into `out`.
        for _ in range(3):
            m = int(rng.integers(1, min(cap, pos) + 1))
            start = int(rng.integers(ring.oldest(), pos - m + 1))
            np.testing.assert_array_equal(ring.read(start, m), signal[start:start + m])
            got = ring.read(start, m, out=out)
            assert got is out
            np.testing.assert_array_equal(out[:m], signal[start:start + m])
    # The whole ring, the oldest sample first, straddling the wrap point.
    assert ring.written % cap != 0
    np.testing.assert_array_equal(ring.read(ring.oldest(), cap), signal[-cap:])


def test_read_of_unwritten_frames_is_a_parameter_error():
    ring = RingBuffer(100, 2)
    ring.write(np.ones((30, 2), np.float32))
    with pytest.raises(ParameterError, match="not written yet"):
        ring.read(25, 10)
    with pytest.raises(ParameterError):
        ring.read(30, 1)
    with pytest.raises(ParameterError):
        ring.read(0, 101)  # more than the capacity
    np.testing.assert_array_equal(ring.read(20, 10), np.ones((10, 2), np.float32))


def test_read_of_overwritten_frames_raises_overrun():
    ring = RingBuffer(64, 1)
    ring.write(_ramp(0, 100, 1))  # oldest held: 36
    assert ring.oldest() == 36
    with pytest.raises(Overrun):
        ring.read(35, 10)
    with pytest.raises(Overrun):
        ring.read(0, 1)
    np.testing.assert_array_equal(ring.read(36, 64), _ramp(36, 64, 1))


def test_write_larger_than_capacity_keeps_the_newest():
    ring = RingBuffer(50, 2)
    ring.write(_ramp(0, 7, 2))
    ring.write(_ramp(7, 173, 2))  # 173 > 50 frames in one write
    assert ring.written == 180
    assert ring.oldest() == 130
    np.testing.assert_array_equal(ring.read(130, 50), _ramp(130, 50, 2))
    with pytest.raises(Overrun):
        ring.read(129, 2)


def test_constructor_validates():
    with pytest.raises(ParameterError):
        RingBuffer(0, 2)
    with pytest.raises(ParameterError):
        RingBuffer(10, 0)


def test_capture_time_maps_indices_to_the_monotonic_clock():
    fs = 16000.0
    ring = RingBuffer(4000, 1)
    before = time.monotonic()
    ring.write(np.zeros((160, 1), np.float32))
    after = time.monotonic()
    # The newest sample was captured when the write ended; earlier ones 1/fs apart before it.
    assert before <= ring.capture_time(160, fs) <= after
    assert ring.capture_time(0, fs) == pytest.approx(ring.capture_time(160, fs) - 0.01, abs=1e-9)
    times = [ring.capture_time(i, fs) for i in range(0, 161, 40)]
    assert np.all(np.diff(times) > 0)
    time.sleep(0.02)
    ring.write(np.zeros((160, 1), np.float32))
    # A later write moves the estimate forward with the clock, never back, and stays in the past.
    assert ring.capture_time(320, fs) >= after + 0.02 - 1e-3
    assert ring.capture_time(320, fs) <= time.monotonic()
    assert ring.stamp[0] == ring.written == 320


def _producer(ring: RingBuffer, total: int, seed: int, done: threading.Event, stats: dict, pause: float = 0.0,
              pos: int = 0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 300, size=total)  # more than enough chunk sizes
    ch = ring.channels
    k = 0
    t0 = time.perf_counter()
    while pos < total:
        n = int(min(sizes[k], total - pos))
        k += 1
        ring.write(_ramp(pos, n, ch))
        pos += n
        if pause and k % 16 == 0:
            time.sleep(pause)  # let the consumer in, like a sound card's period
    stats["producer_seconds"] = time.perf_counter() - t0
    done.set()


def _consumer(ring: RingBuffer, done: threading.Event, seed: int, stats: dict, delay: float = 0.0,
              at_the_edge: bool = False):
    """Reads windows until the producer is done; every successful read must be the ramp exactly."""
    rng = np.random.default_rng(seed)
    ch = ring.channels
    out = np.empty((ring.capacity, ch), np.float32)
    ok = torn = overruns = 0
    pos = 0
    deadline = time.monotonic() + 60.0
    while not done.is_set() and time.monotonic() < deadline:
        n = int(rng.integers(16, ring.capacity // 2))
        written = ring.written
        if at_the_edge:  # the oldest window still held: the one the producer overwrites next
            pos = ring.oldest()
        if pos + n > written:
            time.sleep(0)
            continue
        try:
            got = ring.read(pos, n, out=out)
        except Overrun:
            overruns += 1
            pos = ring.written - n  # skip ahead, as the engine does
            continue
        expected = _ramp(pos, n, ch)
        if np.array_equal(got[:n], expected):
            ok += 1
        else:
            torn += 1
        pos += n // 2
        if delay:
            done.wait(delay)
    stats.update(ok=ok, torn=torn, overruns=overruns)


def _run_pair(capacity: int, total: int, *, delay: float, at_the_edge: bool = False, pause: float = 0.0,
              seed: int = 0, channels: int = 2) -> dict:
    ring = RingBuffer(capacity, channels)
    done = threading.Event()
    stats: dict = {}
    prod = threading.Thread(target=_producer, args=(ring, total, seed, done, stats, pause))
    cons = threading.Thread(target=_consumer, args=(ring, done, seed + 1, stats, delay, at_the_edge))
    cons.start()
    prod.start()
    prod.join(timeout=30)
    assert not prod.is_alive(), "the producer blocked"
    cons.join(timeout=30)
    assert not cons.is_alive()
    assert ring.written == total
    return stats


def test_concurrent_reader_keeping_up_sees_the_ramp_exactly():
    stats = _run_pair(4096, 2_000_000, delay=0.0, pause=0.0005)
    assert stats["torn"] == 0, stats
    assert stats["ok"] > 100, stats


def test_concurrent_reader_at_the_overwrite_edge_never_gets_a_torn_window():
    """The hardest case: every read is of the oldest held window, which the producer is busy
    overwriting. A read may fail with Overrun, but one that succeeds must be the ramp exactly."""
    # 8 channels: chunks of more than ~60 frames are copied with the GIL released (numpy does so
    # above a few hundred elements), so the two threads really run at once.
    runs = [_run_pair(2048, 1_000_000, delay=0.0, at_the_edge=True, channels=8, seed=s) for s in range(5)]
    assert sum(r["ok"] + r["overruns"] for r in runs) > 500, runs
    assert sum(r["torn"] for r in runs) == 0, runs


def test_slow_reader_gets_overruns_counted_and_recovers():
    stats = _run_pair(2048, 1_500_000, delay=0.02, pause=0.0005)  # asleep 20 ms between reads
    assert stats["torn"] == 0, stats
    assert stats["overruns"] > 0, stats
    assert stats["ok"] > 0, stats  # after each overrun it skips ahead and reads again


def test_a_stalled_reader_never_blocks_the_producer():
    """The consumer takes one window and then stalls until the producer is done: a producer that
    waited for the consumer would never be done (the deadline below would pass), and the stale
    window is an Overrun."""
    ring = RingBuffer(1024, 2)
    done = threading.Event()
    stats: dict = {}
    first = threading.Event()

    ring.write(_ramp(0, 512, 2))

    def stalled():
        np.testing.assert_array_equal(ring.read(0, 512), _ramp(0, 512, 2))
        first.set()
        stats["producer_done_first"] = done.wait(120.0)  # stalled until the producer is done (a deadline)
        with pytest.raises(Overrun):
            ring.read(512, 512)
        stats["checked"] = True

    cons = threading.Thread(target=stalled)
    cons.start()
    assert first.wait(60.0)  # a deadline for a busy machine
    prod = threading.Thread(target=_producer, args=(ring, 1_000_000, 5, done, stats, 0.0005, 512))
    prod.start()
    prod.join(timeout=150)
    cons.join(timeout=150)
    assert first.is_set() and stats.get("checked"), stats
    assert stats["producer_done_first"], stats
    assert ring.written == 1_000_000
