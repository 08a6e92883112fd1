"""doascope.sim: simulated acoustics, the test and training data of doascope.

Rooms by the image-source method (pyroomacoustics, the ``sim`` extra), talkers (espeak-ng speech or
a synthetic stand-in) and noises, rendered at a microphone array: :mod:`doascope.sim.scenes`
(scenes with a known truth) and :mod:`doascope.sim.signals` (the dry source signals).

Its own layer beside ``doascope.dsp``: it produces audio rather than analysing it, so it is not
``dsp`` (pure analysis, no subprocesses: espeak-ng runs as one), and it touches no device, thread,
network or GUI, so it need not be ``app``. ``doascope.models`` trains on its scenes and
``doascope.app`` plays them, without either importing the other; it imports neither of them.
"""
