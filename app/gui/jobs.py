"""Background jobs for the GUI: work on a worker thread, results drawn on the GUI thread.

A :class:`Job` runs ``work(handle)`` on a daemon thread. The work publishes what it has to show
with ``handle.publish(key=value, ...)`` into a mailbox (one lock, latest value per key) and checks
``handle.stopped()`` between steps. A timer on the GUI thread looks at the mailbox and, when
something new arrived, calls ``on_update(values)`` with every key published so far; once the
work has ended it calls ``on_finished(error)`` exactly once (``error`` is None, or one line
saying what went wrong). No widget is touched off the GUI thread: the callbacks run on it.

Every tab that trains or loads something in the background uses this one helper.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6 import QtCore


class JobHandle:
    """What the work function sees: publish results, ask whether to stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict = {}
        self._version = 0
        self._stop = threading.Event()
        self.error: str | None = None
        self.finished = False

    def publish(self, **values) -> None:
        """Hand values to the GUI thread (they must not be changed afterwards: pass copies)."""
        with self._lock:
            self._values.update(values)
            self._version += 1

    def stopped(self) -> bool:
        return self._stop.is_set()

    def _take(self, seen: int) -> tuple[int, dict | None, bool]:
        with self._lock:
            if self._version == seen:
                return seen, None, False
            return self._version, dict(self._values), self.finished


class Job:
    """One background job with its GUI-thread glue (create and start it on the GUI thread).

    ``work(handle)`` runs on the thread; ``on_update(values)`` and ``on_finished(error)`` on the
    GUI thread, every ``interval_ms`` at most. An exception in the work becomes
    ``f"{what} failed: {exc}"`` (its first line). ``stop()`` asks the work to end and waits for it (bounded).
    """

    _alive: set[Job] = set()  # running jobs stay referenced (and their timers alive) until delivered

    def __init__(self, work: Callable[[JobHandle], None], *, on_update: Callable[[dict], None],
                 on_finished: Callable[[str | None], None] | None = None, what: str = "job",
                 interval_ms: int = 150, parent: QtCore.QObject | None = None):
        self.handle = JobHandle()
        self.what = what
        self._work, self._on_update, self._on_finished = work, on_update, on_finished
        self._seen = 0
        self._delivered = False
        self._thread = threading.Thread(target=self._run, name=what, daemon=True)
        self._timer = QtCore.QTimer(parent)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    def start(self) -> Job:
        Job._alive.add(self)
        self._thread.start()
        self._timer.start()
        return self

    @property
    def running(self) -> bool:
        """True until on_finished has been delivered."""
        return not self._delivered

    def _run(self) -> None:
        h = self.handle
        try:
            self._work(h)
        except Exception as exc:  # noqa: BLE001 - shown in the window; the thread must not die silently
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            with h._lock:
                h.error = f"{self.what} failed: {first}"  # one line, as every error a user sees
        finally:
            with h._lock:
                h.finished = True
                h._version += 1

    def poll(self) -> None:
        """Deliver news to the GUI (called by the timer; tests may call it directly)."""
        if self._delivered:
            return
        self._seen, values, finished = self.handle._take(self._seen)
        if values is None:
            return
        if values:
            self._on_update(values)
        if finished:
            self._delivered = True
            self._timer.stop()
            Job._alive.discard(self)
            if self._on_finished is not None:
                self._on_finished(self.handle.error)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the work to stop and wait up to ``timeout`` s; no callback is delivered afterwards."""
        self.handle._stop.set()
        self._timer.stop()
        self._delivered = True
        Job._alive.discard(self)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class ShippedResultPanel:
    """A teaching panel that draws a result shipped with doascope when first shown, and can compute a
    fresh one in a background :class:`Job`. Subclasses set their own state, then call this
    ``__init__``; they define ``_build()`` (fills ``self.widget``) and ``load(path)``."""

    def __init__(self, context, shipped):
        from PySide6 import QtWidgets

        self.context = context
        self.job: Job | None = None
        self.loading = False
        self._shown = False  # a result (shipped or trained) has been drawn
        self.widget = QtWidgets.QWidget()
        self._build()
        self.shipped = shipped if shipped is not None and shipped.is_file() else None

    def show_shipped(self) -> None:
        """Draw the shipped result (read in the background), unless something is shown or running."""
        if self.shipped is not None and self.job is None and not self._shown:
            self.load(self.shipped)

    @property
    def worker(self):
        """The running job, or None."""
        return self.job
