"""``doascope batch``: the same rows as ``locate`` from the local process pool and from a real Ray
cluster (a head and a second node started here on 127.0.0.1), chunked files equal to one pass, a
corrupt file, a worker killed mid-run, ``--resume``, and the one-line message of a missing extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import mixture, plane_wave_file

from doascope.app.cli.main import main
from doascope.hardware_profiles import load_profile

pq = pytest.importorskip("pyarrow.parquet", reason="needs doascope[batch]")

PROFILE = "respeaker_usb_v2"
DEADLINE = 240.0    # seconds any one wait may take on a busy two-core machine
ANGLES = {"a.wav": 40.0, "sub/b.wav": 200.0, "sub/deep/c.flac": 300.0}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three short plane-wave recordings (one a FLAC in a nested folder) and a corrupt WAV."""
    root = tmp_path_factory.mktemp("corpus")
    for name, az in ANGLES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        plane_wave_file(str(root / name), PROFILE, azimuth=az, seconds=2.0)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 64)
    (root / "notes.txt").write_text("not audio: a folder's other files are left alone")
    return root


def locate_rows(capsys, path, *options) -> list[tuple]:
    """``locate --format csv``'s rows: (t, rank, azimuth, elevation, power) or (t, rank, x, y, z, power)."""
    assert main(["locate", str(path), "--profile", PROFILE, "--format", "csv", *options]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    rows = []
    for line in lines:
        t, rank, *vals = line.split(",")
        rows.append((float(t), None if rank == "" else int(rank), *(None if v == "" else float(v) for v in vals)))
    return rows


def table_rows(out, *, position=False) -> dict[str, list[tuple]]:
    """The table's rows per file, in the order of ``locate``'s (errors under 'error:<file>')."""
    t = pq.read_table(out).to_pylist()
    cols = ("x", "y", "z", "power") if position else ("azimuth", "elevation", "power")
    by_file: dict[str, list] = {}
    for r in sorted(t, key=lambda r: (r["file"], r["chunk"], r["t"] or 0, -1 if r["rank"] is None else r["rank"])):
        if r["error"] is not None:
            by_file.setdefault("error:" + Path(r["file"]).name, []).append(r["error"])
        else:
            by_file.setdefault(r["file"], []).append((r["t"], r["rank"], *(r[c] for c in cols)))
    return by_file


def n_rows(out) -> int:
    return pq.read_metadata(out).num_rows


def batch_cli(*args, env=None, check_rc=None) -> subprocess.CompletedProcess:
    """``doascope batch`` in its own process (a Ray driver must not live in the pytest process)."""
    res = subprocess.run([sys.executable, "-m", "doascope.app.cli.main", "batch", *map(str, args), "--no-progress"],
                         capture_output=True, text=True, timeout=DEADLINE, env=dict(os.environ, **(env or {})))
    if check_rc is not None:
        assert res.returncode == check_rc, res.stderr
    return res


@pytest.fixture(scope="module")
def local_table(corpus, tmp_path_factory) -> Path:
    """The corpus through the local process pool (two workers)."""
    out = tmp_path_factory.mktemp("local") / "results.parquet"
    assert main(["batch", str(corpus), "--profile", PROFILE, "--out", str(out), "--jobs", "2", "--no-progress"]) == 1
    return out


# --- the local pool --------------------------------------------------------------------------------

def test_local_pool_rows_equal_locate_and_corrupt_file_is_an_error_row(capsys, corpus, local_table):
    rows = table_rows(local_table)
    assert set(rows) == {str((corpus / n).resolve()) for n in ANGLES} | {"error:broken.wav"}
    assert "cannot read" in rows["error:broken.wav"][0] and len(rows["error:broken.wav"]) == 1
    for name, az in ANGLES.items():
        expected = locate_rows(capsys, corpus / name)
        assert rows[str((corpus / name).resolve())] == expected
        assert all(abs((r[2] - az + 180) % 360 - 180) < 3 for r in expected if r[1] == 0)
    meta = pq.read_table(local_table).slice(0, 1).to_pylist()[0]
    assert meta["method"] == "srp-phat" and meta["profile"] == PROFILE and meta["version"]
    assert len(meta["sha256"]) == 64 and meta["settings"]


def test_resume_adds_no_rows_and_redoes_only_errors(capsys, corpus, local_table, tmp_path):
    out = tmp_path / "copy.parquet"
    out.write_bytes(local_table.read_bytes())
    before = table_rows(out)
    assert main(["batch", str(corpus), "-p", PROFILE, "--out", str(out), "--resume", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "3 already in the table" in err and "1 failed" in err
    assert table_rows(out) == before and n_rows(out) == n_rows(local_table)
    # Without --resume an existing table is left alone, in one line.
    assert main(["batch", str(corpus), "-p", PROFILE, "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_crashed_run_keeps_finished_work_and_resume_completes_it(capsys, corpus, local_table, tmp_path):
    """A run that dies after one file leaves that file's part; --resume merges it and does the rest."""
    from doascope.app.batch import corpus as batch
    from doascope.app.batch.table import ResultTable

    out = tmp_path / "crashed.parquet"
    job = batch.Job(PROFILE, tuple(sorted(_default_options().items())))
    planner = batch.Planner(600.0, set())
    work = planner.plan(str((corpus / "a.wav").resolve()), job)
    ResultTable(out, resume=False).append(batch.run_task(work.todo[0])["rows"])   # ... and then the crash
    assert not out.exists() and any(out.with_name(out.name + ".parts").iterdir())
    assert main(["batch", str(corpus), "-p", PROFILE, "--out", str(out), "--resume", "--no-progress"]) == 1
    assert "1 already in the table" in capsys.readouterr().err
    assert table_rows(out) == table_rows(local_table) and n_rows(out) == n_rows(local_table)
    assert not out.with_name(out.name + ".parts").exists()


def test_local_worker_killed_mid_task_loses_and_duplicates_nothing(corpus, local_table, tmp_path, monkeypatch):
    import threading

    from doascope.app.batch import corpus as batch

    hold = tmp_path / "hold"
    hold.mkdir()
    monkeypatch.setenv(batch.HOLD_ENV, str(hold))     # the pool's processes inherit it
    job = batch.Job(PROFILE, tuple(sorted(_default_options().items())))
    items = batch.collect_inputs([str(corpus)], job, None)
    pool = batch.LocalPool(2)
    box = {}
    runner = threading.Thread(target=lambda: box.update(s=batch.run_batch(items, str(tmp_path / "k.parquet"),
                                                                          executor=pool)))
    runner.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while not any(hold.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        victim = int(sorted(hold.iterdir())[0].name.split("-")[0])
        os.kill(victim, signal.SIGKILL)
    finally:
        (hold / "release").touch()
        runner.join(DEADLINE)
        pool.close()
    assert not runner.is_alive() and pool.restarts >= 1
    assert box["s"].failed == 1      # the corrupt file only
    assert table_rows(tmp_path / "k.parquet") == table_rows(local_table)
    assert n_rows(tmp_path / "k.parquet") == n_rows(local_table)


def _default_options() -> dict:
    from doascope.app.cli.batch import job_options
    from doascope.app.cli.main import build_parser

    args = build_parser().parse_args(["batch", "x", "-p", PROFILE, "--out", "x"])
    return job_options(args)


def test_manifest_gives_profile_and_method_per_file(capsys, corpus, tmp_path):
    (tmp_path / "m.csv").write_text(f"file,profile,method\n{corpus / 'a.wav'},{PROFILE},music\n"
                                    f"{os.path.relpath(corpus / 'sub/b.wav', tmp_path)},{PROFILE},\n")
    out = tmp_path / "m.parquet"
    assert main(["batch", str(tmp_path / "m.csv"), "--out", str(out), "-j", "1", "--no-progress"]) == 0
    t = pq.read_table(out).to_pylist()
    assert {(Path(r["file"]).name, r["method"]) for r in t} == {("a.wav", "music"), ("b.wav", "srp-phat")}
    rows = table_rows(out)
    assert rows[str((corpus / "a.wav").resolve())] == locate_rows(capsys, corpus / "a.wav", "-m", "music")


def test_position_mode_rows_equal_locate(capsys, tmp_path):
    room = "room_walls_6mic"
    plane_wave_file(str(tmp_path / "room.wav"), room, azimuth=30.0, seconds=1.5)
    out = tmp_path / "pos.parquet"
    assert main(["batch", str(tmp_path / "room.wav"), "-p", room, "--mode", "position", "--out", str(out),
                 "-j", "1", "--no-progress"]) == 0
    rows = table_rows(out, position=True)[str((tmp_path / "room.wav").resolve())]
    assert main(["locate", str(tmp_path / "room.wav"), "-p", room, "--mode", "position", "--format", "csv"]) == 0
    expected = [(float(t), None if k == "" else int(k), *(None if v == "" else float(v) for v in vals))
                for t, k, *vals in (line.split(",") for line in capsys.readouterr().out.strip().splitlines()[1:])]
    assert rows == expected and any(r[1] == 0 for r in rows)
    assert {r["method"] for r in pq.read_table(out).to_pylist()} == {"position:coarse-to-fine"}


def test_stream_state_restores_exactly():
    """BlockStream.state/restore: a recording cut at a block and continued from the state there gives
    the one-pass blocks exactly (what a chunk re-run from its predecessor's state relies on)."""
    from doascope.app.batch import corpus as batch
    from doascope.app.runtime.offline import localizer_for

    prof = load_profile(PROFILE)
    audio = mixture(prof.positions, prof.sample_rate, [20.0, 160.0], seconds=4.0, seed=5, snr_db=10)
    config = batch.Job(PROFILE, tuple(sorted(_default_options().items()))).config()
    loc = localizer_for(config, prof)
    one = [(r.start, r.t, r.peaks, r.active) for r in loc.locate(audio, prof.sample_rate)]
    cut = 11 * loc.block_advance
    loc.reset()
    head = list(loc.locate(audio[:cut + loc.block_samples - loc.block_advance], prof.sample_rate))
    state = loc.state()
    other = localizer_for(config, prof)
    other.restore(state)
    tail = [(r.start, r.t, r.peaks, r.active) for r in other.locate(audio[cut:], prof.sample_rate, offset=cut)]
    assert len(head) == 11 and tail == one[11:]
    assert [(p.azimuth, p.power) for *_, peaks, _ in one for p in peaks]   # sources were reported


def _long_recording(path, seconds: float, *, silent=()) -> None:
    """A two-source recording for the profile, white noise far below it in the ``silent`` spans (s)."""
    prof = load_profile(PROFILE)
    fs = prof.sample_rate
    x = mixture(prof.positions, fs, [70.0, 250.0], seconds=seconds, seed=3, gains=[1.0, 0.6])
    for a, b in silent:
        x[int(a * fs):int(b * fs)] = 1e-4 * np.random.default_rng(1).standard_normal((int(b * fs) - int(a * fs), 4))
    dev = np.zeros((x.shape[0], prof.channels), np.float32)
    dev[:, list(prof.mic_channels)] = 0.3 * x / np.abs(x).max()
    sf.write(path, dev, fs, subtype="PCM_16")


def test_chunked_file_equals_one_pass(capsys, tmp_path):
    """Chunks of 256 blocks (33 s) with a warm-up: a busy recording checks out chunk by chunk; one with
    40 s of silence across a chunk start (so its warm-up never sees the talkers) is re-run from the
    previous chunk's state; both give exactly locate's rows."""
    from doascope.app.batch import corpus as batch
    from doascope.app.cli.batch import job_options
    from doascope.app.cli.main import build_parser

    busy, gap = tmp_path / "busy.wav", tmp_path / "gap.wav"
    _long_recording(busy, 110.0)
    _long_recording(gap, 80.0, silent=[(28.0, 68.0)])
    options = ["-k", "2", "--smoothing", "0.6"]
    out = tmp_path / "chunked.parquet"
    # run_batch itself, for its summary, on the Job the command builds from these options.
    args = build_parser().parse_args(["batch", str(busy), str(gap), "-p", PROFILE, "--out", str(out), *options])
    job = batch.Job(PROFILE, tuple(sorted(job_options(args).items())))
    items = batch.collect_inputs([str(busy), str(gap)], job, None)
    pool = batch.LocalPool(2)
    try:
        summary = batch.run_batch(items, str(out), executor=pool, chunk_seconds=30.0)
    finally:
        pool.close()
    assert summary.failed == 0 and summary.chunks >= 7
    assert summary.reruns >= 1          # the gap recording's third chunk
    chunks = {(Path(r["file"]).name, r["chunk"]) for r in pq.read_table(out).to_pylist()}
    assert {c for f, c in chunks if f == "busy.wav"} == {0, 1, 2, 3}
    rows = table_rows(out)
    for f in (busy, gap):
        assert rows[str(f.resolve())] == locate_rows(capsys, f, *options)


def test_missing_extra_is_one_line(corpus, tmp_path):
    for blocked, extra in (("pyarrow", []), ("ray", ["--ray", "auto"])):
        code = (f"import sys; sys.modules[{blocked!r}] = None\n"
                "from doascope.app.cli.main import main\n"
                f"sys.exit(main(['batch', {str(corpus / 'a.wav')!r}, '-p', {PROFILE!r}, "
                f"'--out', {str(tmp_path / (blocked + '.parquet'))!r}, *{extra!r}]))")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE)
        assert res.returncode == 2
        assert res.stderr.strip() == "doascope: error: this needs doascope[batch]: pip install 'doascope[batch]'"


def test_ray_node_ports_come_from_outside_the_ranges_others_take_them_from():
    """The ports LocalCluster names to `ray start` (bound by Ray only later) are below the system's
    ephemeral range, which every outgoing connection and bind to port 0 draws from, and above Ray's
    worker ports; distinct within a cluster; and free when chosen. (It used to take them from a bind to
    port 0, where any other process could get them before Ray bound them.)"""
    import socket

    from doascope.app.batch.ray import RAY_WORKER_PORTS, ephemeral_low, named_port

    low = ephemeral_low()
    if low <= RAY_WORKER_PORTS[1] + 1000:
        pytest.skip(f"the ephemeral range starts at {low}: no room above Ray's worker ports")
    taken: set[int] = set()
    ports = [named_port(taken) for _ in range(40)]
    assert len(set(ports)) == len(ports) and taken == set(ports)
    assert all(RAY_WORKER_PORTS[1] < p < low for p in ports), ports
    for p in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))   # free (nothing here bound them since)


# --- a real Ray cluster ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second node, one CPU each, on 127.0.0.1; tasks hold in ``hold`` until 'release'."""
    pytest.importorskip("ray", reason="needs doascope[batch]")
    from doascope.app.batch.corpus import HOLD_ENV
    from doascope.app.batch.ray import LocalCluster

    hold = tmp_path_factory.mktemp("hold")
    (hold / "release").touch()
    with LocalCluster(nodes=2, cpus=1, env={HOLD_ENV: str(hold)}) as c:
        c.hold = hold
        yield c


def test_ray_rows_equal_local_pool_and_resume_adds_none(corpus, local_table, cluster, tmp_path):
    out = tmp_path / "ray.parquet"
    res = batch_cli(corpus, "-p", PROFILE, "--out", out, "--ray", cluster.address, check_rc=1)
    assert "on the Ray cluster" in res.stderr and "(2 CPUs)" in res.stderr
    assert table_rows(out) == table_rows(local_table)
    res = batch_cli(corpus, "-p", PROFILE, "--out", out, "--ray", cluster.address, "--resume", check_rc=1)
    assert "3 already in the table" in res.stderr
    assert n_rows(out) == n_rows(local_table)


def test_ray_worker_killed_mid_task_loses_and_duplicates_nothing(corpus, local_table, cluster, tmp_path):
    hold = cluster.hold
    (hold / "release").unlink()
    for f in hold.iterdir():
        f.unlink()
    out = tmp_path / "killed.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "doascope.app.cli.main", "batch", str(corpus), "-p", PROFILE,
                             "--out", str(out), "--ray", cluster.address, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + DEADLINE
        while not any(hold.iterdir()) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        held = sorted(hold.iterdir())
        assert held, "no task started on the cluster"
        victim = int(held[0].name.split("-")[0])
        os.kill(victim, signal.SIGKILL)      # a Ray worker process, in the middle of its task
        # Ray runs the task again in another worker, which announces itself too.
        while len(list(hold.iterdir())) < len(held) + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        (hold / "release").touch()
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        (hold / "release").touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert table_rows(out) == table_rows(local_table)
    assert n_rows(out) == n_rows(local_table)
