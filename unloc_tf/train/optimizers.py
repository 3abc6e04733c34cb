"""Optimisers and learning-rate schedules of the reference (reference_spec §7.1).

The reference trains with `optax.sgd(schedule, momentum=0.9)` after a
cross-device gradient mean and global-norm clipping to 1.0, with per-prefix
learning rates (fusion + heads at 10x the towers):

  * `make_schedule`: Scenic's compound schedule `constant * warmup * decay`
    as a serialisable Keras `LearningRateSchedule` of the optimizer step
    (`optimizer.iterations`: the number of updates applied so far, so the
    first update uses step 0 and, with warm-up, learning rate 0).
  * `OptaxSGD`: SGD whose learning rate multiplies the momentum trace,
    `m <- g + momentum * m; theta <- theta - lr_t * m` (optax), which differs
    from `keras.optimizers.SGD` (`v <- momentum * v - lr_t * g`) whenever the
    learning rate changes (warm-up, decay).
  * `make_optimizer`: OptaxSGD ("sgd") or AdamW ("adamw") with per-prefix
    learning-rate multipliers and the reference's gradient pipeline:

      per-replica grads -> SUM over replicas (the task losses are already
      divided by the number of replicas, so this is the global mean) ->
      global-norm clip -> weight decay -> update.

    Keras' own optimizers clip before the cross-replica sum, i.e. each
    replica's partial gradient separately, which is not the reference (and
    not what one replica computes); the optimizers here all-reduce first.

Learning-rate multipliers (`lr_multipliers`) map a variable-path PREFIX to a
factor.  The path is the Keras `variable.path` without its first component
(the model's own name, which changes with instantiation: "action_localizer",
"action_localizer_1"), matched component by component, each component a
`fnmatch` pattern; the longest matching prefix wins, others get 1.0.
Examples (tiny TAL model paths):

  "video_text_fusion" matches "video_text_fusion/encoderblock_0/.../kernel"
    and the pyramid "video_text_fusion/feature_pyramid/output_conv_0/kernel";
  "temporal_localization_head" matches the TAL head only;
  "*_head" matches every task head ("temporal_localization_head",
    "moment_retrieval_head", ...);
  "image_encoder/resblocks_0" matches the first ViT block only.

`REFERENCE_LR_MULTIPLIERS` is the reference setting ({fusion: 10, head: 10}
relative to the base rate; the reference writes it as base LRs 0.1 for the
`video_text_fusion` and `<task>_head` prefixes with base 0.01).  A prefix
that matches no trainable variable is an error (a typo would otherwise train
silently at the base rate).
"""

from __future__ import annotations

import fnmatch
import math
from typing import Dict, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

DECAYS = ("constant", "piecewise", "cosine", "exponential")
REFERENCE_LR_MULTIPLIERS = {"video_text_fusion": 10.0, "*_head": 10.0}


# ---------------------------------------------------------------------------
# Schedules.
# ---------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="unloc_tf")
class UnlocSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """Scenic's compound schedule `base * warmup(step) * decay(step)`.

  * warmup: `min(1, step / warmup_steps)` (1 if warmup_steps == 0).
  * "constant": 1.
  * "piecewise": `decay_factors[i]` for the last i with
    `step > decay_events[i]` (absolute factors, not cumulative), else 1.
  * "cosine": `end + (1 - end) * 0.5 * (1 + cos(pi * frac))`, `frac =
    min(1, max(0, step - warmup_steps) / (total_steps - warmup_steps))`
    (Scenic restarts the cycle after total_steps; training ends there).
  * "exponential": `decay_rate ** (step / decay_steps)`, floored exponent if
    `staircase`.

  See `make_schedule` for the arguments.
  """

  def __init__(self, base_learning_rate: float = 0.01,
               total_steps: int = 1000, warmup_steps: int = 0,
               decay: str = "constant",
               decay_events: Sequence[int] = (),
               decay_factors: Sequence[float] = (),
               decay_rate: float = 0.1, decay_steps: int = 1,
               staircase: bool = True, end_factor: float = 0.0):
    if decay not in DECAYS:
      raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
    if warmup_steps < 0:
      raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    decay_events = [int(e) for e in decay_events]
    decay_factors = [float(f) for f in decay_factors]
    if decay == "piecewise":
      if len(decay_events) != len(decay_factors):
        raise ValueError(
            f"piecewise decay needs one factor per event, got"
            f" decay_events={decay_events} decay_factors={decay_factors}")
      if decay_events != sorted(decay_events):
        raise ValueError(f"decay_events must be increasing: {decay_events}")
    if decay == "cosine" and total_steps <= warmup_steps:
      raise ValueError(
          f"cosine decay needs total_steps ({total_steps}) > warmup_steps"
          f" ({warmup_steps})")
    if decay == "exponential" and decay_steps <= 0:
      raise ValueError(f"decay_steps must be > 0, got {decay_steps}")
    self.base_learning_rate = float(base_learning_rate)
    self.total_steps = int(total_steps)
    self.warmup_steps = int(warmup_steps)
    self.decay = decay
    self.decay_events = decay_events
    self.decay_factors = decay_factors
    self.decay_rate = float(decay_rate)
    self.decay_steps = int(decay_steps)
    self.staircase = bool(staircase)
    self.end_factor = float(end_factor)

  def __call__(self, step):
    s = tf.cast(step, tf.float32)
    lr = tf.constant(self.base_learning_rate, tf.float32)
    if self.warmup_steps > 0:
      lr *= tf.minimum(1.0, s / float(self.warmup_steps))
    if self.decay == "piecewise" and self.decay_events:
      events = tf.constant(self.decay_events, tf.float32)
      index = tf.reduce_sum(tf.cast(events < s, tf.int32))
      lr *= tf.gather(tf.constant([1.0] + self.decay_factors, tf.float32),
                      index)
    elif self.decay == "cosine":
      span = float(self.total_steps - self.warmup_steps)
      frac = tf.minimum(1.0, tf.maximum(0.0, s - self.warmup_steps) / span)
      cosine = 0.5 * (1.0 + tf.cos(math.pi * frac))
      lr *= self.end_factor + (1.0 - self.end_factor) * cosine
    elif self.decay == "exponential":
      exponent = s / float(self.decay_steps)
      if self.staircase:
        exponent = tf.floor(exponent)
      lr *= tf.pow(self.decay_rate, exponent)
    return lr

  def get_config(self):
    return {
        "base_learning_rate": self.base_learning_rate,
        "total_steps": self.total_steps,
        "warmup_steps": self.warmup_steps,
        "decay": self.decay,
        "decay_events": list(self.decay_events),
        "decay_factors": list(self.decay_factors),
        "decay_rate": self.decay_rate,
        "decay_steps": self.decay_steps,
        "staircase": self.staircase,
        "end_factor": self.end_factor,
    }


def make_schedule(base_learning_rate: float = 0.01, total_steps: int = 1000,
                  warmup_steps: int = 0, decay: str = "constant",
                  decay_events: Sequence[int] = (),
                  decay_factors: Sequence[float] = (),
                  decay_rate: float = 0.1, decay_steps: int = 1,
                  staircase: bool = True, end_factor: float = 0.0
                  ) -> keras.optimizers.schedules.LearningRateSchedule:
  """The reference's learning-rate schedule (reference_spec.md §7.1).

  Args:
    base_learning_rate: the "constant" factor (0.01 in every config).
    total_steps: training steps (the cosine's end).
    warmup_steps: linear warm-up from 0 (the first update has LR 0).
    decay: "constant", "piecewise", "cosine" or "exponential".
    decay_events: piecewise: steps after which a factor applies
      (`step > event`).
    decay_factors: piecewise: absolute factors, one per event (e.g. [0.1]).
    decay_rate, decay_steps, staircase: exponential decay
      `decay_rate ** (step / decay_steps)` (exponent floored if staircase;
      COIN: 0.1, 6600, True).
    end_factor: cosine: final LR as a fraction of the base (0 in QVH).

  Returns:
    A serialisable `UnlocSchedule`.
  """
  return UnlocSchedule(
      base_learning_rate=base_learning_rate, total_steps=total_steps,
      warmup_steps=warmup_steps, decay=decay, decay_events=decay_events,
      decay_factors=decay_factors, decay_rate=decay_rate,
      decay_steps=decay_steps, staircase=staircase, end_factor=end_factor)


# ---------------------------------------------------------------------------
# Per-prefix learning rates and the reference's gradient pipeline.
# ---------------------------------------------------------------------------
def relative_path(path: str) -> str:
  """A Keras variable path without its first component (the model name)."""
  return path.split("/", 1)[1] if "/" in path else path


def _prefix_length(path: str, prefix: str) -> int:
  """Components of `prefix` if it matches the start of `path`, else 0."""
  parts = path.split("/")
  patterns = prefix.strip("/").split("/")
  if len(patterns) > len(parts):
    return 0
  for part, pattern in zip(parts, patterns):
    if not fnmatch.fnmatchcase(part, pattern):
      return 0
  return len(patterns)


def lr_factor(path: str, lr_multipliers: Optional[Mapping[str, float]]
              ) -> float:
  """The multiplier of a variable path (see the module docstring).

  Args:
    path: a Keras `variable.path` (its first component is dropped) or a
      path relative to the model.
    lr_multipliers: prefix -> factor.

  Returns:
    The factor of the longest matching prefix, or 1.0.
  """
  if not lr_multipliers:
    return 1.0
  best, factor = 0, 1.0
  for candidate in (relative_path(path), path):
    for prefix, f in lr_multipliers.items():
      n = _prefix_length(candidate, prefix)
      if n > best:
        best, factor = n, float(f)
    if best:
      break
  return factor


class _ReferenceGradientsMixin:
  """All-reduce, then clip, per-prefix LR factors, optional bias/scale skip.

  Mixed into Keras optimizers (TensorFlow backend).  `update_step` receives
  the learning rate times the variable's factor, so the mixin works for any
  optimizer whose update is written in terms of `learning_rate`.
  """

  def _init_reference(self, lr_multipliers, skip_scale_and_bias_decay):
    self.lr_multipliers = {str(k): float(v)
                           for k, v in (lr_multipliers or {}).items()}
    self.skip_scale_and_bias_decay = bool(skip_scale_and_bias_decay)
    self._lr_factors = []

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self._lr_factors = [lr_factor(v.path, self.lr_multipliers)
                        for v in variables]
    unused = [p for p in self.lr_multipliers
              if not any(_prefix_length(relative_path(v.path), p)
                         or _prefix_length(v.path, p) for v in variables)]
    if unused:
      tops = sorted({relative_path(v.path).split("/")[0] for v in variables})
      raise ValueError(
          f"lr_multipliers prefixes {unused} match no trainable variable;"
          f" the trainable variables' top-level names are {tops}")

  def variable_lr_factor(self, variable) -> float:
    """The learning-rate factor of one of the optimizer's variables."""
    if not self._lr_factors:
      return 1.0
    return self._lr_factors[self._get_variable_index(variable)]

  def update_step(self, gradient, variable, learning_rate):
    factor = self.variable_lr_factor(variable)
    if factor != 1.0:
      learning_rate = tf.cast(learning_rate, tf.float32) * factor
    return super().update_step(gradient, variable, learning_rate)

  def _clip_gradients(self, grads):
    # Sum over replicas first (the trainer's losses are pre-divided by the
    # number of replicas), then clip the global gradient as one replica does.
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(grads))
    if self.global_clipnorm and self.global_clipnorm > 0:
      # tf.clip_by_global_norm keeps IndexedSlices (token embeddings) sparse.
      clipped, _ = tf.clip_by_global_norm(list(grads), self.global_clipnorm)
      return clipped
    return super()._clip_gradients(grads)

  def _all_reduce_sum_gradients(self, grads_and_vars):
    return list(grads_and_vars)  # done in _clip_gradients

  def _use_weight_decay(self, variable):
    if self.skip_scale_and_bias_decay and len(variable.shape) <= 1:
      return False
    return super()._use_weight_decay(variable)

  def _apply_weight_decay(self, variables):
    if self.weight_decay is None or not self.weight_decay:
      return
    if not any(f != 1.0 for f in self._lr_factors):
      return super()._apply_weight_decay(variables)

    def decay_all(distribution, variables):
      for variable in variables:
        if not self._use_weight_decay(variable):
          continue
        factor = self.variable_lr_factor(variable)

        def decay_one(v, factor=factor):
          lr = tf.cast(self.learning_rate, v.dtype) * factor
          v.assign_sub(v * tf.cast(self.weight_decay, v.dtype) * lr)

        value = getattr(variable, "value", variable)
        distribution.extended.update(value, decay_one, group=False)

    tf.__internal__.distribute.interim.maybe_merge_call(
        decay_all, self._distribution_strategy, variables)

  def _reference_config(self):
    return {"lr_multipliers": dict(self.lr_multipliers),
            "skip_scale_and_bias_decay": self.skip_scale_and_bias_decay}


@keras.saving.register_keras_serializable(package="unloc_tf")
class OptaxSGD(_ReferenceGradientsMixin, keras.optimizers.Optimizer):
  """SGD with optax's momentum semantics (the learning rate scales the trace).

  `m <- g + momentum * m`, then `theta <- theta - lr_t * m`
  (nesterov: `theta <- theta - lr_t * (g + momentum * m)`).  With a
  constant learning rate this equals `keras.optimizers.SGD`; under warm-up
  or decay it does not (Keras folds each step's LR into its velocity).

  Args:
    learning_rate: float or `LearningRateSchedule` of the optimizer step.
    momentum: trace decay (0.9 in the reference); 0 = plain SGD.
    nesterov: Nesterov momentum (the reference: False).
    lr_multipliers: prefix -> learning-rate factor (module docstring).
    skip_scale_and_bias_decay: no weight decay on 1-D variables.
    **kwargs: `keras.optimizers.Optimizer` arguments (weight_decay,
      global_clipnorm, ...).  Weight decay is Keras' decoupled
      `theta -= lr * factor * weight_decay * theta`.
  """

  def __init__(self, learning_rate=0.01, momentum: float = 0.9,
               nesterov: bool = False,
               lr_multipliers: Optional[Mapping[str, float]] = None,
               skip_scale_and_bias_decay: bool = False, name="optax_sgd",
               **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    if not 0.0 <= float(momentum) <= 1.0:
      raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    self.momentum = float(momentum)
    self.nesterov = bool(nesterov)
    self._init_reference(lr_multipliers, skip_scale_and_bias_decay)

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self.momentums = []
    if self.momentum:
      # (add_optimizer_variables is newer than keras 3.10.)
      self.momentums = [
          self.add_variable_from_reference(v, name="momentum")
          for v in variables]

  def update_step(self, gradient, variable, learning_rate):
    factor = self.variable_lr_factor(variable)
    lr = tf.cast(learning_rate, variable.dtype) * factor
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.IndexedSlices(tf.cast(gradient.values, variable.dtype),
                                  gradient.indices, gradient.dense_shape)
    else:
      gradient = tf.cast(gradient, variable.dtype)
    if not self.momentum:
      if isinstance(gradient, tf.IndexedSlices):
        self.assign_sub(variable, tf.IndexedSlices(
            gradient.values * lr, gradient.indices, gradient.dense_shape))
      else:
        self.assign_sub(variable, gradient * lr)
      return
    m = self.momentums[self._get_variable_index(variable)]
    mu = tf.cast(self.momentum, variable.dtype)
    if isinstance(gradient, tf.IndexedSlices):
      self.assign(m, m * mu)
      self.assign_add(m, gradient)  # scatter-add of the sparse rows
      gradient = tf.convert_to_tensor(gradient) if self.nesterov else None
    else:
      self.assign(m, m * mu + gradient)
    if self.nesterov:
      self.assign_sub(variable, (gradient + mu * m) * lr)
    else:
      self.assign_sub(variable, m * lr)

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum, nesterov=self.nesterov,
                  **self._reference_config())
    return config


@keras.saving.register_keras_serializable(package="unloc_tf")
class ReferenceAdamW(_ReferenceGradientsMixin, keras.optimizers.AdamW):
  """`keras.optimizers.AdamW` with the reference gradient pipeline and
  per-prefix learning rates (weight decay scaled by the same factor)."""

  def __init__(self, learning_rate=0.001, weight_decay: float = 0.0,
               lr_multipliers: Optional[Mapping[str, float]] = None,
               skip_scale_and_bias_decay: bool = False, name="adamw",
               **kwargs):
    super().__init__(learning_rate=learning_rate, weight_decay=weight_decay,
                     name=name, **kwargs)
    self._init_reference(lr_multipliers, skip_scale_and_bias_decay)

  def get_config(self):
    config = super().get_config()
    config.update(**self._reference_config())
    return config


def make_optimizer(name: str = "sgd", learning_rate=0.01,
                   momentum: float = 0.9, weight_decay: float = 0.0,
                   global_clipnorm: Optional[float] = 1.0,
                   lr_multipliers: Optional[Dict[str, float]] = None,
                   nesterov: bool = False,
                   skip_scale_and_bias_decay: bool = False,
                   adam_beta_1: float = 0.9, adam_beta_2: float = 0.999,
                   adam_epsilon: float = 1e-8) -> keras.optimizers.Optimizer:
  """The reference optimiser (defaults) or AdamW.

  Args:
    name: "sgd" (`OptaxSGD`) or "adamw" (`ReferenceAdamW`).
    learning_rate: float or schedule (`make_schedule`).
    momentum: SGD momentum (0.9).
    weight_decay: decoupled weight decay (0 in the reference).
    global_clipnorm: clip the replica-summed gradient to this global norm
      (1.0); None or 0 disables.
    lr_multipliers: prefix -> factor (module docstring);
      `REFERENCE_LR_MULTIPLIERS` is the reference's {fusion: 10, head: 10}.
    nesterov: SGD Nesterov momentum.
    skip_scale_and_bias_decay: no weight decay on 1-D variables.
    adam_beta_1, adam_beta_2, adam_epsilon: AdamW moments (optax defaults).

  Returns:
    An unbuilt Keras optimizer.  Create it inside `strategy.scope()`.
  """
  clip = global_clipnorm if global_clipnorm else None
  if name == "sgd":
    return OptaxSGD(learning_rate=learning_rate, momentum=float(momentum),
                    nesterov=nesterov, lr_multipliers=lr_multipliers,
                    skip_scale_and_bias_decay=skip_scale_and_bias_decay,
                    weight_decay=weight_decay or None, global_clipnorm=clip)
  if name == "adamw":
    return ReferenceAdamW(learning_rate=learning_rate,
                          weight_decay=float(weight_decay),
                          lr_multipliers=lr_multipliers,
                          skip_scale_and_bias_decay=skip_scale_and_bias_decay,
                          beta_1=adam_beta_1, beta_2=adam_beta_2,
                          epsilon=adam_epsilon, global_clipnorm=clip)
  raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adamw'")


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
  """The base learning rate of the next update (factor-1 variables)."""
  return float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))
