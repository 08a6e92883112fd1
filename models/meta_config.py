"""Defaults of the sinusoid meta-learning demo that the CLI and the GUI share, without torch."""

# meta-iterations per method of `doascope meta sinusoid` and the GUI's panel: ~95 s of CPU on one
# torch thread (MAML ~50 s, Reptile ~38 s, pre-training ~4 s), measured on this project's 2-core machine
SINUSOID_ITERATIONS = 10_000
