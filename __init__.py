"""doascope: real-time sound source localization with microphone arrays.

The distribution maps its folders onto subpackages: ``doascope.dsp`` (pure numeric kernels),
``doascope.models`` (PyTorch parts), ``doascope.hardware_profiles`` (array geometries) and
``doascope.app`` (sources, engine, CLI, service, GUI). Every error a user can cause is a
:class:`DoascopeError` carrying one plain sentence.
"""

__version__ = "0.1.0"

SPEED_OF_SOUND = 343.0
"""Speed of sound in m/s used unless a caller sets another."""


class DoascopeError(Exception):
    """Base class of every error doascope raises for something a user can fix."""


class ParameterError(DoascopeError, ValueError):
    """A numeric argument has the wrong shape, type or range."""


class ProfileError(DoascopeError):
    """A hardware profile is missing, does not parse, or is inconsistent."""


class AudioInputError(DoascopeError):
    """An audio file or device cannot be read, or its content does not fit the profile."""


__all__ = [
    "DoascopeError",
    "ParameterError",
    "ProfileError",
    "AudioInputError",
    "SPEED_OF_SOUND",
    "__version__",
]
