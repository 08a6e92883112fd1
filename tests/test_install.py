"""First contact: optional parts (pip extras) end in one line naming the extra, the help and
`import doascope` stay light, and the method names have one owner."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import plane_wave_file

from doascope.app.cli.main import main
from doascope.extras import EXTRAS, MissingExtra, optional_import, require

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def hide(monkeypatch, *modules):
    """Make `import m` fail (and find_spec(m) return None) for each module, as if not installed."""
    for m in modules:
        for name in [n for n in sys.modules if n == m or n.startswith(m + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, m, None)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_every_extra_is_in_pyproject_and_all_holds_them():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    everything = extras["all"][0]
    for extra in EXTRAS:
        assert extra in everything


def test_core_dependencies_hold_no_optional_package():
    deps = " ".join(tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]).lower()
    for modules in EXTRAS.values():
        for m in modules:
            assert m.lower() not in deps


def test_missing_extra_message(monkeypatch):
    hide(monkeypatch, "pyqtgraph")
    with pytest.raises(MissingExtra, match=r"^this needs doascope\[gui\]: pip install 'doascope\[gui\]'$"):
        require("gui")
    with pytest.raises(MissingExtra, match=r"doascope\[gui\]"):
        optional_import("pyqtgraph")


@pytest.mark.parametrize("argv, extra, hidden", [
    (["gui"], "gui", "PySide6"),
    (["serve", "--profile", "respeaker_usb_v2", "--file", "{wav}"], "net", "websockets"),
    (["run", "--profile", "respeaker_usb_v2", "--sim", "two-talkers"], "sim", "pyroomacoustics"),
    (["locate", "{wav}", "--profile", "respeaker_usb_v2", "--plot", "{png}"], "plot", "matplotlib"),
    (["demo", "--no-gui"], "sim", "pyroomacoustics"),
    (["train", "--profile", "respeaker_usb_v2"], "dnn", "torch"),
    (["bench", "--quick"], "sim", "pyroomacoustics"),
])
def test_a_missing_extra_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, argv, extra, hidden):
    wav = plane_wave_file(str(tmp_path / "pw.wav"), "respeaker_usb_v2", azimuth=40.0, seconds=1.0)
    png = tmp_path / "az.png"
    hide(monkeypatch, hidden)
    assert main([a.format(wav=wav, png=png) for a in argv]) == 2
    line = one_line(capsys.readouterr().err)
    # dnn adds where the CPU-only torch comes from, on the same line
    assert line.startswith(f"doascope: error: this needs doascope[{extra}]: pip install 'doascope[{extra}]'")
    assert not png.exists()


def test_help_and_import_load_no_numeric_stack():
    code = ("import sys, doascope; from doascope.app.cli.main import build_parser; build_parser(); "
            "print(','.join(m for m in ('numpy', 'numba', 'scipy', 'torch', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == ""


def test_method_names_have_one_owner():
    from doascope.dsp.estimators import ESTIMATORS, available_methods, estimator_class
    from doascope.methods import METHODS

    assert available_methods() == sorted(METHODS)
    for name in sorted(set(METHODS) - {"dnn"}):
        assert estimator_class(name).name == name
    pytest.importorskip("torch")
    assert estimator_class("dnn").name == "dnn"
    assert set(ESTIMATORS) == set(METHODS)


def test_setuptools_build_has_no_warnings(tmp_path):
    """The data folders are declared packages: building prints no 'Package would be ignored' walls."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                          str(tmp_path), str(PYPROJECT.parent)], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {out.stderr.strip()[-200:]}")
    assert "would be ignored" not in out.stdout + out.stderr
    import zipfile

    names = zipfile.ZipFile(next(tmp_path.glob("doascope-*.whl"))).namelist()
    assert "doascope/app/net/schemas/stream.schema.json" in names
    assert "doascope/models/weights/respeaker_usb_v2.pt" in names
    assert not any(n.startswith(("app/", "models/", "tests/")) for n in names)


# --- one-line warnings for settings that run but answer badly ------------------------------------

def test_sphere_grid_on_a_planar_array_warns_once(capsys, tmp_path):
    wav = plane_wave_file(str(tmp_path / "pw.wav"), "respeaker_usb_v2", azimuth=40.0, seconds=1.0)
    assert main(["locate", wav, "--profile", "respeaker_usb_v2", "--grid", "sphere"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "planar" in warned[0] and "--grid auto" in warned[0]
    assert main(["locate", wav, "--profile", "respeaker_usb_v2"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_doa_mode_on_a_room_profile_suggests_position_mode():
    import warnings

    from doascope import DoascopeWarning
    from doascope.config import AnalysisConfig
    from doascope.dsp.analysis import build_localizer
    from doascope.hardware_profiles import load_profile

    prof = load_profile("room_walls_6mic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_localizer(AnalysisConfig(), prof, prof.sample_rate)
    assert [w.category for w in caught] == [DoascopeWarning]
    assert "--mode position" in str(caught[0].message)


def test_devices_without_any_input_says_so_in_one_line(monkeypatch, capsys):
    import types

    import doascope.app.runtime.sources as sources

    fake = types.SimpleNamespace(query_devices=lambda: [{"name": "HDMI", "max_input_channels": 0,
                                                         "default_samplerate": 48000.0}],
                                 default=types.SimpleNamespace(device=(-1, -1)))
    monkeypatch.setattr(sources, "import_sounddevice", lambda: fake)
    assert main(["devices"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no audio input device found" in one_line(err)


def test_a_named_device_on_a_machine_without_inputs_is_named_in_the_error(monkeypatch):
    import types

    import doascope.app.runtime.sources as sources

    fake = types.SimpleNamespace(query_devices=lambda: [], default=types.SimpleNamespace(device=(-1, -1)))
    monkeypatch.setattr(sources, "import_sounddevice", lambda: fake)
    with pytest.raises(sources.AudioInputError) as err:
        sources.resolve_device("ReSpeaker")
    assert "'ReSpeaker'" in str(err.value) and "no audio input device found" in str(err.value)


def test_reported_power_never_exceeds_one():
    import numpy as np

    from doascope.dsp import circle_grid, find_peaks

    grid = circle_grid(1.0)
    s = np.zeros(len(grid), np.float32)
    s[100], s[99], s[101] = 1.0, 0.6, 0.99     # the parabola through these tops out above 1
    (peak,) = find_peaks(s, grid, 1)
    assert 100.0 < peak.azimuth < 101.0 and peak.power == 1.0


def test_replay_needs_no_portaudio_and_live_capture_says_what_to_install(monkeypatch, capsys, tmp_path):
    """sounddevice loads only when a device is asked for; without PortAudio that is one line naming
    Debian's libportaudio2."""
    import importlib.abc

    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    monkeypatch.setattr("signal.signal", lambda *a, **k: None)   # `run` must not take over pytest's Ctrl-C
    wav = plane_wave_file(str(tmp_path / "pw.wav"), "respeaker_usb_v2", azimuth=40.0, seconds=1.0)
    assert main(["locate", wav, "--profile", "respeaker_usb_v2"]) == 0
    assert main(["run", "--profile", "respeaker_usb_v2", "--file", wav, "--fast", "--duration", "0.5"]) == 0
    capsys.readouterr()
    assert main(["run", "--profile", "respeaker_usb_v2", "--device", "ReSpeaker"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "needs PortAudio" in line and "libportaudio2" in line
    assert "sounddevice" not in sys.modules


def test_bench_progress_lines_say_what_is_left(capsys, monkeypatch):
    from doascope.app.bench import common as bench

    clock = iter([0.0, 30.0, 60.0, 80.0])
    monkeypatch.setattr(bench.time, "monotonic", lambda: next(clock))
    pace = bench.Pace("accuracy", 3, every=10.0)
    for _ in range(3):
        pace.step()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["bench: accuracy: 3 steps...", "bench: accuracy: 1/3 in 30 s, about 60 s left",
                     "bench: accuracy: 2/3 in 60 s, about 30 s left", "bench: accuracy: 3/3 in 80 s, done"]
