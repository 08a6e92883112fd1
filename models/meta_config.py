"""Defaults of the sinusoid meta-learning demo that the CLI and the GUI share, without torch."""

# meta-iterations per method of `doascope meta sinusoid` and the GUI's panel: about a minute on one
# torch thread (measured: 70 s wall, 53 s CPU on this project's shared 2-core machine)
SINUSOID_ITERATIONS = 10_000
