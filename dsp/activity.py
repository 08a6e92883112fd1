"""Is anything there? Block energy against a running noise floor, and spatial coherence.

A block is active when its band energy is above an absolute floor and either rises clearly above
the running noise floor (a talker starts) or is spatially coherent across the mics (a steady
directional source, which the floor would otherwise absorb). Silence, digital zeros and spatially
white sensor noise are inactive, so they report no sources instead of random angles.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numba import njit

from doascope.dsp._checks import as_bins, as_stft


@njit("UniTuple(float64, 2)(complex64[:,:,::1], int64[::1])", cache=True, nogil=True)
def _energy_coherence(X, bins):
    # Mean band power per mic and sample-frame, and the mean magnitude-squared coherence over pairs.
    M = X.shape[0]
    T = X.shape[2]
    B = bins.shape[0]
    power = np.zeros(M)
    num = 0.0
    den = 0.0
    energy = 0.0
    for b in range(B):
        k = bins[b]
        for m in range(M):
            acc = 0.0
            for t in range(T):
                v = X[m, k, t]
                acc += v.real * v.real + v.imag * v.imag
            power[m] = acc
            energy += acc
        for i in range(M):
            for j in range(i + 1, M):
                c = np.complex128(0.0)
                for t in range(T):
                    c += X[i, k, t] * np.conj(X[j, k, t])
                num += c.real * c.real + c.imag * c.imag
                den += power[i] * power[j]
    coherence = num / den if den > 0 else 0.0
    return energy / (M * B * T), coherence


def energy_coherence(X, bins) -> tuple[float, float]:
    """(mean band power per mic, bin and frame; power-weighted mean MSC over pairs in [0, 1]).

    For spatially white noise the coherence is about 1/frames; for one plane wave it is 1.
    """
    X = as_stft(X)
    bins = as_bins(bins, X.shape[1])
    return _energy_coherence(X, bins)


class ActivityGate:
    """Decides per block whether sources should be reported.

    Parameters
    ----------
    floor_blocks : length of the minimum-statistics window (blocks) for the noise floor
    rise_db : how far above the floor a block must be to count as active on energy alone
    coherence : coherence above which a block is active whatever its energy (steady sources);
        given as the margin above the white-noise value 1/frames
    absolute_floor : band power below which nothing is ever active (digital silence, which does not
        count towards the noise floor either)
    """

    def __init__(self, *, floor_blocks: int = 40, rise_db: float = 4.0, coherence: float = 0.25,
                 absolute_floor: float = 1e-9):
        self.rise = 10 ** (rise_db / 10)
        self.coherence_margin = coherence
        self.absolute_floor = absolute_floor
        self._history: deque[float] = deque(maxlen=int(floor_blocks))
        self.floor = np.inf

    def update(self, energy: float, coherence: float, frames: int) -> bool:
        """Feed one block's statistics; returns whether the block is active."""
        if not energy > self.absolute_floor:
            # Digital silence says nothing of the noise floor: counted in, it held the floor at zero
            # for floor_blocks after a stream that starts with zeros (a device before it delivers
            # sound, a file's padding), and the sensor noise that follows passed as sound.
            return False
        self._history.append(energy)
        self.floor = min(self._history)
        coherent = coherence > 1.0 / max(frames, 1) + self.coherence_margin
        return bool(energy > self.rise * self.floor or coherent)

    def reset(self) -> None:
        self._history.clear()
        self.floor = np.inf

    def state(self) -> tuple[float, ...]:
        """The energies the floor is taken over, oldest first: all the gate carries between blocks."""
        return tuple(self._history)

    def restore(self, state) -> None:
        """Continue from a :meth:`state` taken earlier (on this or an identical gate)."""
        self._history.clear()
        self._history.extend(float(e) for e in state)
        self.floor = min(self._history) if self._history else np.inf
