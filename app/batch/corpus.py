"""``doascope batch``: localize whole corpora into one Parquet table, on this machine's cores or on
a Ray cluster.

Work is cut into tasks: a whole file, or for a long file one chunk of it. Each task runs the very
analysis ``locate`` runs (the same localizer, the same blocks) and gives one row per reported source
per block, as ``locate --format csv`` prints them (a block without sources gives one row with a null
rank). A chunk starts its analysis ``overlap`` blocks early, so that the temporal integration and
the activity gate have warmed up by its first reported block; the state the stream carries into
that block is compared with the state the previous chunk ended in, and a chunk whose warm-up fell
short (a long silence, say) is run again from the previous chunk's exact state. So a chunked file
gives the same rows as one pass, bit for bit.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from doascope import DoascopeError, ParameterError, __version__

STFT_CHUNK = 256          # blocks per STFT call in BlockStream.locate: chunks start on its multiples
SEEKABLE = {"WAV", "WAVEX", "FLAC", "AIFF", "AU", "CAF", "W64", "RF64", "NIST", "IRCAM", "MAT4", "MAT5"}
ATTEMPTS = 4              # a task whose worker process dies is tried this many times in all
HOLD_ENV = "DOASCOPE_BATCH_HOLD"   # tests: tasks announce themselves in this folder and wait for 'release'


# --- what to do ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """The analysis of one file: profile (id or path), and the analysis settings (see doascope.app.cli.batch.job_options)."""

    profile: str
    options: tuple   # sorted (AnalysisConfig field, value) pairs, so that a Job is hashable and picklable

    def config(self):
        """The AnalysisConfig of the job."""
        from doascope.config import AnalysisConfig

        return AnalysisConfig(**dict(self.options))

    @property
    def method(self) -> str:
        from doascope.config import DEFAULT_SEARCH

        c = self.config()
        return f"position:{c.search or DEFAULT_SEARCH}" if c.mode == "position" else c.method


def config_options(cfg) -> dict:
    """An AnalysisConfig as a Job's options: every field but the tracker's."""
    return {k: getattr(cfg, k) for k in cfg.keywords() if k != "tracker"}


@dataclass(frozen=True)
class Task:
    """One file, or blocks [first, stop) of it, analysed from block ``warm`` on (``state``: the
    stream's exact state at block ``warm``, when it is restored rather than warmed up)."""

    file: str
    sha256: str
    settings: str
    job: Job
    chunk: int = 0
    chunks: int = 1
    warm: int = 0
    first: int = 0
    stop: int | None = None
    state: tuple | None = None
    seconds: float = 0.0      # audio this task reports, for the progress bar
    attempt: int = 1

    @property
    def exact(self) -> bool:
        """Its results need no check: it starts where the file starts, or from a restored state."""
        return self.warm == 0 or self.state is not None


def audio_seconds(path: str) -> float:
    """A recording's duration from its header (0 when it has none)."""
    import soundfile as sf

    try:
        info = sf.info(path)
        return info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - the task reports why it cannot be read
        return 0.0


def file_sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def settings_key(job: Job, profile, chunk_blocks: int) -> str:
    """What the rows depend on besides the audio: the profile's content, the options, the chunking."""
    import hashlib

    h = hashlib.sha256()
    h.update(Path(profile.path).read_bytes() if profile.path else repr(profile).encode())
    h.update(repr(job.options).encode())
    weights = dict(job.options).get("weights")
    if weights and os.path.isfile(weights):
        h.update(file_sha256(weights).encode())
    h.update(f"chunk={chunk_blocks}".encode())
    return h.hexdigest()[:16]


def overlap_blocks(localizer) -> int:
    """Warm-up blocks before a chunk: the gate's memory and the smoothing's decay to below float
    resolution, twice over, rounded up to whole STFT chunks."""
    a = localizer._alpha
    decay = math.ceil(math.log(1e-9) / math.log(a)) if 0 < a < 1 else 0
    need = 2 * max(localizer.gate._history.maxlen or 0, decay)
    return STFT_CHUNK * max(1, math.ceil(need / STFT_CHUNK))


# --- inputs ----------------------------------------------------------------------------------------

def _audio_suffixes() -> set[str]:
    import soundfile as sf

    return {f".{k.lower()}" for k in sf.available_formats()} | {".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"}


def collect_inputs(inputs: list[str], default: Job | None, with_method) -> list[tuple[str, Job]]:
    """(absolute path, Job) of every file the inputs name: files, folders (recursive, audio files
    only), CSV manifests (columns file, profile, optionally method; paths relative to the manifest)."""
    out: list[tuple[str, Job]] = []
    suffixes = None

    def need_default(what: str) -> Job:
        if default is None:
            raise ParameterError(f"{what} needs --profile (or give a CSV manifest with a profile column)")
        return default

    for item in inputs:
        p = Path(item)
        if p.suffix.lower() == ".csv" and p.is_file():
            out.extend(_read_manifest(p, default, with_method))
        elif p.is_dir():
            suffixes = suffixes or _audio_suffixes()
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            job = need_default(f"the folder {item}")
            out.extend((str(f.resolve()), job) for f in files)
        elif p.exists():
            out.append((str(p.resolve()), need_default(item)))
        else:
            raise ParameterError(f"no such file or folder: {item}")
    seen, unique = set(), []
    for path, job in out:
        if (path, job) not in seen:
            seen.add((path, job))
            unique.append((path, job))
    if not unique:
        raise ParameterError("the inputs hold no audio files")
    return unique


def _read_manifest(path: Path, default: Job | None, with_method) -> list[tuple[str, Job]]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ParameterError(f"cannot read the manifest {path}: {exc}") from None
    out = []
    for n, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        name = row.get("file") or row.get("path")
        if not name:
            raise ParameterError(f"{path}, line {n}: no file (the manifest needs a 'file' column)")
        profile = row.get("profile") or (default.profile if default else None)
        if not profile:
            raise ParameterError(f"{path}, line {n}: no profile, and no --profile was given")
        if profile.lower().endswith(".toml") and not os.path.isabs(profile) and (path.parent / profile).is_file():
            profile = str((path.parent / profile).resolve())   # a profile file next to the manifest
        f = Path(name) if os.path.isabs(name) else path.parent / name
        out.append((str(f.resolve()), with_method(profile, row.get("method") or None)))
    return out


# --- the worker side -------------------------------------------------------------------------------

_CACHE: dict = {}


def warm_worker() -> None:
    """Process-pool initializer: load the Numba kernels once per worker."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import doascope.dsp

    doascope.dsp.warmup()


def _analysis(job: Job):
    """(profile, localizer) for ``job``, built once per worker process and reset for each task."""
    if job not in _CACHE:
        from doascope.app.runtime.offline import localizer_for
        from doascope.hardware_profiles import load_profile

        profile = load_profile(job.profile)
        _CACHE[job] = (profile, localizer_for(job.config(), profile))
    profile, localizer = _CACHE[job]
    localizer.reset()
    return profile, localizer


def state_digest(state) -> str:
    """A hash of a stream state (BlockStream.state): equal digests, identical continuations."""
    import hashlib

    import numpy as np

    h = hashlib.sha256()

    def feed(x):
        if x is None:
            h.update(b"N")
        elif isinstance(x, np.ndarray):
            h.update(f"A{x.dtype.str}{x.shape}".encode())
            h.update(np.ascontiguousarray(x).tobytes())
        elif isinstance(x, (tuple, list)):
            h.update(f"T{len(x)}".encode())
            for y in x:
                feed(y)
        else:
            h.update(b"F" + np.float64(x).tobytes())

    feed(state)
    return h.hexdigest()


def _hold(task: Task) -> None:
    """Test hook (HOLD_ENV): announce this task and wait (at most two minutes) for 'release'."""
    folder = os.environ.get(HOLD_ENV)
    if not folder:
        return
    Path(folder, f"{os.getpid()}-{Path(task.file).stem}-{task.chunk}").touch()
    deadline = time.monotonic() + 120
    while not Path(folder, "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def run_task(task: Task) -> dict:
    """Analyse one task. Returns rows (column lists, see batch_table.COLUMNS) and, for chunks, the
    digest of the state at its first block ('entry') and the state after its last ('exit')."""
    from doascope.app.batch.table import empty_columns
    from doascope.app.runtime.offline import block_record

    _hold(task)
    cols = empty_columns()
    out = {"rows": cols, "entry": None, "exit": None, "error": None}
    try:
        from doascope.app.runtime.audio import read_recording
        from doascope.app.runtime.offline import require_one_block

        profile, loc = _analysis(task.job)
        position = task.job.config().mode == "position"
        adv = loc.block_advance
        if task.stop is None:       # the whole file
            audio, fs = read_recording(task.file, profile)
            require_one_block(task.file, audio.shape[0], fs, loc)
            offset = 0
        else:
            offset = task.warm * adv
            audio, fs = read_recording(task.file, profile, start=offset,
                                       stop=(task.stop - 1) * adv + loc.block_samples)
        if task.state is not None:
            loc.restore(task.state)
        if task.first == task.warm:
            out["entry"] = state_digest(loc.state())
        for res in loc.locate(audio, fs, offset=offset):
            block = res.start // adv
            if block == task.first - 1:
                out["entry"] = state_digest(loc.state())
            if block < task.first:
                continue
            found = res.sources if position else res.peaks
            record = block_record(res.t, found)
            for rank, s in enumerate(record["sources"] or [None]):
                cols["t"].append(record["t"])
                cols["rank"].append(None if s is None else rank)
                for k in ("azimuth", "elevation", "x", "y", "z", "power"):
                    cols[k].append(None if s is None else s.get(k))
        if task.chunk + 1 < task.chunks:
            out["exit"] = loc.state()
    except DoascopeError as exc:
        out["error"] = str(exc)
        cols = out["rows"] = empty_columns()
    except Exception as exc:  # noqa: BLE001 - one file's failure must not end the run
        out["error"] = f"{type(exc).__name__}: {exc}"
        cols = out["rows"] = empty_columns()
    if out["error"] is not None:
        cols["t"].append(None)
        cols["rank"].append(None)
        for k in ("azimuth", "elevation", "x", "y", "z", "power"):
            cols[k].append(None)
    n = len(cols["t"])
    cols.update(file=[task.file] * n, chunk=[task.chunk] * n, method=[task.job.method] * n,
                profile=[task.job.profile] * n, version=[__version__] * n, sha256=[task.sha256] * n,
                settings=[task.settings] * n, error=[out["error"]] * n)
    return out


# --- planning --------------------------------------------------------------------------------------

@dataclass
class FileWork:
    """The driver's book-keeping of one file: its tasks, which chunks are written, and the exact
    state after each written chunk (what the next chunk's entry is checked against)."""

    path: str
    seconds: float
    tasks: list[Task] = field(default_factory=list)
    pending: dict = field(default_factory=dict)      # chunk -> (task, result) waiting for its predecessor
    written: set = field(default_factory=set)
    exits: dict = field(default_factory=dict)        # chunk -> exit state (written chunks)
    todo: list = field(default_factory=list)         # tasks of this run
    failed: bool = False
    left: int = 0
    error: Task | None = None                        # the file could not be planned: this task's error row
    message: str = ""


_BUILT: dict = {}


def job_info(job: Job, chunk_seconds: float):
    """(profile, localizer, chunk blocks, settings key, overlap blocks) of ``job``, built once; raises
    the DoascopeError of a profile or option that does not build."""
    if (job, chunk_seconds) not in _BUILT:
        from doascope.app.runtime.offline import localizer_for
        from doascope.hardware_profiles import load_profile

        profile = load_profile(job.profile)
        loc = localizer_for(job.config(), profile)
        adv = loc.block_advance
        chunk_blocks = STFT_CHUNK * max(1, round(chunk_seconds * profile.sample_rate / adv / STFT_CHUNK))
        _BUILT[job, chunk_seconds] = (profile, loc, chunk_blocks, settings_key(job, profile, chunk_blocks),
                                      overlap_blocks(loc))
    return _BUILT[job, chunk_seconds]


class Planner:
    """Turns (path, Job) into FileWork: reads headers, hashes contents, cuts chunks, skips done work."""

    def __init__(self, chunk_seconds: float, done: set):
        self.chunk_seconds = chunk_seconds
        self.done = done

    def _job_info(self, job: Job):
        return job_info(job, self.chunk_seconds)

    def plan(self, path: str, job: Job) -> FileWork:
        import soundfile as sf

        from doascope.dsp.stft import n_frames

        try:
            profile, loc, chunk_blocks, settings, overlap = self._job_info(job)
        except DoascopeError as exc:   # a manifest's profile or method that does not build
            return self._failed(path, job, "", "", str(exc))
        try:
            sha = file_sha256(path)
        except OSError as exc:
            return self._failed(path, job, "", settings, f"cannot read {path}: {exc.strerror or exc}")
        try:
            info = sf.info(path)
        except Exception:  # noqa: BLE001 - the task reports the reader's own sentence
            info = None
        seconds = audio_seconds(path)
        work = FileWork(path, seconds)
        whole = Task(path, sha, settings, job, seconds=seconds)
        n_blocks = 0
        if info is not None and info.samplerate == profile.sample_rate and info.format in SEEKABLE:
            n_blocks = n_frames(info.frames, loc.nfft, loc.hop) // loc.frames_per_block
        if n_blocks <= chunk_blocks:
            tasks = [whole]
        else:
            chunks = math.ceil(n_blocks / chunk_blocks)
            block_s = loc.block_advance / profile.sample_rate
            tasks = []
            for k in range(chunks):
                first, stop = k * chunk_blocks, min((k + 1) * chunk_blocks, n_blocks)
                tasks.append(replace(whole, chunk=k, chunks=chunks, warm=max(0, first - overlap), first=first,
                                     stop=stop, seconds=(stop - first) * block_s))
        work.tasks = tasks
        todo = []
        for task in tasks:
            if (path, sha, settings, task.chunk) in self.done:
                work.written.add(task.chunk)
            else:
                # After a chunk done in an earlier run, whose end state is not kept, start from the
                # file's start: exact by construction.
                if task.chunk - 1 in work.written:
                    task = replace(task, warm=0)
                todo.append(task)
        work.left = len(todo)
        work.todo = todo
        return work

    def _failed(self, path, job, sha, settings, message) -> FileWork:
        return FileWork(path, 0.0, error=Task(path, sha, settings, job), message=message, left=1)


# --- executors -------------------------------------------------------------------------------------

class LocalPool:
    """A process pool on this machine; a task whose worker dies is tried again in a new pool."""

    def __init__(self, jobs: int):
        import multiprocessing as mp

        self.jobs = jobs
        self._ctx = mp.get_context("spawn")   # the driver has threads (progress bar): no fork
        self._pool = self._new()
        self._futures: dict = {}
        self.restarts = 0

    def _new(self):
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.jobs, mp_context=self._ctx, initializer=warm_worker)

    @property
    def capacity(self) -> int:
        return self.jobs

    def submit(self, task: Task) -> None:
        self._futures[self._pool.submit(run_task, task)] = task

    def in_flight(self) -> int:
        return len(self._futures)

    def pids(self) -> list[int]:
        """The worker processes' ids (for the benchmark's CPU accounting)."""
        return list(getattr(self._pool, "_processes", None) or {})

    def wait(self, timeout: float):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        broken = []
        for fut in done:
            task = self._futures.pop(fut)
            try:
                yield task, fut.result()
            except BrokenProcessPool:
                broken.append(task)
        if broken:   # a worker died: every task of the pool is lost with it
            broken += list(self._futures.values())
            self._futures.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            self.restarts += 1
            for task in broken:
                if task.attempt >= ATTEMPTS:
                    yield task, failure(task, f"the worker process died ({task.attempt} attempts)")
                else:
                    self.submit(replace(task, attempt=task.attempt + 1))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def failure(task: Task, message: str) -> dict:
    """The result of a task that could not run: its error row."""
    from doascope.app.batch.table import empty_columns

    cols = empty_columns()
    for k in cols:
        cols[k].append(None)
    cols.update(file=[task.file], chunk=[task.chunk], method=[task.job.method], profile=[task.job.profile],
                version=[__version__], sha256=[task.sha256 or None], settings=[task.settings or None],
                error=[message])
    return {"rows": cols, "entry": None, "exit": None, "error": message}


# --- the run ---------------------------------------------------------------------------------------

@dataclass
class Summary:
    files: int = 0
    skipped: int = 0
    failed: int = 0
    chunks: int = 0
    reruns: int = 0
    rows: int = 0
    audio_seconds: float = 0.0
    wall: float = 0.0
    workers: int = 0
    errors: list = field(default_factory=list)

    @property
    def audio_hours_per_hour(self) -> float:
        return self.audio_seconds / self.wall if self.wall > 0 else 0.0


def run_batch(items: list[tuple[str, Job]], out, *, executor, resume: bool = False,
              chunk_seconds: float = 600.0, progress=None) -> Summary:
    """Analyse ``items`` with ``executor`` (LocalPool or RayPool; the caller closes it) into the
    table ``out`` (a path, or a ResultTable opened with the same ``resume``)."""
    from doascope.app.batch.table import ResultTable

    table = out if isinstance(out, ResultTable) else ResultTable(out, resume=resume)
    planner = Planner(chunk_seconds, table.done() if resume else set())
    summary = Summary(workers=executor.capacity)
    t0 = time.perf_counter()
    queue: list[Task] = []
    files: dict[tuple, FileWork] = {}
    plan_iter = iter(items)
    if progress:
        progress.add(seconds=sum(audio_seconds(path) for path, _ in items))

    def write(work: FileWork, task: Task, result: dict) -> None:
        summary.rows += table.append(result["rows"])
        if result["error"] is not None:
            work.failed = True
            summary.errors.append(f"{work.path} (chunk {task.chunk}): {result['error']}")
        work.written.add(task.chunk)
        work.left -= 1
        summary.chunks += 1
        summary.audio_seconds += task.seconds if result["error"] is None else 0.0
        if progress:
            progress.advance(seconds=task.seconds, file_done=work.left == 0)
        if work.left == 0:
            summary.failed += work.failed

    def settle(work: FileWork, task: Task, result: dict) -> None:
        """Write a chunk once its start is known to be exact; run it again when it is not."""
        k = task.chunk
        if result["error"] is None and k > 0 and not task.exact:
            if k - 1 not in work.exits:
                if k - 1 not in work.written:    # its predecessor is not done yet
                    work.pending[k] = (task, result)
                    return
                result = failure(task, f"chunk {k - 1} failed, so this chunk's start could not be checked")
            elif state_digest(work.exits[k - 1]) != result["entry"]:
                summary.reruns += 1
                queue.append(replace(task, warm=task.first, state=work.exits[k - 1], attempt=1))
                return
        if result["error"] is None and result["exit"] is not None:
            work.exits[k] = result["exit"]
        write(work, task, result)
        if k + 1 in work.pending:
            settle(work, *work.pending.pop(k + 1))

    def refill() -> bool:
        """Plan files until there is enough queued work; False when every input is planned."""
        while len(queue) < 2 * executor.capacity:
            item = next(plan_iter, None)
            if item is None:
                return False
            work = planner.plan(*item)
            summary.files += 1
            files[item] = work
            if progress:   # the bar counts what this run analyses
                progress.add(seconds=sum(t.seconds for t in work.todo) - audio_seconds(item[0]))
            if work.error is not None:
                write(work, work.error, failure(work.error, work.message))
            elif not work.todo:
                summary.skipped += 1
                if progress:
                    progress.skip()
            queue.extend(work.todo)
        return True

    try:
        more = refill()
        while queue or executor.in_flight() or more:
            while queue and executor.in_flight() < 2 * executor.capacity:
                executor.submit(queue.pop(0))
            for task, result in executor.wait(timeout=0.25):
                settle(files[task.file, task.job], task, result)
            more = refill() if more else False
    finally:
        summary.wall = time.perf_counter() - t0
        summary.rows = table.compact()
    return summary
