"""The DOA methods' names and the module that registers each one.

Plain Python with no imports, outside ``doascope.dsp`` (whose package loads numpy), so that the
command line lists the methods in its help without loading numpy, numba, scipy or torch;
:mod:`doascope.dsp.estimators` reads the same table to import a method's module on first use
(torch stays out of the classical path).
"""

#: method name -> module whose import registers it (see doascope.dsp.estimators.register)
METHODS: dict[str, str] = {
    "srp-phat": "doascope.dsp.estimators",
    "srp-dpd": "doascope.dsp.estimators",
    "gcc-phat": "doascope.dsp.estimators",
    "music": "doascope.dsp.estimators",
    "normmusic": "doascope.dsp.estimators",
    "dnn": "doascope.models.dnn",
}

DEFAULT_METHOD = "srp-phat"


def method_names() -> list[str]:
    """The shipped method names, sorted."""
    return sorted(METHODS)
