"""The package's layers and start-up: every import of every module (at the top or inside a
function) follows app -> models -> sim -> dsp, with doascope's top-level modules and the hardware
profiles open to all; no two modules import each other, directly or around a loop; and the help,
every subcommand's help and argument errors load no numba, scipy or torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import doascope

# The installed package (tests run against it): doascope/__init__.py's folder holds every layer.
ROOT = Path(doascope.__file__).resolve().parent

# layer -> the layers it may import; "top" is doascope itself and its plain modules (config,
# methods, extras), "hardware_profiles" the profile loader.
ALLOWED = {
    "top": {"top"},
    "hardware_profiles": {"top", "hardware_profiles"},
    "dsp": {"top", "hardware_profiles", "dsp"},
    "sim": {"top", "hardware_profiles", "dsp", "sim"},
    "models": {"top", "hardware_profiles", "dsp", "sim", "models"},
    "app": {"top", "hardware_profiles", "dsp", "sim", "models", "app"},
}

# Inside app: each part and the parts of app it may import ("top" is app's own modules: config,
# logs, plots, api). The live runtime and the network know nothing of the commands, the GUI or the
# benchmarks; the commands (cli, batch, bench) sit on top.
APP_ALLOWED = {
    "top": {"top", "runtime"},
    "runtime": {"top", "runtime"},
    "net": {"top", "runtime", "net"},
    "gui": {"top", "runtime", "net", "gui"},
    "batch": {"top", "runtime", "batch"},
    "bench": {"top", "runtime", "net", "batch", "bench"},
    "cli": {"top", "runtime", "net", "gui", "batch", "bench", "cli"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith((".", "_build")) or p in ("tests", "build") for p in parts[:-1]):
            continue
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        out[".".join(("doascope",) + parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The doascope modules ``path`` imports (a name imported from a package counts as its module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "doascope"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "doascope":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in ALLOWED:
        return "top"
    return parts[1]


def _graph(*, top_level_only: bool) -> dict[str, set[str]]:
    return {m: _imports(p, top_level_only=top_level_only) - {m} for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_every_layer():
    layers = {_layer(m) for m in MODULES}
    assert layers == set(ALLOWED), layers
    assert {"doascope.config", "doascope.sim.scenes", "doascope.dsp.analysis", "doascope.app.config"} <= set(MODULES)


def test_imports_follow_the_layers():
    wrong = [f"{m} imports {i}" for m, deps in _graph(top_level_only=False).items() for i in sorted(deps)
             if _layer(i) not in ALLOWED[_layer(m)]]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_at_module_level():
    assert _cycles(_graph(top_level_only=True)) == []


def test_no_import_cycles_through_lazy_imports():
    assert _cycles(_graph(top_level_only=False)) == []


def _app_part(module: str) -> str:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[2] in APP_ALLOWED else "top"


def test_app_parts_follow_their_layers():
    """The folders of app say the layer: cli, batch and bench (commands) over gui and net over runtime."""
    parts = {_app_part(m) for m in MODULES if _layer(m) == "app"}
    assert parts == set(APP_ALLOWED), parts
    wrong = [f"{m} imports {i}" for m, deps in _graph(top_level_only=False).items() if _layer(m) == "app"
             for i in sorted(deps) if _layer(i) == "app" and _app_part(i) not in APP_ALLOWED[_app_part(m)]]
    assert not wrong, "\n".join(wrong)


HEAVY = ("numba", "scipy", "torch")


def _loaded_after(argvs: list[list[str]]) -> dict:
    """Run doascope's main on each argv in one fresh interpreter; the heavy modules then loaded, and
    each exit code."""
    code = f"""
import json, sys
from doascope.app.cli.main import main
codes = []
for argv in {argvs!r}:
    try:
        codes.append(main(argv))
    except SystemExit as exc:
        codes.append(exc.code)
print(json.dumps({{"codes": codes, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _subcommands() -> list[str]:
    import argparse

    from doascope.app.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_help_loads_no_kernels():
    commands = _subcommands()
    assert {"locate", "run", "serve", "gui", "bench", "batch", "train", "eval"} <= set(commands)
    res = _loaded_after([["--help"]] + [[c, "--help"] for c in commands])
    assert res["loaded"] == [] and set(res["codes"]) == {0}


@pytest.mark.parametrize("argv", [
    ["locate", "x.wav", "-p", "respeaker_usb_v2", "--band", "9"],          # argparse's type check
    ["locate", "x.wav", "-p", "respeaker_usb_v2", "--smoothing", "2"],     # the configuration's check
    ["locate", "x.wav", "-p", "respeaker_usb_v2", "--sources", "99"],
    ["run", "-p", "respeaker_usb_v2", "--track-timeout", "0"],
    ["run", "-p", "respeaker_usb_v2", "--sim", "two-talkers", "--speed", "-1"],
    ["gui", "--sources", "99"],
    ["locate", "x.wav"],                                                   # a missing option
    ["no-such-command"],
])
def test_argument_errors_load_no_kernels(argv):
    res = _loaded_after([argv])
    assert res["loaded"] == [] and res["codes"] == [2]


def _numba_kernels():
    """(module, function, decorator call) of every @njit/@jit in the package."""
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                for deco in node.decorator_list:
                    target = deco.func if isinstance(deco, ast.Call) else deco
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                    if name in ("njit", "jit"):
                        yield module, node.name, deco


def test_every_kernel_is_compiled_at_import_and_cached():
    """An explicit signature compiles (or loads from the on-disk cache) a kernel when its module is
    imported, i.e. when the localizer is built, so the first block never waits for compilation;
    cache=True keeps the compiled code across runs."""
    kernels = list(_numba_kernels())
    assert len(kernels) >= 8
    lazy = [f"{m}.{f}" for m, f, d in kernels
            if not (isinstance(d, ast.Call) and d.args and isinstance(d.args[0], (ast.Constant, ast.List)))]
    uncached = [f"{m}.{f}" for m, f, d in kernels
                if not (isinstance(d, ast.Call) and any(k.arg == "cache" and getattr(k.value, "value", None) is True
                                                        for k in d.keywords))]
    assert not lazy and not uncached, (lazy, uncached)


@pytest.mark.parametrize("profile, mode, method, grid", [("respeaker_usb_v2", "doa", "srp-phat", "auto"),
                                                         ("respeaker_usb_v2", "doa", "normmusic", "auto"),
                                                         ("minidsp_uma16", "doa", "srp-phat", "sphere"),
                                                         ("room_walls_6mic", "position", "srp-phat", "auto")])
def test_the_first_block_loads_nothing(profile, mode, method, grid):
    """Building the analysis loads every module the first block needs (kernels, FFT): the first
    block, as the live engine and `locate` run it, imports nothing."""
    code = f"""
import json, sys
import numpy as np
from doascope.config import AnalysisConfig
from doascope.dsp.analysis import build_localizer
from doascope.hardware_profiles import load_profile
prof = load_profile({profile!r})
loc = build_localizer(AnalysisConfig(method={method!r}, mode={mode!r}, grid={grid!r}, n_sources=2), prof,
                      prof.sample_rate)
assert {grid!r} != "sphere" or loc.estimator.scan is not None   # the coarse-to-fine scan's kernels load at build
before = set(sys.modules)
x = 0.01 * np.random.default_rng(0).standard_normal((loc.block_samples, loc.n_mics)).astype(np.float32)
from doascope.dsp.stft import stft
loc.process(stft(x, nfft=loc.nfft, hop=loc.hop), 0, prof.sample_rate)
print(json.dumps(sorted(set(sys.modules) - before)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_live_path_loads_no_scipy_optimize():
    """Importing scipy.optimize (for one function, the assignment) cost `run` 0.2-0.4 s of start-up;
    the tracker and the metrics solve it with doascope.dsp.assignment."""
    code = """
import json, sys
import doascope.app.runtime.engine, doascope.dsp.tracker, doascope.dsp.track_metrics, doascope.dsp.metrics
from doascope.app.net import server
print(json.dumps(sorted(m for m in sys.modules if m.startswith("scipy.optimize"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
