"""``doascope batch --ray``: the same tasks as the local pool, as Ray tasks on an existing cluster;
and a throw-away cluster on this machine for the tests and the benchmark.

Ray is imported only here, only when asked for. A worker process that dies takes its task with it;
Ray runs the task again elsewhere (``max_retries``), and the driver writes a task's rows only when
its one result arrives, so no file is lost or written twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from doascope import DoascopeError
from doascope.app.batch.corpus import ATTEMPTS, Task, failure, run_task
from doascope.extras import MissingExtra, optional_import


def import_ray():
    return optional_import("ray")


def _task(task: Task) -> dict:
    return run_task(task)


class RayPool:
    """Runs tasks on the Ray cluster at ``address`` ('auto': the one this machine belongs to)."""

    def __init__(self, address: str):
        ray = self.ray = import_ray()
        _check_reachable(address)
        try:
            # One BLAS thread per worker, as on the local pool (cli.py): blocks are small.
            threads = {v: os.environ.get(v, "1") for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"env_vars": threads})
        except Exception as exc:  # noqa: BLE001 - Ray raises several kinds; the user needs one line
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DoascopeError(f"cannot connect to the Ray cluster at {address}: {msg}") from None
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(num_cpus=1, max_retries=ATTEMPTS - 1, retry_exceptions=False)(_task)
        self._refs: dict = {}

    def submit(self, task: Task) -> None:
        self._refs[self._remote.remote(task)] = task

    def in_flight(self) -> int:
        return len(self._refs)

    def wait(self, timeout: float):
        if not self._refs:
            return
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                yield task, self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the worker died ATTEMPTS times, or the node went away
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                yield task, failure(task, f"the Ray task failed: {type(exc).__name__}: {first}")

    def close(self) -> None:
        self.ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail in one line, at once, when nothing answers at HOST:PORT (ray.init would retry for minutes)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except ValueError:
        raise DoascopeError(f"--ray takes HOST:PORT (the head's `ray start --port`) or auto, got {address!r}") from None
    except OSError as exc:
        raise DoascopeError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


# `ray start`'s default worker ports (--min-worker-port / --max-worker-port): Ray's workers bind there.
RAY_WORKER_PORTS = (10002, 19999)


def ephemeral_low() -> int:
    """The first port of the system's ephemeral range (where a bind to port 0 and every outgoing
    connection take theirs), 32768 where the system does not say."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def named_port(taken: set[int] | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a program that must be told its port by
    number and binds it later (a Ray node, a broker restarted on the same port). Taken between Ray's
    worker ports and the system's ephemeral range: a port the system hands out by itself (a bind to port
    0, every outgoing connection, of which a starting Ray cluster makes many) could be taken again before
    that program binds it, one from here only by someone naming it too. ``taken``: ports already chosen,
    not to be chosen twice (and added to). A server of our own listens on port 0 instead and says which
    port it got (``doascope serve --port 0``)."""
    import random

    low = ephemeral_low()
    start = RAY_WORKER_PORTS[1] + 1 if low > RAY_WORKER_PORTS[1] + 1000 else 1024
    taken = set() if taken is None else taken
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(start, max(start + 1, low))
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise DoascopeError("no free port below the ephemeral port range")


class LocalCluster:
    """A Ray cluster of ``nodes`` nodes on 127.0.0.1 (``ray start --head`` and ``ray start --address``),
    each with ``cpus`` CPUs and a temporary folder of its own; stopped (its nodes' processes, by
    session, never ``ray stop``, which would stop every Ray on the machine) when the context ends.

    ``env``: extra environment for the cluster's processes (its workers inherit it).
    """

    def __init__(self, nodes: int = 2, cpus: int = 1, *, env: dict | None = None, timeout: float = 180.0):
        self.nodes, self.cpus, self.timeout = nodes, cpus, timeout
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **(env or {}))
        self._groups: list[int] = []   # one session per node
        self._dirs: list[str] = []
        self._ports: set[int] = set()   # chosen for the nodes so far
        self.address = ""

    def _start(self, role: list[str]) -> None:
        ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
        if ray is None:
            raise MissingExtra("batch")
        tmp = tempfile.mkdtemp(prefix="doascope-ray-")
        self._dirs.append(tmp)
        ports = []
        for opt in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                    "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"):
            ports += [opt, str(named_port(self._ports))]
        cmd = [ray, "start", *role, "--num-cpus", str(self.cpus), "--node-ip-address", "127.0.0.1",
               "--object-store-memory", str(100 * 2**20), "--temp-dir", tmp, "--disable-usage-stats", *ports]
        log = open(Path(tmp, "ray-start.log"), "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self._groups.append(proc.pid)   # the node's processes stay in this session
        try:
            rc = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            text = Path(tmp, "ray-start.log").read_text(errors="replace")[-2000:]
            raise DoascopeError(f"`ray start {' '.join(role)}` failed ({rc}): {text}")

    def __enter__(self) -> "LocalCluster":
        try:
            port = named_port(self._ports)
            self._start(["--head", "--port", str(port), "--include-dashboard=false"])
            self.address = f"127.0.0.1:{port}"
            for _ in range(self.nodes - 1):
                self._start(["--address", self.address])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def sessions(self) -> list[int]:
        """The session of each node (the head's first): every process the node started is in it."""
        return list(self._groups)

    def stop(self) -> None:
        """End every process of the cluster's nodes: each node runs in a session of its own (Ray
        gives its workers process groups of their own, but they stay in the session)."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            alive = session_pids(self._groups)
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while alive and time.monotonic() < deadline:
                time.sleep(0.1)
                alive = session_pids(self._groups)
            if not alive:
                break
        self._groups.clear()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._dirs.clear()


def session_pids(sessions) -> list[int]:
    """The live (not zombie) processes whose session is one of ``sessions``."""
    wanted, found = set(sessions), []
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) in wanted and fields[0] != "Z":
                found.append(int(entry.name))
    return found
