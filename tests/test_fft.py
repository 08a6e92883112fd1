"""doascope.dsp.fft: scipy's pocketfft called directly, against scipy.fft.rfft (the reference)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.fft

from doascope.dsp import fft


@pytest.mark.parametrize("shape, axis", [((512,), -1), ((4, 1, 512), 2), ((6, 63, 512), 2), ((16, 2, 1024), -1),
                                         ((3, 400), 1), ((7, 5), 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_same_values_as_scipy_fft_bit_for_bit(shape, axis, dtype):
    x = np.random.default_rng(len(shape) + shape[-1]).standard_normal(shape).astype(dtype)
    got = fft.rfft(x, axis=axis)
    want = scipy.fft.rfft(x, axis=axis, workers=1)
    assert got.dtype == want.dtype == (np.complex64 if dtype == np.float32 else np.complex128)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, np.fft.rfft(x.astype(np.float64), axis=axis), rtol=1e-4, atol=1e-3)


def test_strided_input():
    x = np.random.default_rng(1).standard_normal((4, 2048)).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, 512, axis=1)[:, ::256]
    np.testing.assert_array_equal(fft.rfft(frames, axis=2), scipy.fft.rfft(frames, axis=2, workers=1))


def test_the_direct_path_is_taken_here_and_loads_no_scipy_fft_package():
    # this scipy ships the extension: the direct call is used, and the scipy.fft package (0.1-0.17 s of
    # start-up) is never imported for it; a later import of scipy.fft shares the same module
    code = """
import json, sys
import numpy as np
from doascope.dsp import fft
y = fft.rfft(np.ones((2, 8), np.float32), axis=1)
before = sorted(m for m in sys.modules if m.startswith("scipy.fft") or m.startswith("scipy.special"))
import scipy.fft
same = sys.modules["scipy.fft._pocketfft.basic"].pfft is sys.modules["scipy.fft._pocketfft.pypocketfft"]
assert np.array_equal(scipy.fft.rfft(np.ones((2, 8), np.float32), axis=1), y)
print(json.dumps({"direct": not fft.uses_scipy_fft_package(), "loaded": before, "same": same,
                  "dc": float(y[0, 0].real)}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res == {"direct": True, "loaded": ["scipy.fft._pocketfft.pypocketfft"], "same": True, "dc": 8.0}


def test_falls_back_to_scipy_fft_without_the_extension(monkeypatch):
    monkeypatch.setattr(fft, "_pocketfft", lambda: None)
    fft._r2c.cache_clear()
    try:
        assert fft.uses_scipy_fft_package()
        x = np.random.default_rng(2).standard_normal((3, 64)).astype(np.float32)
        np.testing.assert_array_equal(fft.rfft(x, axis=1), scipy.fft.rfft(x, axis=1, workers=1))
    finally:
        fft._r2c.cache_clear()
