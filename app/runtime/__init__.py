"""The live runtime: audio sources (devices, files, simulated rooms), the ring buffer, the engine that
analyses every frame on its own thread, and the outputs that write its frames."""
