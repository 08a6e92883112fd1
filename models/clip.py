"""CLIP at toy scale (Radford et al. 2021, "Learning Transferable Visual Models From Natural
Language Supervision"), following the paper's pseudocode::

    I_f = image_encoder(I)              # [n, d_i]
    T_f = text_encoder(T)               # [n, d_t]
    I_e = l2_normalize(I_f @ W_i)       # [n, d_e]
    T_e = l2_normalize(T_f @ W_t)       # [n, d_e]
    logits = I_e @ T_e.T * exp(t)       # [n, n], t learned, initialised to log(1/0.07), exp(t) <= 100
    loss = (cross_entropy(logits, arange(n), axis=0) + cross_entropy(logits, arange(n), axis=1)) / 2

The image encoder is a small CNN, the text encoder a small causal transformer over word tokens
whose feature is the activation at the <eot> token, as in the paper. :class:`ClipTrainer` holds the
training loop and the evaluations (zero-shot classification, text-to-image retrieval) that the CLI
and the GUI share. Imports torch: import this module only where a network is used.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from doascope import ParameterError
from doascope.models import clip_data as data
from doascope.models.clip_config import ClipConfig, TrainConfig  # noqa: F401 - re-exported
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)
INIT_TEMPERATURE = 0.07


class ImageEncoder(nn.Module):
    """(n, 3, H, W) float32 -> (n, d_i): conv blocks (conv, batch norm, ReLU, 2x2 max pool), then
    one linear layer over two poolings of the last map: the global average (what is there, the same
    wherever it is) and a coarse low-channel map (where it is: captions say that too). Keeping the
    last stage linear over position-invariant features is what lets colour and shape combine into
    pairs never seen in training, rather than be memorised pair by pair."""

    def __init__(self, cfg: ClipConfig):
        super().__init__()
        layers, c_in = [], data.IMAGE_CHANNELS
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(cfg.channels)
        self.where = nn.Sequential(nn.Conv2d(c_in, 8, 1), nn.ReLU(inplace=True), nn.Flatten())
        self.fc = nn.Linear(c_in + 8 * side * side, cfg.image_width)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv(images)
        return self.fc(torch.cat([x.mean(dim=(2, 3)), self.where(x)], dim=1))


class TextEncoder(nn.Module):
    """(n, L) int64 tokens -> (n, d_t): token + learned position embeddings, pre-LN transformer
    blocks with a causal mask, final layer norm, the feature at each text's <eot> token."""

    def __init__(self, cfg: ClipConfig):
        super().__init__()
        self.token = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.position = nn.Parameter(torch.randn(cfg.context_length, cfg.text_width) * 0.01)
        layer = nn.TransformerEncoderLayer(cfg.text_width, cfg.text_heads, 4 * cfg.text_width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(cfg.context_length),
                             persistent=False)
        nn.init.normal_(self.token.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        L = tokens.shape[1]
        x = self.token(tokens) + self.position[:L]
        x = self.transformer(x, mask=self.mask[:L, :L], is_causal=True)
        x = self.ln_final(x)
        eot = (tokens == data.EOT).int().argmax(dim=1)
        return x[torch.arange(x.shape[0]), eot]


class CLIP(nn.Module):
    def __init__(self, cfg: ClipConfig | None = None):
        super().__init__()
        self.cfg = cfg or ClipConfig()
        self.image_encoder = ImageEncoder(self.cfg)
        self.text_encoder = TextEncoder(self.cfg)
        self.W_i = nn.Linear(self.cfg.image_width, self.cfg.embed_dim, bias=False)
        self.W_t = nn.Linear(self.cfg.text_width, self.cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / INIT_TEMPERATURE)))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings I_e, (n, d_e)."""
        return F.normalize(self.W_i(self.image_encoder(images)), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings T_e, (n, d_e)."""
        return F.normalize(self.W_t(self.text_encoder(tokens)), dim=-1)

    def scale(self) -> torch.Tensor:
        """exp(t), the inverse temperature, never above 100 (the paper's clip)."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def temperature(self) -> float:
        return float(1.0 / self.scale().detach())

    def clamp_(self) -> None:
        """Clip the parameter itself after each optimiser step, as the reference code does."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities, (n_images, n_texts): logits[i, j] = exp(t) <I_e[i], T_e[j]>."""
        return self.scale() * self.encode_image(images) @ self.encode_text(tokens).T


def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy over an (n, n) logit matrix whose diagonal holds the true pairs:
    the mean of the image->text loss (rows) and the text->image loss (columns)."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


# -- training and evaluation -----------------------------------------------------------------------


def _to_torch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data.to_tensor_layout(images))


class ClipTrainer:
    """Trains a :class:`CLIP` on the procedural pairs one step at a time (so that a GUI thread or
    a CLI loop can drive it) and evaluates it on the held-out split.

    Not thread-safe: one thread steps it. :meth:`snapshot` gives a frozen copy for others to use.
    """

    def __init__(self, cfg: TrainConfig | None = None):
        self.cfg = cfg or TrainConfig()
        if self.cfg.steps < 1 or self.cfg.batch_size < 2:
            raise ParameterError("training needs at least 1 step and a batch of at least 2 pairs")
        torch.manual_seed(self.cfg.seed)
        self.rng = np.random.default_rng(self.cfg.seed)
        self.model = CLIP(self.cfg.model)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "position" not in n]
        rest = [p for n, p in self.model.named_parameters() if not (p.ndim >= 2 and "position" not in n)]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.cfg.weight_decay},
                                            {"params": rest, "weight_decay": 0.0}], lr=self.cfg.lr,
                                           betas=(0.9, 0.98), eps=1e-6)
        self.step_count = 0
        self.losses: list[float] = []
        self.temperatures: list[float] = []
        self.metric_history: list[tuple[int, float, float, float]] = []  # step, zero-shot, R@1, R@5
        self.train_seconds = 0.0
        self.eval_rng_seed = self.cfg.seed + 10_000

    def _lr(self) -> float:
        s, total, warm = self.step_count, self.cfg.steps, self.cfg.warmup
        if s < warm:
            return self.cfg.lr * (s + 1) / warm
        progress = min(1.0, (s - warm) / max(1, total - warm))
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))  # cosine schedule, as in the paper

    def step(self) -> float:
        """One optimisation step on a fresh training batch; returns the loss."""
        t0 = time.perf_counter()
        images, captions, _ = data.make_batch(self.rng, self.cfg.batch_size, "train", group=self.cfg.group)
        for g in self.optimizer.param_groups:
            g["lr"] = self._lr()
        self.model.train()
        logits = self.model(_to_torch(images), torch.from_numpy(data.tokenize(captions)))
        loss = clip_loss(logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.model.clamp_()
        self.step_count += 1
        self.losses.append(float(loss.detach()))
        self.temperatures.append(self.model.temperature())
        self.train_seconds += time.perf_counter() - t0
        return self.losses[-1]

    def snapshot(self) -> CLIP:
        """A frozen copy of the model in eval mode, for use from another thread."""
        import copy

        m = copy.deepcopy(self.model).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        return m

    def evaluate(self, *, n_zero_shot: int = 600, n_retrieval: int = 300, model: CLIP | None = None) -> dict:
        """Held-out metrics of the model now; also appended to :attr:`metric_history`."""
        m = evaluate(model or self.model, seed=self.eval_rng_seed, n_zero_shot=n_zero_shot,
                     n_retrieval=n_retrieval)
        self.metric_history.append((self.step_count, m["zero_shot_accuracy"], m["recall_at_1"], m["recall_at_5"]))
        return m


@torch.no_grad()
def embed_images(model: CLIP, images: np.ndarray, chunk: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model.encode_image(_to_torch(images[i:i + chunk])) for i in range(0, len(images), chunk)])


@torch.no_grad()
def embed_texts(model: CLIP, texts) -> torch.Tensor:
    model.eval()
    return model.encode_text(torch.from_numpy(data.tokenize(list(texts))))


@torch.no_grad()
def zero_shot(model: CLIP, images: np.ndarray, labels, template: str = data.ZERO_SHOT_TEMPLATE, *,
              image_embeddings: torch.Tensor | None = None) -> np.ndarray:
    """Class probabilities (n_images, n_labels) from prompts ``template.format(label=...)``
    (``image_embeddings``: :func:`embed_images` of ``images``, when already at hand).

    A template of several prompts separated by "|" is a prompt ensemble: each class embedding is the
    normalised mean of its prompts' embeddings (the paper, sec. 3.1.4).
    """
    templates = data.prompts(template)
    if not templates or any("{label}" not in t for t in templates):
        raise ParameterError("each prompt needs a {label} placeholder, e.g. 'a photo of a {label}'")
    labels = list(labels)
    if not labels:
        raise ParameterError("give at least one label")
    try:
        text = torch.stack([embed_texts(model, [t.format(label=l) for l in labels]) for t in templates]).mean(dim=0)
    except (KeyError, IndexError, ValueError):
        raise ParameterError("a prompt may hold only the {label} placeholder") from None
    text = F.normalize(text, dim=-1)
    img = embed_images(model, images) if image_embeddings is None else image_embeddings
    logits = model.scale() * img @ text.T
    return logits.softmax(dim=-1).numpy()


@torch.no_grad()
def retrieve(model: CLIP, query: str, images: np.ndarray, k: int = 8, *,
             image_embeddings: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the k images that best match a query, best first."""
    img = embed_images(model, images) if image_embeddings is None else image_embeddings
    sims = (img @ embed_texts(model, [query]).T)[:, 0]
    top = torch.topk(sims, min(k, len(images)))
    return top.indices.numpy(), top.values.numpy()


def held_out_set(seed: int, n: int):
    """n held-out test pairs (held-out colour-shape pairs, held-out templates), reproducible."""
    return data.make_batch(np.random.default_rng(seed), n, "test")


@torch.no_grad()
def evaluate(model: CLIP, *, seed: int = 10_000, n_zero_shot: int = 600, n_retrieval: int = 300) -> dict:
    """Zero-shot accuracies and text-to-image recall on the held-out split.

    ``zero_shot_accuracy``: images of held-out colour-shape pairs classified among all
    colour-shape pairs (chance 1/48) by the prompt ensemble of ``ZERO_SHOT_TASKS``;
    ``zero_shot_accuracy_single_prompt`` by "a photo of a {colour} {shape}" alone.
    ``recall_at_k``: held-out-template captions retrieve their image from a gallery of held-out
    images; a hit is any of the top k of which the caption is true (:meth:`Scene.shows`: colour,
    shape, size and count exact, every object in the named region; several images can answer one
    caption).
    """
    images, _, scenes = held_out_set(seed, n_zero_shot)
    out: dict = {"zero_shot": {}}
    for task, (template, labels) in data.ZERO_SHOT_TASKS.items():
        pred = zero_shot(model, images, labels, template).argmax(axis=1)
        truth = np.array([labels.index(data.scene_label(s, task)) for s in scenes])
        out["zero_shot"][task] = {"accuracy": float(np.mean(pred == truth)), "chance": 1.0 / len(labels)}
    out["zero_shot_accuracy"] = out["zero_shot"]["colour and shape"]["accuracy"]
    template, labels = data.ZERO_SHOT_TASKS["colour and shape"]
    pred = zero_shot(model, images, labels, data.ZERO_SHOT_TEMPLATE).argmax(axis=1)
    out["zero_shot_accuracy_single_prompt"] = float(np.mean(
        [labels[p] == data.scene_label(s, "colour and shape") for p, s in zip(pred, scenes)]))
    g_images, g_captions, g_scenes = held_out_set(seed + 1, n_retrieval)
    sims = embed_texts(model, g_captions) @ embed_images(model, g_images).T  # (texts, images)
    order = torch.argsort(sims, dim=1, descending=True)[:, :5].numpy()
    hit = np.array([[g_scenes[j].shows(g_scenes[i]) for j in row] for i, row in enumerate(order)])
    out["recall_at_1"] = float(hit[:, :1].any(axis=1).mean())
    out["recall_at_5"] = float(hit[:, :5].any(axis=1).mean())
    return out


def save(trainer: ClipTrainer, path: str, *, metrics: dict | None = None, extra: dict | None = None) -> None:
    """The model, its settings and its training history (curves, held-out metrics), so that a
    viewer can show how it was made without training again."""
    history = {"losses": [float(x) for x in trainer.losses], "temperatures": [float(x) for x in trainer.temperatures],
               "metric_history": [list(map(float, row)) for row in trainer.metric_history],
               "training_seconds": float(trainer.train_seconds)}
    torch.save({"model": trainer.model.state_dict(), "model_config": asdict(trainer.cfg.model),
                "train_config": {k: v for k, v in asdict(trainer.cfg).items() if k != "model"},
                "vocab": list(data.VOCAB), "steps": trainer.step_count, "history": history,
                "metrics": metrics or {}, **(extra or {})}, path)


def load(path: str) -> CLIP:
    """A model saved by :func:`save` (weights only, never code: ``weights_only=True``)."""
    return load_checkpoint(path)[0]


def load_checkpoint(path: str) -> tuple[CLIP, dict]:
    """(model in eval mode, everything else :func:`save` wrote: history, metrics, settings)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise ParameterError(f"cannot load a CLIP model from {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one sentence, not torch's essay
        raise ParameterError(f"cannot load a CLIP model from {path}: not a model saved by `doascope clip train` "
                             f"({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model_config" not in state:
        raise ParameterError(f"{path} is not a CLIP model written by `doascope clip train`")
    if list(state.get("vocab", [])) != list(data.VOCAB):
        raise ParameterError(f"{path} was trained with another vocabulary")
    cfg = state["model_config"]
    cfg["channels"] = tuple(cfg["channels"])
    model = CLIP(ClipConfig(**cfg))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ParameterError(f"{path} does not fit the CLIP model: {str(exc).splitlines()[0]}") from None
    info = {k: v for k, v in state.items() if k not in ("model", "vocab")}
    return model.eval(), info
