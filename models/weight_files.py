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


# --- training checkpoints ------------------------------------------------------------------------

def checkpoint_path(out) -> Path:
    """Where the training of the weight file ``out`` keeps its checkpoint (``OUT.ckpt``)."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(path: Path, *, model, opt, sched, gen, history: list, epoch: int, settings: dict) -> None:
    """Everything a run needs to go on after ``epoch`` (model, optimiser, schedule, both random
    generators, the history, the settings it was made with); written aside and renamed, so an
    interrupted run leaves the previous checkpoint whole."""
    torch = import_torch()
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "history": history, "epoch": epoch,
                "settings": settings}, tmp)
    os.replace(tmp, path)


def resume_checkpoint(path: Path, *, model, opt, sched, gen, settings: dict) -> tuple[list, int]:
    """Load ``path`` into the run's objects: (history, epochs done). A checkpoint made with other
    settings, or one that cannot be read, is a ParameterError that says what to do."""
    torch = import_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - torch raises many kinds for a truncated file
        raise ParameterError(f"the checkpoint {path} cannot be read: delete it, or rerun without "
                             "--resume to start over") from None
    if state["settings"] != settings:
        raise ParameterError(f"{path} was made with other settings: rerun without --resume to start over")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    return state["history"], state["epoch"]


def remove_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)
