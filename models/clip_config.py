"""The toy CLIP's model and training settings, without torch: the CLI and the GUI read their
defaults here (one owner), and only the code that trains imports :mod:`doascope.models.clip`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path



def _data():
    from doascope.models import clip_data

    return clip_data

# The model that ships, made by the command in the README ("Teaching tabs"); the CLIP tab opens on it.
SHIPPED_MODEL = Path(__file__).resolve().parent / "weights" / "clip_shapes.pt"


@dataclass
class ClipConfig:
    """Sizes of the two encoders; the default (~75 k parameters) is sized for `doascope clip train`
    to finish within five minutes on two CPU cores."""

    embed_dim: int = 48         # d_e, the joint embedding
    image_width: int = 96       # d_i
    channels: tuple[int, int, int] = (16, 32, 48)
    text_width: int = 48        # d_t
    text_layers: int = 1
    text_heads: int = 2
    # Fixed by the data (clip_data, which needs numpy): read when a model is configured, not when
    # the command line is built.
    context_length: int = field(default_factory=lambda: _data().CONTEXT_LENGTH)
    vocab_size: int = field(default_factory=lambda: len(_data().VOCAB))
    image_size: int = field(default_factory=lambda: _data().IMAGE_SIZE)

    @classmethod
    def small(cls) -> ClipConfig:
        """A smaller, faster model for tests and smoke runs (weaker)."""
        return cls(embed_dim=32, image_width=64, channels=(12, 24, 32), text_width=32, text_layers=1, text_heads=2)


@dataclass
class TrainConfig:
    steps: int = 3500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup: int = 50
    seed: int = 0
    group: int = 4              # hard-negative groups in each batch (clip_data.sample_scenes)
    model: ClipConfig = field(default_factory=ClipConfig)
