"""doascope's network weight files (``.pt``: float16 tensors and a metadata dict) and the lazy torch
import every network shares; the shipped files live in ``models/weights/``."""

from __future__ import annotations

import os
from pathlib import Path

from doascope import ParameterError, __version__

WEIGHT_FORMAT = 1           # bumped when the file layout changes
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def import_torch():
    """torch, or a DoascopeError that says which pip extra brings it."""
    from doascope.extras import optional_import

    return optional_import("torch")


def save_weights(path, model, meta: dict) -> int:
    """Write the network (float16 tensors, to keep files small) and its metadata; returns bytes."""
    torch = import_torch()
    state = {k: v.detach().to(torch.float16).clone() for k, v in model.state_dict().items()}
    meta = dict(meta, format=WEIGHT_FORMAT, doascope=__version__)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"meta": meta, "state": state}, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def load_weights(path) -> tuple[dict, dict]:
    """(meta, state) of a weight file, checked for format; tensors as float32."""
    torch = import_torch()
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"no weight file at {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta, state = blob["meta"], blob["state"]
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: one sentence, not a traceback
        raise ParameterError(f"{path} is not a doascope weight file ({type(exc).__name__})") from None
    if meta.get("format") != WEIGHT_FORMAT:
        raise ParameterError(f"{path} has weight format {meta.get('format')}, this doascope reads "
                             f"{WEIGHT_FORMAT}: retrain with `doascope train --profile {meta.get('profile', 'P')}`")
    return meta, {k: v.float() for k, v in state.items()}
