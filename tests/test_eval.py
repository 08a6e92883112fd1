"""`doascope eval`: LOCATA-style scores against hand-computed cases, truth parsing and alignment,
the command on a plane wave, and acoular-style HDF5 recordings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import plane_wave_file

from doascope import DoascopeError, ParameterError
from doascope.app.cli.main import main
from doascope.dsp import evaluation as ev

PROFILE = "respeaker_usb_v2"


def test_assignment_is_the_cheapest_pairing():
    cost = np.array([[1.0, 2.0, 9.0], [2.0, 9.0, 9.0]])
    rows, cols = ev.assign(cost)            # greedy would take (0,0) and then pay 9
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    rows, cols = ev.assign(cost.T)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    assert ev.assign(np.zeros((0, 3)))[0].size == 0


def test_azimuth_distances_wrap():
    np.testing.assert_allclose(ev.azimuth_distances([359.0, 90.0], [1.0, 271.0]), [[2.0, 88.0], [89.0, 179.0]])


def test_ospa_by_hand():
    c = 30.0
    assert ev.ospa(np.zeros((0, 0)), c) == 0.0
    assert ev.ospa(np.zeros((2, 0)), c) == c                        # all missed
    assert ev.ospa(np.zeros((0, 3)), c) == c                        # all false
    assert ev.ospa(np.array([[6.0]]), c) == 6.0
    # two truths, one estimate 4 deg from the first: (4 + 30) / 2
    assert ev.ospa(np.array([[4.0], [50.0]]), c) == 17.0
    # distances beyond the cut-off count as the cut-off: (30 + 10) / 2
    assert ev.ospa(np.array([[45.0, 80.0], [80.0, 10.0]]), c) == 20.0


def test_scores_by_hand():
    blocks = [
        np.array([[3.0], [40.0]]),            # 2 truths, 1 estimate 3 off: 1 detection, 1 miss
        np.array([[8.0, 25.0]]),              # 1 truth, 2 estimates: 8 off detects, the other is false
        np.zeros((0, 1)),                     # silence, 1 false estimate
        np.zeros((0, 0)),                     # silence, nothing reported
        np.array([[35.0]]),                   # 1 truth, estimate beyond the 30 deg gate: miss + false
    ]
    s = ev.score(blocks, gate=30.0)
    assert (s.blocks, s.truths, s.estimates, s.detections) == (5, 4, 5, 2)
    assert s.mae == pytest.approx(5.5)
    assert s.recall == pytest.approx(2 / 4) and s.precision == pytest.approx(2 / 5)
    assert s.accuracy == pytest.approx({5.0: 1 / 4, 10.0: 2 / 4, 20.0: 2 / 4})
    # OSPA per block: (3+30)/2, (8+30)/2, 30, 0, 30
    assert s.ospa == pytest.approx((16.5 + 19.0 + 30.0 + 0.0 + 30.0) / 5)


def test_scores_refuse_nonsense():
    with pytest.raises(ParameterError):
        ev.score([np.zeros(3)])
    with pytest.raises(ParameterError):
        ev.score([np.zeros((1, 1))], gate=0)


def test_read_truth_kinds_and_silence(tmp_path):
    from doascope.app.cli.eval import read_truth

    p = tmp_path / "t.csv"
    p.write_text("time,source,azimuth,elevation\n0.5,a,10,5\n0.5,b,200,0\n1.0,a,12,5\n1.5,,,\n")
    kind, times, coords = read_truth(str(p))
    assert kind == "direction" and times.tolist() == [0.5, 1.0, 1.5]
    assert coords[0].tolist() == [[10, 5], [200, 0]] and coords[2].shape == (0, 2)
    p.write_text("t,x,y,z\n0,1,0,0\n")
    assert read_truth(str(p))[0] == "position"
    p.write_text("time,azimuth\n0,abc\n")
    with pytest.raises(ParameterError, match="line 2"):
        read_truth(str(p))
    p.write_text("when,azimuth\n0,1\n")
    with pytest.raises(ParameterError, match="time"):
        read_truth(str(p))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    wav = plane_wave_file(str(d / "pw.wav"), PROFILE, azimuth=120.0, seconds=2.0)
    truth = d / "truth.csv"
    truth.write_text("time,azimuth\n" + "".join(f"{t / 10:.1f},120\n" for t in range(21)))
    wrong = d / "wrong.csv"
    wrong.write_text("time,x,y,z\n" + "".join(f"{t / 10:.1f},1,0,0\n" for t in range(21)))   # azimuth 0
    return wav, truth, wrong


def test_eval_command_on_a_plane_wave(capsys, scene):
    wav, truth, wrong = scene
    assert main(["eval", wav, "--truth", str(truth), "--profile", PROFILE, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["recall"] == 1.0 and s["precision"] == 1.0 and s["mae"] < 2 and s["ospa"] < 2
    assert s["accuracy"]["5.0"] == 1.0 and s["compared"] == "azimuth"
    assert main(["eval", wav, "--truth", str(wrong), "--profile", PROFILE, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["recall"] == 0.0 and s["ospa"] == pytest.approx(30.0)


def test_eval_reads_locate_output_and_plots(capsys, scene, tmp_path):
    pytest.importorskip("matplotlib")
    wav, truth, _ = scene
    out = tmp_path / "est.jsonl"
    assert main(["locate", wav, "--profile", PROFILE, "-o", str(out)]) == 0
    png = tmp_path / "eval.png"
    assert main(["eval", str(out), "--truth", str(truth), "--profile", PROFILE, "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "OSPA" in text and "100.0 %" in text
    assert png.stat().st_size > 1000


def test_eval_bad_truth_is_one_line(capsys, scene, tmp_path):
    wav, _, _ = scene
    bad = tmp_path / "bad.csv"
    bad.write_text("time\n0\n")
    assert main(["eval", wav, "--truth", str(bad), "--profile", PROFILE]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_locate_reads_acoular_hdf5(capsys, tmp_path, scene):
    h5py = pytest.importorskip("h5py")
    import soundfile as sf

    wav, _, _ = scene
    audio, fs = sf.read(wav, dtype="float32", always_2d=True)
    h5 = tmp_path / "rec.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("time_data", data=audio)
        f["time_data"].attrs["sample_freq"] = float(fs)
    assert main(["locate", str(h5), "--profile", PROFILE]) == 0
    from_h5 = capsys.readouterr().out
    assert main(["locate", wav, "--profile", PROFILE]) == 0
    assert from_h5 == capsys.readouterr().out
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("other", data=audio)
    assert main(["locate", str(tmp_path / "bad.h5"), "--profile", PROFILE]) == 2
    assert "time_data" in capsys.readouterr().err


def test_hdf5_without_h5py_names_the_extra(monkeypatch, tmp_path):
    h5py = pytest.importorskip("h5py")
    from doascope.app.runtime.audio import read_hdf5_time_data

    with h5py.File(tmp_path / "r.h5", "w") as f:
        f.create_dataset("time_data", data=np.zeros((10, 2), np.float32))
        f["time_data"].attrs["sample_freq"] = 16000.0
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(DoascopeError, match=r"doascope\[hdf5\]"):
        read_hdf5_time_data(str(tmp_path / "r.h5"))


def test_eval_position_mode_in_metres(capsys, tmp_path):
    pytest.importorskip("pyroomacoustics")
    import soundfile as sf

    from doascope.sim.scenes import simulate_room
    from doascope.hardware_profiles import load_profile

    p = load_profile("room_walls_6mic")
    rec = simulate_room(p.positions, p.sample_rate, np.array([[2.0, 3.0, 1.5]]),
                        room_dim=tuple(p.room[:, 1] - p.room[:, 0]), duration=2.0, rt60=0.3, snr_db=20, seed=1)
    wav = tmp_path / "room.wav"
    sf.write(wav, rec.audio, p.sample_rate)
    truth = tmp_path / "truth.csv"
    truth.write_text("time,x,y,z\n" + "".join(f"{t / 10:.1f},2.0,3.0,1.5\n" for t in range(21)))
    assert main(["eval", str(wav), "--truth", str(truth), "--profile", "room_walls_6mic", "--mode", "position",
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["unit"] == "m" and s["gate"] == 1.0 and set(s["accuracy"]) == {"0.25", "0.5", "1.0"}
    assert s["mae"] < 0.3 and s["recall"] > 0.7
    # directions against a position truth in position mode is a user error: one line, exit 2
    az = tmp_path / "az.csv"
    az.write_text("time,azimuth\n0,10\n")
    assert main(["eval", str(wav), "--truth", str(az), "--profile", "room_walls_6mic", "--mode", "position"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
