"""Procedural image-caption pairs for the toy CLIP: coloured shapes on a dark 32 x 32 canvas.

Each image is a :class:`Scene` (colour, shape, size, position, count) drawn with numpy; its caption
is one of several sentence templates filled with the scene's words. The two splits differ in what
generalisation they ask for:

- ``train`` draws only the colour-shape pairs outside :data:`HELD_OUT_PAIRS` and captions them
  with :data:`TRAIN_TEMPLATES`;
- ``test`` draws only the held-out pairs (a red triangle is never seen in training, though red
  things and triangles are) and captions them with :data:`TEST_TEMPLATES`, sentence shapes never
  seen in training.

Zero-shot prompts ("a photo of a {label}") are a held-out template too. Pure numpy: no torch here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
from doascope import ParameterError

IMAGE_SIZE = 32
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45), "green": (45, 185, 65), "blue": (55, 95, 235),
    "yellow": (230, 215, 45), "purple": (160, 65, 205), "white": (235, 235, 235),
    "orange": (245, 140, 30), "cyan": (40, 210, 220),
}
SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")
SIZES = {"small": 4.0, "large": 6.8}  # radius in pixels
# Where object centres may fall, (x0, x1, y0, y1) in pixels, y down; shrunk by the radius when drawn.
POSITIONS = {
    "on the left": (0, 16, 0, 32), "on the right": (16, 32, 0, 32), "at the top": (0, 32, 0, 16),
    "at the bottom": (0, 32, 16, 32), "in the middle": (5, 27, 5, 27),
}
COUNTS = {1: ("a", "one"), 2: ("two", "two"), 3: ("three", "three")}
MAX_COUNT = {"small": 3, "large": 2}  # three large shapes do not fit in half the canvas

# One held-out shape per colour, every shape held out at least once: each colour and each shape is
# still seen in training, with other partners.
HELD_OUT_PAIRS = frozenset({("red", "triangle"), ("green", "diamond"), ("blue", "square"),
                            ("yellow", "circle"), ("purple", "cross"), ("white", "ring"),
                            ("orange", "ring"), ("cyan", "triangle")})

# Placeholders: {cnt} a/two/three, {num} one/two/three, {size}, {colour}, {noun} (plural-aware
# shape word), {pos}, {be} is/are, {obj} object/objects.
TRAIN_TEMPLATES = (
    "{cnt} {size} {colour} {noun} {pos}",
    "a picture of {cnt} {size} {colour} {noun} {pos}",
    "{pos} there {be} {cnt} {size} {colour} {noun}",
    "{cnt} {colour} {noun} {pos} , {size}",
    "an image with {num} {size} {colour} {noun} {pos}",
    "a photo showing {cnt} {colour} {size} {obj} shaped like a {shape} {pos}",
    "{size} {colour} {noun} {pos} , {num} in total",
    # partial descriptions, as real alt-texts are: not every caption names every attribute
    "{cnt} {colour} {noun}",
    "a picture of {cnt} {colour} {noun}",
    "{cnt} {size} {noun} {pos}",
    "{cnt} {colour} {obj} {pos}",
    "{colour} {noun} {pos}",
    "{cnt} {size} {colour} {obj}",
    "a picture of {cnt} {noun}",
    "{cnt} {size} {noun}",
    "{cnt} {noun} {pos}",
    "{colour} {obj} {pos}",
)
TEST_TEMPLATES = (
    "a photo of {cnt} {size} {colour} {noun} {pos}",
    "{pos} : {num} {colour} {noun} , all {size}",
    "{pos} you can see {cnt} {size} {colour} {noun}",
)
ZERO_SHOT_TEMPLATE = "a photo of a {label}"

# Zero-shot tasks: label sets never used as training targets (the model was only ever trained to
# match whole captions), each with the prompts that turn a label into sentences. Several prompts,
# separated by "|", are ensembled as in the paper (sec. 3.1.4): a class's text embedding is the
# normalised mean of its prompts' embeddings. None of these sentences is a training caption.
ZERO_SHOT_TASKS = {
    "colour and shape": ("a photo of a {label} | a photo of one {label} | an image of a {label} | there is a {label}",
                         [f"{c} {s}" for c in COLOURS for s in SHAPES]),
    "colour": ("a photo of a {label} object | an image of a {label} object | there is a {label} object",
               list(COLOURS)),
    "shape": ("a photo of a {label} | an image of a {label} | there is a {label}", list(SHAPES)),
    "count": ("a photo of {label} objects | an image of {label} objects", ["one", "two", "three"]),
    "position": ("a photo of an object {label} | there is an object {label}", list(POSITIONS)),
}


def prompts(template: str) -> list[str]:
    """The prompts of a template string: "|" separates an ensemble."""
    return [t.strip() for t in template.split("|") if t.strip()]


SPECIALS = ("<pad>", "<sot>", "<eot>", "<unk>")
CONTEXT_LENGTH = 20


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    size: str
    position: str
    count: int
    # where the renderer put the objects, (x, y) pixels; not part of what a caption can say
    centres: tuple[tuple[float, float], ...] = field(default=(), compare=False)

    def matches(self, other: Scene) -> bool:
        return self == other

    def shows(self, described: Scene) -> bool:
        """Whether a caption of ``described`` is true of this (rendered) scene: same colour, shape,
        size and count, and every object inside the described position's region. The regions
        overlap (an object at the top left is both "on the left" and "at the top"), so an image can
        answer captions of several positions; a scene never rendered answers only its own."""
        same = (self.colour, self.shape, self.size, self.count) == (described.colour, described.shape,
                                                                    described.size, described.count)
        if not same or not self.centres:
            return same and self.position == described.position
        x0, x1, y0, y1 = POSITIONS[described.position]
        r = 0.9 * SIZES[self.size]  # the smallest radius drawn: the renderer keeps centres this far in
        return all(x0 + r <= x <= x1 - r and y0 + r <= y <= y1 - r for x, y in self.centres)


def _vocabulary() -> tuple[str, ...]:
    words = set()
    for t in TRAIN_TEMPLATES + TEST_TEMPLATES + (ZERO_SHOT_TEMPLATE,) + tuple(p for task, _ in ZERO_SHOT_TASKS.values() for p in prompts(task)):
        words.update(re.findall(r"[a-z]+", re.sub(r"\{[a-z]+\}", " ", t)))
    words.update(COLOURS)
    words.update(SHAPES)
    words.update(s + "s" for s in SHAPES)
    words.update(w for p in POSITIONS for w in p.split())
    words.update(w for pair in COUNTS.values() for w in pair)
    words.update(SIZES)
    words.update(("is", "are", "object", "objects"))
    return SPECIALS + tuple(sorted(words))


VOCAB = _vocabulary()
_INDEX = {w: i for i, w in enumerate(VOCAB)}
PAD, SOT, EOT, UNK = (_INDEX[s] for s in SPECIALS)


def tokenize(texts, *, context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """Word-level tokens, (len(texts), context_length) int64: <sot> words <eot>, then <pad>.

    Lower-cases, keeps letter runs only (punctuation dropped), maps unknown words to <unk> and
    truncates long texts so that <eot> is always present (the text encoder reads its position).
    """
    if isinstance(texts, str):
        texts = [texts]
    out = np.full((len(texts), context_length), PAD, np.int64)
    for i, text in enumerate(texts):
        ids = [_INDEX.get(w, UNK) for w in re.findall(r"[a-z]+", str(text).lower())][: context_length - 2]
        row = [SOT, *ids, EOT]
        out[i, : len(row)] = row
    return out


def caption(scene: Scene, template: str) -> str:
    many = scene.count > 1
    cnt, num = COUNTS[scene.count]
    return template.format(cnt=cnt, num=num, size=scene.size, colour=scene.colour,
                           noun=scene.shape + ("s" if many else ""), shape=scene.shape, pos=scene.position,
                           be="are" if many else "is", obj="objects" if many else "object")


# What a hard-negative variant changes, and how often: shape is the hardest cue to pick up at 32 px.
VARIANT_WEIGHTS = {"shape": 0.35, "colour": 0.2, "count": 0.2, "position": 0.15, "size": 0.1}


def sample_scenes(rng: np.random.Generator, n: int, split: str, pairs=None, *, group: int = 1) -> list[Scene]:
    """n random scenes of a split; ``pairs`` restricts the (colour, shape) pairs further.

    With ``group`` > 1 the scenes come in groups of near-duplicates: a random scene and
    ``group - 1`` variants that each differ from it in one attribute (:data:`VARIANT_WEIGHTS`).
    In a contrastive batch those are hard negatives: a caption can only find its image by the one
    word that differs, so every attribute has to be learned, not just the easiest.
    """
    if split not in ("train", "test"):
        raise ParameterError(f"split must be 'train' or 'test', got {split!r}")
    allowed = [(c, s) for c in COLOURS for s in SHAPES if ((c, s) in HELD_OUT_PAIRS) == (split == "test")]
    if pairs is not None:
        allowed = [p for p in allowed if p in set(pairs)]
    sizes, positions = list(SIZES), list(POSITIONS)
    kinds, weights = list(VARIANT_WEIGHTS), np.array(list(VARIANT_WEIGHTS.values()))
    scenes: list[Scene] = []

    def pick(options):
        return options[rng.integers(len(options))]

    while len(scenes) < n:
        c, s = pick(allowed)
        size = pick(sizes)
        base = Scene(c, s, size, pick(positions), int(rng.integers(1, MAX_COUNT[size] + 1)))
        scenes.append(base)
        for _ in range(min(group, n - len(scenes) + 1) - 1):
            kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
            v = base
            if kind == "shape":
                others = [sh for cc, sh in allowed if cc == c and sh != s]
                v = replace(base, shape=pick(others)) if others else base
            elif kind == "colour":
                others = [cc for cc, sh in allowed if sh == s and cc != c]
                v = replace(base, colour=pick(others)) if others else base
            elif kind == "count":
                v = replace(base, count=pick([k for k in range(1, MAX_COUNT[size] + 1) if k != base.count]))
            elif kind == "position":
                v = replace(base, position=pick([p for p in positions if p != base.position]))
            else:
                other = pick([z for z in sizes if z != size])
                v = replace(base, size=other, count=min(base.count, MAX_COUNT[other]))
            scenes.append(v)
    return scenes


_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5


def _mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = _XX - cx, _YY - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.82 * r
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * r
    if shape == "triangle":  # apex up (y grows downwards)
        return (dy >= -r) & (dy <= 0.8 * r) & (np.abs(dx) <= (dy + r) / 1.8)
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "cross":
        arm = 0.34 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    raise ParameterError(f"unknown shape {shape!r}")


def render(scene: Scene, rng: np.random.Generator, *, centres: list | None = None) -> np.ndarray:
    """The scene as an (IMAGE_SIZE, IMAGE_SIZE, 3) uint8 RGB image; the object centres (x, y pixels)
    are appended to ``centres`` when given."""
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    img[:] = rng.uniform(10, 45, 3)
    r = SIZES[scene.size] * rng.uniform(0.9, 1.1)
    x0, x1, y0, y1 = POSITIONS[scene.position]
    lo_x, hi_x, lo_y, hi_y = x0 + r + 0.5, max(x0 + r + 0.5, x1 - r - 0.5), y0 + r + 0.5, max(y0 + r + 0.5, y1 - r - 0.5)
    if centres is None:
        centres = []
    for _ in range(scene.count):
        for _try in range(40):  # keep objects apart so that they can be counted
            c = (float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y)))
            if all((c[0] - a) ** 2 + (c[1] - b) ** 2 > (2 * r + 1.0) ** 2 for a, b in centres):
                break
        centres.append(c)
    base = np.array(COLOURS[scene.colour], np.float32)
    for cx, cy in centres:
        img[_mask(scene.shape, cx, cy, r)] = np.clip(base + rng.normal(0, 10, 3), 0, 255)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


IMAGE_CHANNELS = 4  # R, G, B and a colour-blind foreground channel


def to_tensor_layout(images: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, 4, H, W) float32, roughly zero-mean unit-variance: the RGB
    channels, and how far each pixel is from the image's background colour (the median of a
    sparse grid of its pixels),
    the largest difference over R, G and B. That channel draws every object's silhouette the same
    whatever its colour: a network can learn "triangle" once rather than once per colour, which
    is what lets it name shapes in colours it never saw them in."""
    x = images.astype(np.float32) / 255.0
    background = np.median(x[:, ::3, ::3].reshape(len(x), -1, 3), axis=1)[:, None, None, :]
    fg = np.abs(x - background).max(axis=3, keepdims=True)
    out = np.concatenate([(x - 0.3) / 0.3, (fg - 0.15) / 0.3], axis=3)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def make_batch(rng: np.random.Generator, n: int, split: str, *, templates=None, group: int = 1):
    """n image-caption pairs: (images (n, H, W, 3) uint8, captions list[str], scenes list[Scene]);
    ``group``: hard-negative groups, see :func:`sample_scenes`."""
    scenes = sample_scenes(rng, n, split, group=group)
    if templates is None:
        templates = TRAIN_TEMPLATES if split == "train" else TEST_TEMPLATES
    drawn = []
    for s in scenes:
        centres: list = []
        drawn.append((render(s, rng, centres=centres), replace(s, centres=tuple(centres))))
    images, scenes = np.stack([d[0] for d in drawn]), [d[1] for d in drawn]
    captions = [caption(s, templates[rng.integers(len(templates))]) for s in scenes]
    return images, captions, scenes


def scene_label(scene: Scene, task: str) -> str:
    """The label of a scene in a zero-shot task (see :data:`ZERO_SHOT_TASKS`)."""
    if task == "colour and shape":
        return f"{scene.colour} {scene.shape}"
    if task == "colour":
        return scene.colour
    if task == "shape":
        return scene.shape
    if task == "count":
        return COUNTS[scene.count][1]
    if task == "position":
        return scene.position
    raise ParameterError(f"unknown zero-shot task {task!r}; choose one of {', '.join(ZERO_SHOT_TASKS)}")


def parse_caption(text: str) -> Scene | None:
    """The scene a free-text query describes, if it names a colour, a shape, a size, a position and
    (by a number word, or a singular noun for one) a count; else None. For marking retrieved
    images right or wrong with :meth:`Scene.shows`."""
    t = " " + " ".join(re.findall(r"[a-z]+", text.lower())) + " "
    words = t.split()
    colour = next((c for c in COLOURS if c in words), None)
    size = next((z for z in SIZES if z in words), None)
    position = next((p for p in POSITIONS if f" {p} " in t), None)
    shape = plural = None
    for s in SHAPES:
        if s + "s" in words:
            shape, plural = s, True
        elif s in words:
            shape, plural = s, False
    numbers = {"one": 1, "two": 2, "three": 3}
    count = next((numbers[w] for w in words if w in numbers), None)
    if count is None and plural is False:
        count = 1
    if None in (colour, size, position, shape, count):
        return None
    return Scene(colour, shape, size, position, count)
