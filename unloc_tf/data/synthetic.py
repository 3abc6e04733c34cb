"""A built-in synthetic benchmark: seeded, procedurally rendered videos.

Coloured shapes on a textured background perform eight actions (appear,
disappear, move left, move right, grow, shrink, spin, blink).  Every event is
`(colour, shape, action, start_time, end_time)` plus a caption, and one
generator yields the data of every task:

  * TAL (closed set): class = action, `ACTIONS` order; zero-shot TAL: class =
    f"{shape} {action}" (`compositional_classes()` order) with a seeded set of
    held-out (shape, action) combinations that never occur in the train split
    (`held_out_combinations`), while their shape and action do.
  * MR: one caption per event, e.g. "the red circle moves to the left"; every
    event has its own object (a colour-shape pair unique in its video), so
    captions are unambiguous within a video.
  * AS: per-frame labels; where events overlap the later-starting one wins
    (events are kept sorted by start time, so this is the reference's "later
    segments overwrite").
  * HD: records per (video, query): the query is an event caption, the
    event's span the relevant window, with QVHighlights-style saliency (2 s
    clips, 3 annotators, integer scores 0..4 from the clip's overlap with the
    event plus seeded annotator noise, only for the clips that touch the
    window).  `hd_max_queries` (default 1, as QVHighlights has about one
    query per video) seeded-random events per video become queries.
  * CLS: Kinetics-style trimmed clips: one clip per event, the event's span
    resized to `cls_clip_seconds` (centre crop of long events, symmetric
    context around short ones).  Labels: the event's action plus every other
    action whose events cover at least half of the clip's frames
    (multi-label, usually one).

Design of the scene (documented, the tests check it):
  * Each event object sits in its own cell of a 3 x 3 grid and is static
    outside its event; "appear" objects are invisible before their event and
    "disappear" objects after it.  Every shape carries a dark marker dot, so a
    rotation is visible on every shape (also the circle).
  * Actions have constant local evidence, so long events stay visible:
    moving objects travel at `move_speed` px/s and wrap around horizontally;
    spin is `spin_speed` deg/s; blink toggles visibility every half
    `blink_period`; grow / shrink are sawtooth pulses (the size ramps to
    `grow_factor` / `shrink_factor` times the base size over `pulse_period`,
    then snaps back).  Appear / disappear are one-off transitions (fade and
    scale) and their lengths are capped at `transition_max_fraction` of the
    video.
  * Event lengths are log-uniform in [`min_event_fraction`,
    `max_event_fraction`] of the video (at least `min_event_seconds`);
    events of the same action never overlap, events of different actions
    overlap freely.
  * Distractors (`num_distractors`) drift sinusoidally by at most
    `drift_amplitude` px (a few tenths of a px per frame, far slower than
    "move"); the background is a static low-frequency texture plus per-frame
    noise.

Output of `write_benchmark` (`tools/make_synthetic.py`):
  <out>/<task>/<split>-0000i-of-0000N.tfrecord for the tasks of `spec.TASKS`
  (TAL/MR/AS: one record per video; HD: per query; CLS: per event clip);
  <out>/temporal_localization_zero_shot/<split>-...: TAL records whose
  label_index indexes `compositional_classes()` (for `class_subset` zero-shot
  splits: the seen / held-out indices are in zero_shot.json); <out>/
  classes.txt (`ACTIONS`), zero_shot.json, summary.json (`statistics` per
  split); optionally videos/<vid>.mp4 and annotations/ in the official
  formats (`write_annotations`), each frame's `scene_embeddings` in the
  records (`state_embeddings=True`), and records without pixels
  (`render=False`).  In every TAL record label_string is the
  compositional name "shape action".

Default size: 240 / 40 / 40 videos of 20-60 s at 5 fps (~63k frames, ~0.8 GB
of records); generation takes ~10-15 s on 2 cores (see the summary's
`seconds`).

Time / index rule: stored frame i shows time i / fps; an event covers frames
`round(start_time * fps)` .. `min(round(end_time * fps), n - 1)`.  Event times
are sampled with 0.01 s resolution and never fall half-way between two frames,
so every rounding convention agrees.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import fractions
import json
import math
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from unloc_tf import spec
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

COLOUR_RGB: Dict[str, Tuple[int, int, int]] = {
    "red": (235, 45, 45),
    "green": (40, 205, 70),
    "blue": (60, 100, 250),
    "yellow": (245, 225, 40),
    "white": (245, 245, 245),
    "purple": (180, 70, 230),
}
MARKER_RGB = (10, 10, 10)

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
_ANET_SUBSET = {"train": "training", "val": "validation", "test": "testing"}
# Query ids (HD example_id): split * 10**7 + video index * 16 + event index.
_QID_SPLIT = 10_000_000
_QID_VIDEO = 16

ZERO_SHOT_TAL_DIR = spec.TAL + "_zero_shot"


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

  def event_object(self, k: int) -> SceneObject:
    """The object performing event k."""
    for o in self.objects:
      if o.event == k:
        return o
    raise KeyError(k)


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

  `generate_video` with the same arguments renders exactly this layout.

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


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------
_MASK_CACHE: Dict[Tuple[str, float, int], Tuple[np.ndarray, np.ndarray,
                                                int]] = {}
_SIZE_STEP = 0.5  # px quantisation of the cached masks
_ANGLE_STEP = 6  # degrees
_SUPERSAMPLE = 3
_MASK_CACHE_LIMIT = 20000
_NOISE_BANK = 8


def _shape_masks(shape: str, size: float, angle: int
                 ) -> Tuple[np.ndarray, np.ndarray, int]:
  """Anti-aliased alpha of the body and of the marker dot.

  Returns:
    (body float32 [b, b], marker float32 [b, b], half) where b = 2 half + 1
    and the centre of the shape is the centre of pixel (half, half).
  """
  key = (shape, size, angle)
  hit = _MASK_CACHE.get(key)
  if hit is not None:
    return hit
  half = int(math.ceil(0.6 * size)) + 1
  b = 2 * half + 1
  ss = _SUPERSAMPLE
  u = (np.arange(b * ss, dtype=np.float32) + 0.5) / ss - half - 0.5
  xx, yy = np.meshgrid(u, u)
  th = math.radians(angle)
  c, s = math.cos(th), math.sin(th)
  xr = c * xx + s * yy  # coordinates in the object's frame
  yr = -s * xx + c * yy
  r = size / 2.0
  if shape == "circle":
    body = xr**2 + yr**2 <= r**2
  elif shape == "square":
    a = 0.85 * r
    body = (np.abs(xr) <= a) & (np.abs(yr) <= a)
  elif shape == "triangle":
    big = 1.1 * r  # circumradius; vertex along +x
    body = np.ones_like(xr, bool)
    for deg in (60.0, 180.0, 300.0):
      t = math.radians(deg)
      body &= xr * math.cos(t) + yr * math.sin(t) <= big / 2
  elif shape == "cross":
    w = 0.34 * r
    body = ((np.abs(xr) <= r) & (np.abs(yr) <= w)) | (
        (np.abs(yr) <= r) & (np.abs(xr) <= w))
  else:
    raise ValueError(f"unknown shape {shape!r}")
  marker = (xr - 0.5 * r)**2 + yr**2 <= (0.26 * r)**2
  marker &= body

  def pool(m):
    return m.reshape(b, ss, b, ss).mean(axis=(1, 3), dtype=np.float32)

  out = (pool(body), pool(marker), half)
  if len(_MASK_CACHE) >= _MASK_CACHE_LIMIT:
    _MASK_CACHE.clear()
  _MASK_CACHE[key] = out
  return out


def _object_states(obj: SceneObject, events: Sequence[Event], t: np.ndarray,
                   width: int, config: SyntheticConfig):
  """Per-frame (x, y, size, angle, opacity), each float [n]."""
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


def _layer(shape: str, size: float, angle: int, colour: str,
           opacity: float) -> Tuple[np.ndarray, np.ndarray, int]:
  """Premultiplied layer of one object state.

  Blending body (colour) then marker (dark) with alphas a, m is
  `out = keep * frame + add` with keep = (1 - a)(1 - m) and
  add = a (1 - m) colour + m marker.

  Returns:
    (keep float32 [b, b, 1], add float32 [b, b, 3], half).
  """
  body, marker, half = _shape_masks(shape, size, angle)
  a = body[..., None] * np.float32(opacity)
  m = marker[..., None] * np.float32(opacity)
  keep = (1.0 - a) * (1.0 - m)
  add = (a * (1.0 - m) * np.asarray(COLOUR_RGB[colour], np.float32)
         + m * np.asarray(MARKER_RGB, np.float32))
  return keep, add, half


def _blend(frame: np.ndarray, keep: np.ndarray, add: np.ndarray, half: int,
           cx: int, cy: int) -> None:
  """Composites a premultiplied layer into frame (float32 [H, W, 3])."""
  h, w = frame.shape[:2]
  b = keep.shape[0]
  x0, y0 = cx - half, cy - half
  if x0 >= 0 and y0 >= 0 and x0 + b <= w and y0 + b <= h:
    region = frame[y0:y0 + b, x0:x0 + b]
    region *= keep
    region += add
    return
  fx0, fy0 = max(x0, 0), max(y0, 0)
  fx1, fy1 = min(x0 + b, w), min(y0 + b, h)
  if fx0 >= fx1 or fy0 >= fy1:
    return
  sl = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
  region = frame[fy0:fy1, fx0:fx1]
  region *= keep[sl]
  region += add[sl]


def _background(video: SyntheticVideo, rng: np.random.Generator,
                config: SyntheticConfig) -> np.ndarray:
  """Static textured background, float32 [H, W, 3]."""
  s = config.frame_size
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
  base = np.asarray(video.background or (45.0, 45.0, 45.0), np.float32)
  img = np.broadcast_to(base, (s, s, 3)).copy()
  for _ in range(3):
    freq = rng.uniform(0.08, 0.35)
    theta = rng.uniform(0, math.pi)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    img += (config.texture_amplitude / 3) * wave[..., None] * tint
  return img


def render_frames(video: SyntheticVideo,
                  config: SyntheticConfig = SyntheticConfig()) -> np.ndarray:
  """Renders the frames of a layout (deterministic in `video.seed`).

  Object states are quantised (size to 0.5 px, angle to 6 degrees, position
  to whole pixels); a frame whose quantised scene equals an earlier frame's
  reuses its composite (the per-frame noise is added afterwards).

  Returns:
    uint8 [n, H, W, 3].
  """
  rng = np.random.default_rng([video.seed, 1])
  s = config.frame_size
  n = video.num_frames
  t = np.arange(n, dtype=np.float64) / video.fps
  background = _background(video, rng, config)
  tracks = []
  for obj in video.objects:
    x, y, size, angle, opacity = _object_states(obj, video.events, t, s,
                                                config)
    qsize = np.maximum(np.round(size / _SIZE_STEP) * _SIZE_STEP, 1.0)
    qangle = (np.round(angle / _ANGLE_STEP).astype(np.int64) * _ANGLE_STEP
              ) % 360
    wraps = obj.event is not None and video.events[obj.event].action in (
        MOVE_LEFT, MOVE_RIGHT)
    tracks.append((
        obj, wraps,
        list(zip(qsize.tolist(), qangle.tolist(),
                 np.round(x).astype(np.int64).tolist(),
                 np.round(y).astype(np.int64).tolist(),
                 np.round(opacity, 3).tolist()))))
  layers: Dict[tuple, Tuple[np.ndarray, np.ndarray, int]] = {}
  seen: Dict[tuple, int] = {}
  a = int(config.noise_amplitude)
  frames = np.empty([n, s, s, 3], np.uint8)
  canvas = np.empty([s, s, 3], np.float32)
  for i in range(n):
    states = tuple(track[i] for _, _, track in tracks)
    j = seen.get(states)
    if j is not None:
      frames[i] = frames[j]
      continue
    seen[states] = i
    canvas[:] = background
    for k, (obj, wraps, _) in enumerate(tracks):
      qs, qa, cx, cy, op = states[k]
      if op <= 0.0:
        continue
      key = (k, qs, qa, op)
      layer = layers.get(key)
      if layer is None:
        layer = layers[key] = _layer(obj.shape, qs, qa, obj.colour, op)
      keep, add, half = layer
      _blend(canvas, keep, add, half, cx, cy)
      if wraps:
        if cx - half < 0:
          _blend(canvas, keep, add, half, cx + s, cy)
        if cx + half >= s:
          _blend(canvas, keep, add, half, cx - s, cy)
    # Round, and keep a margin so the noise below cannot wrap around.
    canvas += 0.5
    np.clip(canvas, a, 255 - a, out=canvas)
    frames[i] = canvas
  if a > 0:
    # Per-frame grey noise, uniform in [-a, a]: a bank of noise images,
    # each frame takes a random one, randomly shifted.
    bank = rng.integers(0, 2 * a + 1, size=[_NOISE_BANK, 2 * s, 2 * s, 1],
                        dtype=np.uint8)
    pick = rng.integers(_NOISE_BANK, size=n)
    dy, dx = rng.integers(s, size=n), rng.integers(s, size=n)
    for i in range(n):
      frames[i] += bank[pick[i], dy[i]:dy[i] + s, dx[i]:dx[i] + s]
    frames -= np.uint8(a)
  return frames


STATE_FEATURES: Tuple[str, ...] = ("opacity", "cos_x", "sin_x", "y", "size",
                                   "cos_angle", "sin_angle")
# Groups of objects the state is summed over: every colour, every shape, all.
STATE_GROUPS: Tuple[str, ...] = COLOURS + SHAPES + ("all",)
STATE_EMBEDDING_DIM = len(STATE_GROUPS) * len(STATE_FEATURES)


def _group_sums(video: SyntheticVideo, per_object, num_features: int
                ) -> np.ndarray:
  """Sums per-object features over every group of `STATE_GROUPS`.

  Args:
    video: the video.
    per_object: fn(obj) -> float [n, num_features].
    num_features: features per object.

  Returns:
    float32 [n, len(STATE_GROUPS) * num_features].
  """
  n = video.num_frames
  out = np.zeros([n, len(STATE_GROUPS), num_features], np.float32)
  for obj in video.objects:
    feats = per_object(obj)
    for group in (obj.colour, obj.shape, "all"):
      out[:, STATE_GROUPS.index(group)] += feats
  return out.reshape(n, -1)


def _frame_times(video: SyntheticVideo) -> np.ndarray:
  return np.arange(video.num_frames, dtype=np.float64) / video.fps


def scene_state_embeddings(video: SyntheticVideo,
                           config: SyntheticConfig = SyntheticConfig()
                           ) -> np.ndarray:
  """What a perfect frozen image tower could say about each frame.

  Each object's `STATE_FEATURES` — opacity, horizontal position on the
  circle (objects moving off one side reappear on the other), vertical
  position and size relative to the frame, orientation, each multiplied by
  the opacity — summed over the objects of every colour, of every shape and
  of the whole frame (`STATE_GROUPS`).  Sums make an action look the same
  whatever object performs it, while the colour and shape groups keep what
  a caption refers to.  `scene_embeddings` (what the records store) adds
  their motion (`scene_motion_embeddings`).

  Returns:
    float32 [n, STATE_EMBEDDING_DIM].
  """
  s = float(config.frame_size)
  t = _frame_times(video)

  def state(obj):
    x, y, size, angle, opacity = _object_states(obj, video.events, t,
                                                config.frame_size, config)
    turn, rad = 2 * math.pi * x / s, np.deg2rad(angle)
    feats = np.stack([np.ones_like(t), np.cos(turn), np.sin(turn), y / s,
                      size / s * 2.0, np.cos(rad), np.sin(rad)], -1)
    return feats * np.broadcast_to(opacity, t.shape)[:, None]

  return _group_sums(video, state, len(STATE_FEATURES))


MOTION_FEATURES: Tuple[str, ...] = ("opacity", "x", "y", "size", "angle")
MOTION_EMBEDDING_DIM = len(STATE_GROUPS) * len(MOTION_FEATURES)


def scene_motion_embeddings(video: SyntheticVideo,
                            config: SyntheticConfig = SyntheticConfig()
                            ) -> np.ndarray:
  """What a perfect frozen motion (optical-flow) stream could say.

  Each object's rate of change per second of its `MOTION_FEATURES`: the
  opacity itself, and, weighted by the opacity, the horizontal position in
  turns of the circle (radians, unwrapped: signed, so left and right differ
  in sign wherever the object is), the vertical position and the size
  relative to the frame (as in the state) and the orientation (radians,
  unwrapped).  Rates are central differences over the neighbouring stored
  frames (one-sided at the ends), summed over `STATE_GROUPS` like the
  state.

  Returns:
    float32 [n, MOTION_EMBEDDING_DIM].
  """
  s = float(config.frame_size)
  t = _frame_times(video)

  def motion(obj):
    if t.shape[0] < 2:
      return np.zeros([t.shape[0], len(MOTION_FEATURES)])
    x, y, size, angle, opacity = _object_states(obj, video.events, t,
                                                config.frame_size, config)
    opacity = np.broadcast_to(opacity, t.shape).astype(np.float64)
    rate = lambda v: np.gradient(np.broadcast_to(v, t.shape), 1 / video.fps)
    turn = np.unwrap(2 * math.pi * np.asarray(x) / s)
    rad = np.unwrap(np.deg2rad(np.broadcast_to(angle, t.shape)))
    return np.stack([
        rate(opacity), opacity * rate(turn), rate(opacity * y / s),
        rate(opacity * size / s * 2.0), opacity * rate(rad)], -1)

  return _group_sums(video, motion, len(MOTION_FEATURES))


# Scales of the two parts of `scene_embeddings`: they give the state and
# its motion comparable norms on the default benchmark (unscaled, the
# static state is several times the motion and the LayerNorms nearly erase
# the motion).
STATE_SCALE = 0.25
MOTION_SCALE = 5.0
SCENE_EMBEDDING_DIM = STATE_EMBEDDING_DIM + MOTION_EMBEDDING_DIM


def scene_embeddings(video: SyntheticVideo,
                     config: SyntheticConfig = SyntheticConfig()
                     ) -> np.ndarray:
  """What a perfect frozen two-stream video encoder could say about a frame.

  The stand-in for the cached features of a pretrained video model (CLIP
  image features in UnLoc; the two-stream I3D / TSP clip features that
  temporal localization methods cache), which this project may not
  download: appearance — `scene_state_embeddings` times `STATE_SCALE` — and
  short-term motion — `scene_motion_embeddings` times `MOTION_SCALE`.  The
  benchmark's actions are changes (moving, spinning, blinking...), which
  one frame's state does not show; the motion part makes each frame's
  evidence local, as appearance is for real actions, and is computed at
  the stored frame rate, so linspace sampling of long videos does not alias
  fast actions (blinking) away.  Nothing in it is specific to an action or
  a label.

  Returns:
    float32 [n, SCENE_EMBEDDING_DIM]: [state * STATE_SCALE,
    motion * MOTION_SCALE].
  """
  return np.concatenate(
      [scene_state_embeddings(video, config) * STATE_SCALE,
       scene_motion_embeddings(video, config) * MOTION_SCALE],
      -1).astype(np.float32)


def generate_video(video_id: str, seed: int,
                   config: SyntheticConfig = SyntheticConfig(),
                   split: Optional[str] = None,
                   index: int = 0) -> SyntheticVideo:
  """Samples and renders one video (see `sample_layout` for the args)."""
  video = sample_layout(video_id, seed, config, split=split, index=index)
  video.frames = render_frames(video, config)
  return video


def _split_items(split: str, config: SyntheticConfig
                 ) -> Iterator[Tuple[str, int, int]]:
  if split not in _SPLIT_CODES:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  for i in range(config.num_videos(split)):
    yield f"syn_{split}_{i:05d}", _split_seed(config, split, i), i


def generate_split(split: str, config: SyntheticConfig = SyntheticConfig(),
                   render: bool = True) -> Iterator[SyntheticVideo]:
  """The videos of a split, deterministic per (config.seed, split).

  Args:
    split: "train", "val" or "test" (disjoint derived seeds).
    config: the benchmark config.
    render: False yields layouts only (`frames=None`), much faster.
  """
  for vid, seed, i in _split_items(split, config):
    if render:
      yield generate_video(vid, seed, config, split=split, index=i)
    else:
      yield sample_layout(vid, seed, config, split=split, index=i)


# ---------------------------------------------------------------------------
# Records.
# ---------------------------------------------------------------------------
def encode_frames(video: SyntheticVideo, quality: int = 90) -> List[bytes]:
  """JPEG bytes of the frames (`records.encode_jpeg`), cached on the video."""
  if video._jpeg is not None and video._jpeg[0] == quality:
    return video._jpeg[1]
  if video.frames is None:
    raise ValueError(f"video {video.video_id} has no frames (a layout)")
  jpeg = records.encode_jpeg(video.frames, quality=quality)
  video._jpeg = (quality, jpeg)
  return jpeg


def _segment(video: SyntheticVideo, ev: Event, label: int,
             text: str) -> records.Segment:
  n = video.num_frames
  return records.Segment(
      start_index=ev.start_index(video.fps),
      end_index=ev.end_index(video.fps, n), label_index=label,
      label_string=text, start_time=ev.start_time, end_time=ev.end_time)


def cls_clip(video: SyntheticVideo, k: int,
             clip_seconds: Tuple[float, float] = (2.0, 10.0)
             ) -> Tuple[int, int, List[int]]:
  """The CLS clip of event k: frames [first, last] and its action labels.

  Returns:
    (first, last, labels): inclusive stored-frame range and sorted action
    indices (event k's action plus actions covering >= half of the clip).
  """
  n, fps = video.num_frames, video.fps
  ev = video.events[k]
  si, ei = ev.start_index(fps), ev.end_index(fps, n)
  lo = max(1, int(round(clip_seconds[0] * fps)))
  hi = max(lo, int(round(clip_seconds[1] * fps)))
  length = min(max(ei - si + 1, lo), hi, n)
  centre = (si + ei) / 2.0
  first = int(round(centre - (length - 1) / 2.0))
  first = min(max(first, 0), n - length)
  last = first + length - 1
  labels = {ev.label}
  for other in video.events:
    covered = np.zeros([length], bool)
    a = max(other.start_index(fps), first)
    b = min(other.end_index(fps, n), last)
    if b >= a:
      covered[a - first:b - first + 1] = True
    if covered.mean() >= 0.5:
      labels.add(other.label)
  return first, last, sorted(labels)


def to_records(video: SyntheticVideo, task: str, jpeg_quality: int = 90,
               zero_shot: bool = False,
               hd_max_queries: Optional[int] = 1,
               cls_clip_seconds: Tuple[float, float] = (2.0, 10.0),
               embeddings: Optional[np.ndarray] = None
               ) -> List[records.VideoRecord]:
  """The records of one video for one task (frames JPEG-encoded once).

  Args:
    video: a rendered video, or a layout (`render=False`: no frames) with
      `embeddings`, whose records then hold the embeddings only.
    task: one of `spec.TASKS`.
    jpeg_quality: JPEG quality of the frames.
    zero_shot: TAL only: label_index into `compositional_classes()` instead
      of `ACTIONS` (label_string is the compositional name either way).
    hd_max_queries: HD: at most this many queries (the first of
      `video.hd_order`); None = one record per event.
    cls_clip_seconds: CLS clip length range (see `cls_clip`).
    embeddings: per-frame embeddings [n, D] stored beside the frames
      (e.g. `scene_state_embeddings`), or None.

  Returns:
    TAL / MR / AS: one record; HD: one per query; CLS: one per event.
  """
  if video.frames is None and video._jpeg is None:
    if embeddings is None:
      raise ValueError(f"video {video.video_id} has neither frames nor"
                       " embeddings")
    jpeg = None
  else:
    jpeg = encode_frames(video, jpeg_quality)
  spt = video.secs_per_timestep
  common = dict(media_id=video.video_id, secs_per_timestep=spt, frames=jpeg,
                duration=video.duration, embeddings=embeddings)
  if task == spec.TAL:
    segs = [
        _segment(video, ev, ev.zero_shot_label if zero_shot else ev.label,
                 ev.zero_shot_name) for ev in video.events
    ]
    return [records.VideoRecord(segments=segs, **common)]
  if task == spec.MR:
    segs = [_segment(video, ev, -1, ev.caption) for ev in video.events]
    return [records.VideoRecord(segments=segs, **common)]
  if task == spec.AS:
    segs = [_segment(video, ev, ev.label, ev.action) for ev in video.events]
    labels = [[int(v)] if v >= 0 else [] for v in video.frame_labels]
    return [records.VideoRecord(segments=segs, frame_labels=labels, **common)]
  if task == spec.HD:
    out = []
    order = video.hd_order or list(range(len(video.events)))
    if hd_max_queries is not None:
      order = order[:hd_max_queries]
    for k in order:
      ev, sal = video.events[k], video.saliency[k]
      out.append(records.VideoRecord(
          segments=[_segment(video, ev, 0, ev.caption)],
          example_id=ev.query_id, saliency=sal, **common))
    return out
  if task == spec.CLS:
    out = []
    for k in range(len(video.events)):
      first, last, labels = cls_clip(video, k, cls_clip_seconds)
      out.append(records.VideoRecord(
          media_id=f"{video.video_id}_clip{k}", secs_per_timestep=spt,
          frames=None if jpeg is None else jpeg[first:last + 1],
          duration=(last - first + 1) * spt,
          embeddings=(None if embeddings is None
                      else embeddings[first:last + 1]),
          clip_labels=labels,
          clip_label_strings=[ACTIONS[i] for i in labels]))
    return out
  raise ValueError(f"unknown task {task!r}; expected one of {spec.TASKS}")


# ---------------------------------------------------------------------------
# Statistics.
# ---------------------------------------------------------------------------
def _overlap_different(events: Sequence[Event]) -> bool:
  for i, a in enumerate(events):
    for b in events[i + 1:]:
      if a.action != b.action and a.start_time < b.end_time and (
          b.start_time < a.end_time):
        return True
  return False


def statistics(videos: Sequence[SyntheticVideo]) -> dict:
  """Dataset statistics (works on layouts and on rendered videos).

  Returns:
    A JSON-serialisable dict: num_videos, num_events, events_per_video
    (mean/min/max), duration (mean/min/max s), event_length_fraction
    (min/max/mean and quantiles 5..95), event_length_seconds (min/max),
    event_length_fraction_bins (share of events per length bin),
    background_frame_fraction, overlap_different_classes_fraction (of
    videos), distractors_per_video (mean / fraction of videos with any),
    class_counts (per action), compositional_counts.
  """
  videos = list(videos)
  fractions_, seconds, per_video = [], [], []
  bg = total = overlap = with_d = distractors = 0
  counts = {a: 0 for a in ACTIONS}
  comp = {c: 0 for c in compositional_classes()}
  durations = []
  for v in videos:
    per_video.append(len(v.events))
    durations.append(v.duration)
    for ev in v.events:
      fractions_.append((ev.end_time - ev.start_time) / v.duration)
      seconds.append(ev.end_time - ev.start_time)
      counts[ev.action] += 1
      comp[ev.zero_shot_name] += 1
    bg += int(np.sum(v.frame_labels < 0))
    total += v.num_frames
    overlap += _overlap_different(v.events)
    distractors += v.num_distractors
    with_d += v.num_distractors > 0
  nv = max(len(videos), 1)
  f = np.asarray(fractions_ or [0.0])
  qs = (5, 25, 50, 75, 95)
  edges = (0.0, 0.05, 0.1, 0.2, 0.4, 1.01)
  hist = np.histogram(f, bins=edges)[0] / max(len(fractions_), 1)
  return {
      "num_videos": len(videos),
      "num_events": len(fractions_),
      "num_frames": total,
      "events_per_video": {
          "mean": float(np.mean(per_video or [0])),
          "min": int(np.min(per_video or [0])),
          "max": int(np.max(per_video or [0])),
      },
      "duration": {
          "mean": float(np.mean(durations or [0])),
          "min": float(np.min(durations or [0])),
          "max": float(np.max(durations or [0])),
      },
      "event_length_fraction": {
          "min": float(f.min()),
          "max": float(f.max()),
          "mean": float(f.mean()),
          **{f"q{q:02d}": float(np.percentile(f, q)) for q in qs},
      },
      "event_length_seconds": {
          "min": float(np.min(seconds or [0])),
          "max": float(np.max(seconds or [0])),
      },
      "event_length_fraction_bins": {
          f"[{edges[i]:.2f},{min(edges[i + 1], 1.0):.2f})": float(hist[i])
          for i in range(len(hist))
      },
      "background_frame_fraction": bg / max(total, 1),
      "overlap_different_classes_fraction": overlap / nv,
      "distractors_per_video": distractors / nv,
      "videos_with_distractors_fraction": with_d / nv,
      "class_counts": counts,
      "compositional_counts": comp,
  }


# ---------------------------------------------------------------------------
# Official-format annotation files and mp4 videos.
# ---------------------------------------------------------------------------
def write_mp4(path: str, frames: np.ndarray, fps: float,
              container_format: Optional[str] = None,
              options: Optional[Dict[str, str]] = None) -> None:
  """Writes uint8 [n, H, W, 3] frames as h264 / yuv420p (PyAV), one thread.

  `container_format` overrides the one the file name implies (e.g.
  "matroska", "h264"); `options` are muxer options (e.g.
  {"movflags": "faststart"}).
  """
  import av  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  rate = fractions.Fraction(fps).limit_denominator(1001)
  with av.open(path, "w", format=container_format,
               options=options or {}) as container:
    stream = container.add_stream("libx264", rate=rate)
    stream.width = frames.shape[2]
    stream.height = frames.shape[1]
    stream.pix_fmt = "yuv420p"
    # Tiny frames: libx264's per-frame overhead dominates, so "ultrafast".
    stream.options = {"crf": "18", "preset": "ultrafast"}
    stream.codec_context.thread_count = 1
    for f in frames:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f),
                                         format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _t(x: float) -> float:
  return round(float(x), 2)


def write_annotations(output_dir: str,
                      videos_by_split: Dict[str, Sequence[SyntheticVideo]],
                      config: SyntheticConfig = SyntheticConfig()
                      ) -> Dict[str, str]:
  """Writes the annotations in the official public formats.

  Files (under `output_dir`):
    activitynet1.3/activity_net.v1-3.min.json: every split (subset
      training / validation / testing), labels = `ACTIONS`.
    activitynet_captions/{split}.json: {vid: {duration, timestamps,
      sentences}}.
    charades_sta/charades_sta_{split}.txt ("vid start end##sentence") and
      charades_sta/Charades_v1_{split}.csv (Charades columns; `length` =
      duration, `actions` = "cNNN start end;...").
    qvhighlights/highlight_{split}_release.jsonl: one line per HD query
      (the same queries as the HD records).
    coin/COIN.json: train as "training", test as "testing" (COIN has no
      validation subset, so val is not in this file).

  Returns:
    {name: path} of the written files.
  """
  paths: Dict[str, str] = {}

  def path(*parts):
    p = os.path.join(output_dir, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p

  anet = {
      "version": "VERSION 1.3",
      "taxonomy": [{"parentName": "Root", "nodeName": a, "nodeId": i + 1,
                    "parentId": 0} for i, a in enumerate(ACTIONS)],
      "database": {},
  }
  coin = {"database": {}}
  size = f"{config.frame_size}x{config.frame_size}"
  for split, videos in videos_by_split.items():
    captions = {}
    sta_lines = []
    csv_rows = []
    qvh_lines = []
    for v in videos:
      anet["database"][v.video_id] = {
          "subset": _ANET_SUBSET[split], "duration": _t(v.duration),
          "resolution": size, "url": "",
          "annotations": [{"segment": [_t(e.start_time), _t(e.end_time)],
                           "label": e.action} for e in v.events],
      }
      captions[v.video_id] = {
          "duration": _t(v.duration),
          "timestamps": [[_t(e.start_time), _t(e.end_time)]
                         for e in v.events],
          "sentences": [e.caption for e in v.events],
      }
      for e in v.events:
        sta_lines.append(
            f"{v.video_id} {e.start_time:.2f} {e.end_time:.2f}##{e.caption}.")
      csv_rows.append({
          "id": v.video_id, "subject": "SYN", "scene": "synthetic",
          "quality": 7, "relevance": 7, "verified": "Yes",
          "script": ". ".join(e.caption for e in v.events),
          "objects": ";".join(sorted({f"{e.colour} {e.shape}"
                                      for e in v.events})),
          "descriptions": ". ".join(e.caption for e in v.events),
          "actions": ";".join(f"c{e.label:03d} {e.start_time:.2f}"
                              f" {e.end_time:.2f}" for e in v.events),
          "length": f"{v.duration:.2f}",
      })
      order = v.hd_order or list(range(len(v.events)))
      if config.hd_max_queries is not None:
        order = order[:config.hd_max_queries]
      for k in order:
        e, sal = v.events[k], v.saliency[k]
        qvh_lines.append({
            "qid": e.query_id, "query": e.caption, "duration": _t(v.duration),
            "vid": v.video_id,
            "relevant_windows": [[_t(e.start_time), _t(e.end_time)]],
            "relevant_clip_ids": [int(c) for c in sal.clip_index],
            "saliency_scores": np.asarray(sal.scores).astype(int).tolist(),
        })
      if split in ("train", "test"):
        coin["database"][v.video_id] = {
            "recipe_type": 0, "class": "synthetic shapes",
            "subset": "training" if split == "train" else "testing",
            "start": 0.0, "end": _t(v.duration), "duration": _t(v.duration),
            "annotation": [{"id": str(e.label),
                            "segment": [_t(e.start_time), _t(e.end_time)],
                            "label": e.action} for e in v.events],
        }
    p = path("activitynet_captions", f"{split}.json")
    with open(p, "w") as f:
      json.dump(captions, f)
    paths[f"activitynet_captions/{split}"] = p
    p = path("charades_sta", f"charades_sta_{split}.txt")
    with open(p, "w") as f:
      f.write("".join(line + "\n" for line in sta_lines))
    paths[f"charades_sta/{split}"] = p
    p = path("charades_sta", f"Charades_v1_{split}.csv")
    with open(p, "w", newline="") as f:
      fields = ["id", "subject", "scene", "quality", "relevance", "verified",
                "script", "objects", "descriptions", "actions", "length"]
      w = csv.DictWriter(f, fieldnames=fields)
      w.writeheader()
      w.writerows(csv_rows)
    paths[f"charades_csv/{split}"] = p
    p = path("qvhighlights", f"highlight_{split}_release.jsonl")
    with open(p, "w") as f:
      f.write("".join(json.dumps(q) + "\n" for q in qvh_lines))
    paths[f"qvhighlights/{split}"] = p
  p = path("activitynet1.3", "activity_net.v1-3.min.json")
  with open(p, "w") as f:
    json.dump(anet, f)
  paths["activitynet1.3"] = p
  p = path("coin", "COIN.json")
  with open(p, "w") as f:
    json.dump(coin, f)
  paths["coin"] = p
  return paths


# ---------------------------------------------------------------------------
# The benchmark.
# ---------------------------------------------------------------------------
def zero_shot_info(config: SyntheticConfig,
                   videos_by_split: Dict[str, Sequence[SyntheticVideo]]
                   ) -> dict:
  """Contents of zero_shot.json (class list, held-out set, occurrences)."""
  names = compositional_classes()
  held = held_out_combinations(config)
  held_idx = [compositional_index(s, a) for s, a in held]
  occurrence = {}
  for split, videos in videos_by_split.items():
    counts = {c: 0 for c in names}
    for v in videos:
      for e in v.events:
        counts[e.zero_shot_name] += 1
    occurrence[split] = counts
  return {
      "class_names": list(names),
      "held_out": [compositional_name(s, a) for s, a in held],
      "held_out_class_indices": held_idx,
      "seen_class_indices": [i for i in range(len(names))
                             if i not in held_idx],
      "closed_set_classes": list(ACTIONS),
      "records_dir": ZERO_SHOT_TAL_DIR,
      "occurrence": occurrence,
  }


def write_benchmark(
    output_dir: str,
    config: SyntheticConfig = SyntheticConfig(),
    tasks: Sequence[str] = spec.TASKS,
    num_shards: int = 2,
    write_videos: bool = False,
    write_annotation_files: Optional[bool] = None,
    zero_shot_records: bool = True,
    jpeg_quality: int = 90,
    progress: Optional[Callable[[str, int, int], None]] = None,
    state_embeddings: bool = False,
    render: bool = True,
) -> dict:
  """Generates every split and writes records, class lists and a summary.

  Layout of `output_dir`:
    <task>/<split>-0000i-of-0000N.tfrecord for each task in `tasks`;
    temporal_localization_zero_shot/<split>-... (TAL with compositional
      labels, if TAL is in `tasks` and `zero_shot_records`);
    classes.txt (`ACTIONS`, one per line), zero_shot.json, summary.json;
    videos/<vid>.mp4 and annotations/... (see `write_annotations`) if
    `write_videos` (annotations alone with `write_annotation_files=True`).

  Args:
    output_dir: where to write (created).
    config: the benchmark config.
    tasks: tasks to write records for.
    num_shards: shards per task and split (fewer if there are fewer records).
    write_videos: also write h264 mp4s (PyAV) and the annotation files.
    write_annotation_files: annotation files; defaults to `write_videos`.
    zero_shot_records: with TAL, also write the compositional-label TAL
      records.
    jpeg_quality: JPEG quality of the stored frames.
    progress: called as progress(split, done, total) after every video.
    state_embeddings: also store `scene_embeddings` in every record
      (`image/embedding`, for the cached-embedding input mode).
    render: False skips the pixels (records hold the embeddings only; much
      faster): needs `state_embeddings`, excludes `write_videos`.

  Returns:
    The summary (also written to summary.json): per-split statistics, record
    counts, the config and the wall time.
  """
  for task in tasks:
    if task not in spec.TASKS:
      raise ValueError(f"unknown task {task!r}; expected one of {spec.TASKS}")
  if write_annotation_files is None:
    write_annotation_files = write_videos
  if not render and (write_videos or not state_embeddings):
    raise ValueError("render=False needs state_embeddings=True and"
                     " write_videos=False")
  t0 = time.perf_counter()
  os.makedirs(output_dir, exist_ok=True)
  layouts: Dict[str, List[SyntheticVideo]] = {}
  num_records: Dict[str, Dict[str, int]] = {}
  shards: Dict[str, Dict[str, List[str]]] = {}
  for split in SPLITS:
    total = config.num_videos(split)
    videos: List[SyntheticVideo] = []

    def finish(video: SyntheticVideo) -> SyntheticVideo:
      if not render:
        return video
      encode_frames(video, jpeg_quality)
      if write_videos:
        write_mp4(os.path.join(output_dir, "videos", f"{video.video_id}.mp4"),
                  video.frames, video.fps)
      video.frames = None  # keep only the JPEG bytes in memory
      return video

    # JPEG encoding (a TF op, which releases the GIL) of video i overlaps
    # with the numpy rendering of video i + 1.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      pending: collections.deque = collections.deque()
      for video in generate_split(split, config, render=render):
        pending.append(pool.submit(finish, video))
        while pending and (len(pending) > 2 or pending[0].done()):
          videos.append(pending.popleft().result())
          if progress is not None:
            progress(split, len(videos), total)
      while pending:
        videos.append(pending.popleft().result())
        if progress is not None:
          progress(split, len(videos), total)
    layouts[split] = videos
    variants = [(task, task, False) for task in tasks]
    if spec.TAL in tasks and zero_shot_records:
      variants.append((ZERO_SHOT_TAL_DIR, spec.TAL, True))
    embeddings = {v.video_id: scene_embeddings(v, config)
                  for v in videos} if state_embeddings else {}
    for name, task, zs in variants:
      recs = [r for v in videos for r in to_records(
          v, task, jpeg_quality, zero_shot=zs,
          hd_max_queries=config.hd_max_queries,
          cls_clip_seconds=config.cls_clip_seconds,
          embeddings=embeddings.get(v.video_id))]
      paths = records.write_shards(
          recs, os.path.join(output_dir, name, split),
          max(1, min(num_shards, len(recs))), task)
      num_records.setdefault(name, {})[split] = len(recs)
      shards.setdefault(name, {})[split] = [
          os.path.relpath(p, output_dir) for p in paths]
  with open(os.path.join(output_dir, "classes.txt"), "w") as f:
    f.write("".join(a + "\n" for a in ACTIONS))
  with open(os.path.join(output_dir, "zero_shot.json"), "w") as f:
    json.dump(zero_shot_info(config, layouts), f, indent=1)
  annotation_paths = {}
  if write_annotation_files:
    annotation_paths = write_annotations(
        os.path.join(output_dir, "annotations"), layouts, config)
    annotation_paths = {k: os.path.relpath(p, output_dir)
                        for k, p in annotation_paths.items()}
  all_videos = [v for s in SPLITS for v in layouts[s]]
  summary = {
      "statistics": {s: statistics(layouts[s]) for s in SPLITS},
      "overall": statistics(all_videos),
      "num_records": num_records,
      "shards": shards,
      "annotations": annotation_paths,
      "tasks": list(tasks),
      "frames": render,
      "embedding_dim": SCENE_EMBEDDING_DIM if state_embeddings else None,
      "config": dataclasses.asdict(config),
      "seconds": round(time.perf_counter() - t0, 2),
  }
  with open(os.path.join(output_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def format_summary(summary: dict) -> str:
  """A short human-readable digest of `write_benchmark`'s summary."""
  o = summary["overall"]
  f = o["event_length_fraction"]
  lines = [
      f"videos: {o['num_videos']}  events: {o['num_events']}"
      f"  frames: {o['num_frames']}  ({summary['seconds']:.1f} s)",
      "per split: " + ", ".join(
          f"{s} {summary['statistics'][s]['num_videos']}" for s in SPLITS),
      f"events/video: mean {o['events_per_video']['mean']:.2f}"
      f" [{o['events_per_video']['min']}, {o['events_per_video']['max']}]",
      f"event length / video: min {f['min']:.3f} q05 {f['q05']:.3f}"
      f" median {f['q50']:.3f} q95 {f['q95']:.3f} max {f['max']:.3f}",
      f"background frames: {o['background_frame_fraction']:.3f}",
      "videos with overlapping events of different classes:"
      f" {o['overlap_different_classes_fraction']:.3f}",
      f"distractors/video: {o['distractors_per_video']:.2f}",
      "class counts: " + ", ".join(
          f"{a} {c}" for a, c in o["class_counts"].items()),
      "records: " + ", ".join(
          f"{t} " + "/".join(str(c) for c in n.values())
          for t, n in summary["num_records"].items()),
  ]
  return "\n".join(lines)
