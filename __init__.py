"""doascope: real-time sound source localization with microphone arrays.

Use from Python::

    import doascope
    result = doascope.locate("talk.wav", "respeaker_usb_v2", method="normmusic", sources=2)
    result.t, result.azimuth, result.elevation, result.power   # (blocks,), (blocks, sources) arrays

and :class:`Localizer` for one's own capture loop (``loc.process(chunk)`` returns the blocks a
chunk completes). Both load on first use, so ``import doascope`` stays light.

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


class DoascopeWarning(UserWarning):
    """Settings that run but give poor answers (the command line prints it as one line)."""


# The Python API loads on first use (PEP 562), so that `import doascope` stays light.
_API = {"locate": "doascope.app.api", "Localizer": "doascope.app.api", "LocateResult": "doascope.app.api"}


def __getattr__(name):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'doascope' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))


__all__ = [
    "locate",
    "Localizer",
    "LocateResult",
    "DoascopeError",
    "ParameterError",
    "ProfileError",
    "AudioInputError",
    "DoascopeWarning",
    "SPEED_OF_SOUND",
    "__version__",
]
