"""Scene sampling: the vocabulary, the config and each video's layout.

Coloured shapes (`COLOURS` x `SHAPES`) on a textured background perform
eight actions (`ACTIONS`).  Every event is `(colour, shape, action,
start_time, end_time)` plus a caption.  A layout (`sample_layout`: a
`SyntheticVideo` without pixels) holds the events, the objects, the
per-frame labels and the HD saliency; `render.render_frames` draws it and
`embeddings.scene_embeddings` describes it.  Same config + seed = same data:
a video's layout draws from `default_rng([seed, 0])`, splits use disjoint
derived seeds.

Scene design (the tests check it):
  * Every event has its own object, a colour-shape pair unique in its video
    (so captions are unambiguous within a video), in its own cell of a 3 x 3
    grid, static outside its event; "appear" objects are invisible before
    their event and "disappear" objects after it.
  * Actions have constant local evidence, so long events stay visible
    (`object_states`): moving objects travel at `move_speed` px/s and wrap
    around horizontally; spin is `spin_speed` deg/s; blink toggles
    visibility every half `blink_period`; grow / shrink are sawtooth pulses
    (the size ramps to `grow_factor` / `shrink_factor` times the base size
    over `pulse_period`, then snaps back).  Appear / disappear are one-off
    transitions (fade and scale) and their lengths are capped at
    `transition_max_fraction` of the video.
  * Event lengths are log-uniform in [`min_event_fraction`,
    `max_event_fraction`] of the video (at least `min_event_seconds`);
    events of the same action never overlap, events of different actions
    overlap freely.
  * Distractors (`num_distractors`) drift sinusoidally by at most
    `drift_amplitude` px (a few tenths of a px per frame, far slower than
    "move").
  * Zero-shot: `held_out_combinations` are seeded (shape, action) pairs
    that never occur in the train split, while their shape and action do;
    in val / test an event is forced to be one with probability
    `held_out_boost`.
  * Frame labels (AS): where events overlap the later-starting one wins
    (events are sorted by start time: the reference's "later segments
    overwrite").  HD saliency: `saliency_for_event`.

Time / index rule: stored frame i shows time i / fps; an event covers frames
`round(start_time * fps)` .. `min(round(end_time * fps), n - 1)`.  Event times
are sampled with 0.01 s resolution and never fall half-way between two frames,
so every rounding convention agrees.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from unloc_tf.data import records

# ---------------------------------------------------------------------------
# Vocabulary.
# ---------------------------------------------------------------------------
ACTIONS: Tuple[str, ...] = (
    "appearing",
    "disappearing",
    "moving left",
    "moving right",
    "growing",
    "shrinking",
    "spinning",
    "blinking",
)
APPEAR, DISAPPEAR, MOVE_LEFT, MOVE_RIGHT, GROW, SHRINK, SPIN, BLINK = ACTIONS
COLOURS: Tuple[str, ...] = ("red", "green", "blue", "yellow", "white", "purple")
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "cross")
SPLITS: Tuple[str, ...] = ("train", "val", "test")

# Caption templates per action; {c} = colour, {s} = shape.
CAPTION_TEMPLATES: Dict[str, Tuple[str, ...]] = {
    APPEAR: ("the {c} {s} appears", "a {c} {s} fades into view",
             "a {c} {s} shows up"),
    DISAPPEAR: ("the {c} {s} disappears", "the {c} {s} fades away",
                "the {c} {s} vanishes"),
    MOVE_LEFT: ("the {c} {s} moves to the left", "a {c} {s} slides leftwards",
                "the {c} {s} travels left"),
    MOVE_RIGHT: ("the {c} {s} moves to the right",
                 "a {c} {s} slides rightwards", "the {c} {s} travels right"),
    GROW: ("the {c} {s} grows bigger", "a {c} {s} keeps getting larger",
           "the {c} {s} expands"),
    SHRINK: ("the {c} {s} shrinks", "the {c} {s} gets smaller",
             "a {c} {s} contracts"),
    SPIN: ("the {c} {s} spins around", "a {c} {s} rotates",
           "the {c} {s} turns in circles"),
    BLINK: ("a {c} {s} starts to blink", "the {c} {s} flashes on and off",
            "the {c} {s} blinks"),
}

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# Query ids (HD example_id): split * 10**7 + video index * 16 + event index.
_QID_SPLIT = 10_000_000
_QID_VIDEO = 16


# ---------------------------------------------------------------------------
# Configuration and data classes.
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Everything that defines the benchmark (same config + seed = same data).

  Attributes:
    frame_size: frames are frame_size x frame_size RGB.
    fps: stored frames per second.
    min_duration, max_duration: video length in seconds (uniform; a whole
      number of frames).
    num_train, num_val, num_test: videos per split.
    seed: master seed; splits use disjoint derived seeds.
    min_events, max_events: events per video (uniform, inclusive).
    num_distractors: (min, max) distractor objects per video (inclusive).
    min_event_fraction, max_event_fraction: event length as a fraction of
      the video, log-uniform.
    min_event_seconds: lower bound of an event's length in seconds.
    transition_max_fraction: cap of the length fraction of appear/disappear.
    object_size: (min, max) base diameter of an object in pixels.
    move_speed: (min, max) px/s of "moving left/right".
    spin_speed: (min, max) deg/s of "spinning" (direction random).
    blink_period: (min, max) s of one on+off cycle of "blinking".
    pulse_period: (min, max) s of one sawtooth ramp of grow/shrink.
    grow_factor, shrink_factor: size at the end of a grow/shrink ramp
      relative to the base size.
    drift_amplitude: (min, max) px of the distractors' sinusoidal drift.
    drift_period: (min, max) s of one drift cycle.
    texture_amplitude: amplitude (0..255 levels) of the static background
      texture.
    noise_amplitude: per-frame pixel noise, uniform integers in [-a, a].
    num_held_out: zero-shot (shape, action) combinations held out of train.
    held_out_boost: in val/test, probability that an event is forced to be a
      held-out combination (so every held-out class is evaluated).
    secs_per_clip, num_annotators, annotator_noise: HD saliency (clip
      length, raters, std of the per-rating Gaussian noise).
    cls_clip_seconds: (min, max) length of a CLS clip in seconds.
    hd_max_queries: HD queries (records) per video, a seeded random choice
      of its events; None = one per event.  The default 1 follows
      QVHighlights (about one query per video) and keeps the HD shards,
      which repeat the frames per query, small.
  """

  frame_size: int = 64
  fps: float = 5.0
  min_duration: float = 20.0
  max_duration: float = 60.0
  num_train: int = 240
  num_val: int = 40
  num_test: int = 40
  seed: int = 0
  min_events: int = 2
  max_events: int = 5
  num_distractors: Tuple[int, int] = (0, 2)
  min_event_fraction: float = 0.02
  max_event_fraction: float = 0.8
  min_event_seconds: float = 1.0
  transition_max_fraction: float = 0.25
  object_size: Tuple[float, float] = (13.0, 17.0)
  move_speed: Tuple[float, float] = (7.0, 12.0)
  spin_speed: Tuple[float, float] = (60.0, 120.0)
  blink_period: Tuple[float, float] = (0.8, 1.2)
  pulse_period: Tuple[float, float] = (1.6, 3.0)
  grow_factor: float = 1.5
  shrink_factor: float = 0.5
  drift_amplitude: Tuple[float, float] = (0.5, 2.0)
  drift_period: Tuple[float, float] = (12.0, 30.0)
  texture_amplitude: float = 10.0
  noise_amplitude: int = 3
  num_held_out: int = 6
  held_out_boost: float = 0.25
  secs_per_clip: float = 2.0
  num_annotators: int = 3
  annotator_noise: float = 0.5
  cls_clip_seconds: Tuple[float, float] = (2.0, 10.0)
  hd_max_queries: Optional[int] = 1

  def __post_init__(self):
    if self.frame_size < 32:
      raise ValueError(f"frame_size must be >= 32, got {self.frame_size}")
    if not 0 < self.min_duration <= self.max_duration:
      raise ValueError("need 0 < min_duration <= max_duration")
    if not 1 <= self.min_events <= self.max_events < _QID_VIDEO:
      raise ValueError(f"need 1 <= min_events <= max_events < {_QID_VIDEO}")
    if self.max_events + self.num_distractors[1] > len(COLOURS) * len(SHAPES):
      raise ValueError("more objects than colour-shape pairs")
    if not 0 < self.min_event_fraction <= self.max_event_fraction <= 1:
      raise ValueError("need 0 < min_event_fraction <= max_event_fraction <= 1")
    if self.min_event_seconds * 2 > self.min_duration:
      raise ValueError("min_event_seconds too long for min_duration")
    if not 0 <= self.num_held_out <= len(ACTIONS):
      raise ValueError(f"num_held_out must be in [0, {len(ACTIONS)}]")

  def num_videos(self, split: str) -> int:
    return {"train": self.num_train, "val": self.num_val,
            "test": self.num_test}[split]


@dataclasses.dataclass
class Event:
  """One annotated event.

  Attributes:
    colour, shape: the object that performs it (unique in its video).
    action: one of `ACTIONS`.
    start_time, end_time: seconds (0.01 s resolution), end > start.
    caption: MR caption / HD query, unique within the video.
    query_id: integer id of the caption (HD `example_id`, QVH `qid`).
  """

  colour: str
  shape: str
  action: str
  start_time: float
  end_time: float
  caption: str = ""
  query_id: int = -1

  @property
  def label(self) -> int:
    """Closed-set TAL / AS class index (into `ACTIONS`)."""
    return ACTIONS.index(self.action)

  @property
  def zero_shot_name(self) -> str:
    """Compositional class name, e.g. "circle moving left"."""
    return compositional_name(self.shape, self.action)

  @property
  def zero_shot_label(self) -> int:
    """Index into `compositional_classes()`."""
    return compositional_index(self.shape, self.action)

  def start_index(self, fps: float) -> int:
    return _frame_index(self.start_time, fps)

  def end_index(self, fps: float, num_frames: int) -> int:
    """Last stored frame of the event (inclusive)."""
    return min(_frame_index(self.end_time, fps), num_frames - 1)


@dataclasses.dataclass
class SceneObject:
  """One rendered object.

  Attributes:
    colour, shape: appearance.
    x, y: home position of the centre in pixels (x right, y down).
    size: base diameter in pixels.
    angle: base orientation in degrees (direction of the marker dot).
    event: index into `SyntheticVideo.events`, or None for a distractor.
    rate: action parameter: px/s (move), signed deg/s (spin), period in s
      (blink, grow, shrink); unused otherwise.
    drift: distractor drift (amp_x, amp_y, period_s, phase_rad).
  """

  colour: str
  shape: str
  x: float
  y: float
  size: float
  angle: float
  event: Optional[int] = None
  rate: float = 0.0
  drift: Tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.0)


@dataclasses.dataclass
class SyntheticVideo:
  """A generated video and its annotations.

  Attributes:
    video_id: unique id ("syn_<split>_<index>").
    frames: uint8 [n, H, W, 3], or None for a layout (`sample_layout`).
    fps: stored frames per second.
    duration: seconds, n / fps.
    events: sorted by start time.
    frame_labels: int32 [n], action index per frame, -1 = background.
    objects: every rendered object (event objects and distractors).
    saliency: HD saliency of each event (aligned with `events`).
    seed: the seed the video was generated from.
    background: mean RGB of the background.
    hd_order: a seeded permutation of the event indices; HD uses its first
      `hd_max_queries` events.
  """

  video_id: str
  frames: Optional[np.ndarray]
  fps: float
  duration: float
  events: List[Event]
  frame_labels: np.ndarray
  objects: List[SceneObject] = dataclasses.field(default_factory=list)
  saliency: List[records.Saliency] = dataclasses.field(default_factory=list)
  seed: int = 0
  background: Tuple[float, ...] = ()
  hd_order: List[int] = dataclasses.field(default_factory=list)
  _jpeg: Optional[Tuple[int, List[bytes]]] = dataclasses.field(
      default=None, repr=False, compare=False)

  @property
  def num_frames(self) -> int:
    return int(self.frame_labels.shape[0])

  @property
  def secs_per_timestep(self) -> float:
    return 1.0 / self.fps

  @property
  def num_distractors(self) -> int:
    return sum(o.event is None for o in self.objects)


# ---------------------------------------------------------------------------
# Class lists.
# ---------------------------------------------------------------------------
def compositional_name(shape: str, action: str) -> str:
  return f"{shape} {action}"


def compositional_classes() -> Tuple[str, ...]:
  """Zero-shot class names, shape-major: index = shape * 8 + action."""
  return tuple(compositional_name(s, a) for s in SHAPES for a in ACTIONS)


def compositional_index(shape: str, action: str) -> int:
  return SHAPES.index(shape) * len(ACTIONS) + ACTIONS.index(action)


def held_out_combinations(config: SyntheticConfig) -> Tuple[Tuple[str, str],
                                                            ...]:
  """Seeded (shape, action) pairs absent from the train split.

  At most one per action and ceil(num_held_out / #shapes) per shape, so every
  shape and every action still occurs in train with another partner.

  Returns:
    `num_held_out` (shape, action) pairs in `compositional_classes()` order.
  """
  rng = np.random.default_rng([config.seed, 9173])
  per_shape = math.ceil(config.num_held_out / len(SHAPES))
  combos = [(s, a) for s in SHAPES for a in ACTIONS]
  order = rng.permutation(len(combos))
  chosen: List[Tuple[str, str]] = []
  for i in order:
    if len(chosen) == config.num_held_out:
      break
    s, a = combos[i]
    if any(a == c[1] for c in chosen):
      continue
    if sum(s == c[0] for c in chosen) >= per_shape:
      continue
    chosen.append((s, a))
  return tuple(sorted(chosen, key=lambda c: compositional_index(*c)))


# ---------------------------------------------------------------------------
# Layout sampling (no pixels).
# ---------------------------------------------------------------------------
def _frame_index(t: float, fps: float) -> int:
  return int(math.floor(t * fps + 0.5))


def _snap_time(t: float, fps: float) -> float:
  """Rounds to 0.01 s, nudged off the half-frame points."""
  t = round(t, 2)
  for _ in range(3):
    frac = (t * fps) % 1.0
    if abs(frac - 0.5) > 1e-3:
      break
    t = round(t + 0.01, 2)
  return t


def _split_seed(config: SyntheticConfig, split: str, index: int) -> int:
  ss = np.random.SeedSequence(config.seed,
                              spawn_key=(_SPLIT_CODES[split], index))
  return int(ss.generate_state(1, np.uint32)[0])


def _sample_events(rng: np.random.Generator, duration: float,
                   config: SyntheticConfig, split: Optional[str]
                   ) -> List[Event]:
  """Samples actions and spans (colour/shape assigned later)."""
  fps = config.fps
  held = held_out_combinations(config) if split is not None else ()
  boost = config.held_out_boost if split in ("val", "test") else 0.0
  k = int(rng.integers(config.min_events, config.max_events + 1))
  events: List[Event] = []
  spans: List[Tuple[str, int, int]] = []
  lo = math.log(config.min_event_fraction)
  for _ in range(k):
    forced_shape = ""
    if held and rng.random() < boost:
      forced_shape, action = held[int(rng.integers(len(held)))]
    else:
      action = ACTIONS[int(rng.integers(len(ACTIONS)))]
    hi_frac = config.max_event_fraction
    if action in (APPEAR, DISAPPEAR):
      hi_frac = min(hi_frac, config.transition_max_fraction)
    hi = math.log(max(hi_frac, config.min_event_fraction))
    for _attempt in range(20):
      length = max(math.exp(rng.uniform(lo, hi)) * duration,
                   config.min_event_seconds)
      length = min(length, duration)
      start = _snap_time(rng.uniform(0.0, duration - length), fps)
      end = _snap_time(min(start + length, duration), fps)
      if end > duration:
        end = _snap_time(duration - 0.01, fps)
      si, ei = _frame_index(start, fps), _frame_index(end, fps)
      if ei - si < 2:
        continue
      if any(a == action and si <= e2 and s2 <= ei for a, s2, e2 in spans):
        continue
      spans.append((action, si, ei))
      events.append(Event("", forced_shape, action, start, end))
      break
  events.sort(key=lambda e: (e.start_time, e.end_time))
  return events


def _base_angle(rng: np.random.Generator) -> float:
  """Resting orientation: a multiple of 30 degrees (keeps the mask cache
  small; spinning objects still take every angle)."""
  return float(30 * rng.integers(12))


def _assign_objects(rng: np.random.Generator, events: List[Event],
                    config: SyntheticConfig, split: Optional[str]
                    ) -> List[SceneObject]:
  """Gives every event a unique colour-shape object; adds distractors."""
  held = set(held_out_combinations(config)) if split == "train" else set()
  used: set = set()
  size = config.frame_size
  num_d = int(rng.integers(config.num_distractors[0],
                           config.num_distractors[1] + 1))
  num_obj = len(events) + num_d
  cell = size / 3.0
  cells = rng.permutation(9)
  objects: List[SceneObject] = []

  def position(i: int, diameter: float) -> Tuple[float, float]:
    if num_obj <= 9:
      cx = (cells[i] % 3 + 0.5) * cell
      cy = (cells[i] // 3 + 0.5) * cell
      j = max(0.0, min(3.0, (cell - diameter) / 2))
      return (float(cx + rng.uniform(-j, j)), float(cy + rng.uniform(-j, j)))
    m = diameter / 2 + 1
    return (float(rng.uniform(m, size - m)), float(rng.uniform(m, size - m)))

  for k, ev in enumerate(events):
    if ev.shape:
      shapes = [ev.shape]
    else:
      shapes = [s for s in SHAPES if (s, ev.action) not in held]
    pairs = [(c, s) for s in shapes for c in COLOURS if (c, s) not in used]
    if not pairs:  # a forced shape ran out of colours: any allowed pair
      pairs = [(c, s) for s in SHAPES for c in COLOURS
               if (c, s) not in used and (s, ev.action) not in held]
    c, s = pairs[int(rng.integers(len(pairs)))]
    used.add((c, s))
    ev.colour, ev.shape = c, s
    diameter = rng.uniform(*config.object_size)
    x, y = position(k, diameter)
    rate = 0.0
    if ev.action in (MOVE_LEFT, MOVE_RIGHT):
      rate = rng.uniform(*config.move_speed)
    elif ev.action == SPIN:
      rate = rng.uniform(*config.spin_speed) * rng.choice([-1.0, 1.0])
    elif ev.action == BLINK:
      rate = rng.uniform(*config.blink_period)
    elif ev.action in (GROW, SHRINK):
      rate = min(rng.uniform(*config.pulse_period),
                 ev.end_time - ev.start_time)
    objects.append(SceneObject(c, s, x, y, diameter, _base_angle(rng),
                               event=k, rate=float(rate)))
  free = [(c, s) for s in SHAPES for c in COLOURS if (c, s) not in used]
  for i in range(num_d):
    c, s = free.pop(int(rng.integers(len(free))))
    diameter = rng.uniform(*config.object_size)
    x, y = position(len(events) + i, diameter)
    amp = rng.uniform(*config.drift_amplitude)
    theta = rng.uniform(0, 2 * math.pi)
    drift = (amp * math.cos(theta), amp * math.sin(theta),
             rng.uniform(*config.drift_period), rng.uniform(0, 2 * math.pi))
    # Distractors are drawn first (under the event objects).
    objects.insert(i, SceneObject(c, s, x, y, diameter, _base_angle(rng),
                                  event=None, drift=drift))
  return objects


def _assign_captions(rng: np.random.Generator, events: List[Event]) -> None:
  """One caption per event, unique in the video (another template, else an
  explicit error: with unique colour-shape objects this cannot happen)."""
  seen: set = set()
  for ev in events:
    templates = CAPTION_TEMPLATES[ev.action]
    order = rng.permutation(len(templates))
    for i in order:
      caption = templates[i].format(c=ev.colour, s=ev.shape)
      if caption not in seen:
        break
    else:
      raise AssertionError(f"duplicate caption {caption!r}")
    seen.add(caption)
    ev.caption = caption


def frame_labels_from_events(events: Sequence[Event], num_frames: int,
                             fps: float) -> np.ndarray:
  """Per-frame action index, later-starting events overwrite earlier ones.

  Returns:
    int32 [num_frames], -1 = background.
  """
  labels = np.full([num_frames], -1, np.int32)
  for ev in sorted(events, key=lambda e: (e.start_time, e.end_time)):
    labels[ev.start_index(fps):ev.end_index(fps, num_frames) + 1] = ev.label
  return labels


def saliency_for_event(rng: np.random.Generator, event: Event,
                       duration: float, config: SyntheticConfig
                       ) -> records.Saliency:
  """QVHighlights-style ratings of the clips that touch the event.

  Score of annotator a for clip j = clip(round(4 * overlap_j + bias_a +
  noise), 0, 4), overlap_j = fraction of the clip inside the event.

  Returns:
    `records.Saliency` with clip_index [R] and float32 scores [R, A].
  """
  spc = config.secs_per_clip
  num_clips = int(math.ceil(duration / spc - 1e-9))
  first = int(math.floor(event.start_time / spc))
  last = min(int(math.ceil(event.end_time / spc)) - 1, num_clips - 1)
  clip_ids = list(range(first, max(first, last) + 1))
  bias = rng.uniform(-0.4, 0.4, size=[config.num_annotators])
  scores = np.zeros([len(clip_ids), config.num_annotators], np.float32)
  for r, j in enumerate(clip_ids):
    c0, c1 = j * spc, min((j + 1) * spc, duration)
    overlap = max(0.0, min(c1, event.end_time) - max(c0, event.start_time))
    frac = overlap / max(c1 - c0, 1e-6)
    noisy = 4.0 * frac + bias + rng.normal(0.0, config.annotator_noise,
                                           size=bias.shape)
    scores[r] = np.clip(np.round(noisy), 0, 4)
  return records.Saliency(clip_index=clip_ids, scores=scores,
                          secs_per_clip=spc)


def sample_layout(video_id: str, seed: int,
                  config: SyntheticConfig = SyntheticConfig(),
                  split: Optional[str] = None,
                  index: int = 0) -> SyntheticVideo:
  """Samples a video's events, objects and labels without rendering pixels.

  `render.generate_video` with the same arguments renders exactly this
  layout.

  Args:
    video_id: the id.
    seed: the video's seed.
    config: the benchmark config.
    split: "train" excludes the held-out zero-shot combinations; "val" /
      "test" force held-out combinations with probability
      `config.held_out_boost`; None = no zero-shot constraint.
    index: position in the split (only used for the query ids).

  Returns:
    A `SyntheticVideo` with `frames=None`.
  """
  if split is not None and split not in _SPLIT_CODES:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  rng = np.random.default_rng([seed, 0])
  fps = config.fps
  n = int(round(rng.uniform(config.min_duration, config.max_duration) * fps))
  n = max(n, 2)
  duration = n / fps
  events = _sample_events(rng, duration, config, split)
  objects = _assign_objects(rng, events, config, split)
  _assign_captions(rng, events)
  base = _SPLIT_CODES.get(split, 0) * _QID_SPLIT + index * _QID_VIDEO
  for k, ev in enumerate(events):
    ev.query_id = base + k
  saliency = [saliency_for_event(rng, ev, duration, config) for ev in events]
  grey = rng.uniform(25, 70)
  background = tuple(float(grey + rng.uniform(-8, 8)) for _ in range(3))
  hd_order = [int(i) for i in rng.permutation(len(events))]
  return SyntheticVideo(hd_order=hd_order,
      video_id=video_id, frames=None, fps=fps, duration=duration,
      events=events, frame_labels=frame_labels_from_events(events, n, fps),
      objects=objects, saliency=saliency, seed=int(seed),
      background=background)


def _split_items(split: str, config: SyntheticConfig
                 ) -> Iterator[Tuple[str, int, int]]:
  if split not in _SPLIT_CODES:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  for i in range(config.num_videos(split)):
    yield f"syn_{split}_{i:05d}", _split_seed(config, split, i), i


def sample_split(split: str, config: SyntheticConfig = SyntheticConfig()
                 ) -> Iterator[SyntheticVideo]:
  """The layouts of a split (`render.generate_split` renders them).

  Video i of a split is "syn_<split>_<i:05d>", its seed derived from
  (config.seed, split, i).
  """
  for vid, seed, i in _split_items(split, config):
    yield sample_layout(vid, seed, config, split=split, index=i)


# ---------------------------------------------------------------------------
# Scene dynamics (shared by the renderer and the scene embeddings).
# ---------------------------------------------------------------------------
def object_states(obj: SceneObject, events: Sequence[Event], t: np.ndarray,
                  width: int, config: SyntheticConfig):
  """The object's per-frame state at times t (seconds, float [n]).

  `width` is the frame width: "moving left/right" wraps around it.

  Returns:
    (x, y, size, angle, opacity), each float [n] (pixels, degrees, 0..1).
  """
  n = t.shape[0]
  x = np.full([n], obj.x)
  y = np.full([n], obj.y)
  size = np.full([n], obj.size)
  angle = np.full([n], obj.angle)
  opacity = np.ones([n])
  if obj.event is None:
    ax, ay, period, phase = obj.drift
    w = np.sin(2 * math.pi * t / period + phase)
    return x + ax * w, y + ay * w, size, angle, opacity
  ev = events[obj.event]
  length = ev.end_time - ev.start_time
  tau = np.clip(t - ev.start_time, 0.0, length)
  active = (t >= ev.start_time) & (t <= ev.end_time)
  progress = tau / length
  if ev.action == APPEAR:
    opacity = progress
    size = obj.size * (0.3 + 0.7 * progress)
  elif ev.action == DISAPPEAR:
    opacity = 1.0 - progress
    size = obj.size * (1.0 - 0.7 * progress)
  elif ev.action in (MOVE_LEFT, MOVE_RIGHT):
    sign = -1.0 if ev.action == MOVE_LEFT else 1.0
    x = np.mod(obj.x + sign * obj.rate * tau, width)
  elif ev.action in (GROW, SHRINK):
    phase = np.where(active, np.mod(tau, obj.rate) / obj.rate, 0.0)
    # The last ramp of an event ends at the event end, not after it.
    factor = config.grow_factor if ev.action == GROW else config.shrink_factor
    size = obj.size * (1.0 + (factor - 1.0) * phase)
  elif ev.action == SPIN:
    angle = obj.angle + obj.rate * tau
  elif ev.action == BLINK:
    on = np.mod(tau, obj.rate) < obj.rate / 2
    opacity = np.where(active & ~on, 0.0, 1.0)
  return x, y, size, angle, opacity

