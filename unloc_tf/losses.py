"""UnLoc losses and the cheap training metrics logged next to them.

Reference: reference_spec.md §4 (losses and their exact normalisations) and
§4.5 (logged metrics).  Everything is plain TensorFlow with static Python
control flow only (on shapes and hyper-parameters, never on tensor values),
so it runs inside Keras `compute_loss`, under `tf.distribute` and under
`tf.function(jit_compile=True)`.  All computation is float32.

Normalisations (`sum` is over all elements):

* focal / sigmoid CE: `sum(w[..., t] * l[..., t, c]) / (sum(w) + 1e-8)`, summed
  over classes and divided by the number of valid TOKENS (not positives);
* box losses and `mean_iou`: `sum(l * p) / (sum(p) + 1e-8)` with `p` the
  positive (token, class) / (caption, token) pairs times their weights.

So all-padding inputs give 0 (never NaN), and zero positives give a box loss
of 0.  Box terms are evaluated on placeholder boxes wherever the positive
weight is 0, so sentinel or negative targets outside the positives (TAL uses
`n + 1`, MR regresses `(t - s', e' - t)` at every token) can neither produce
NaN in the value nor in the gradient.

Every returned value is a per-replica mean.  Under a strategy the caller
(the task's `compute_loss`) divides by `num_replicas_in_sync` so that summed
replica gradients equal the mean, as the reference (pmean of per-device
gradients) does.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import tensorflow as tf

BOX_LOSS_TERMS = ("iou", "l1", "center_offset_squared", "diou")

_NORM_EPS = 1e-8  # added to every normaliser (reference).
_BOX_EPS = 1e-6  # added to every box union (reference `eps`).

TensorLike = Union[tf.Tensor, float, int]


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------
def _f32(x) -> tf.Tensor:
  return tf.cast(x, tf.float32)


def _normalised_sum(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
  """sum(values * weights) / (sum(weights) + 1e-8); shapes must match."""
  return tf.reduce_sum(values * weights) / (tf.reduce_sum(weights) + _NORM_EPS)


def _token_weights(weights, logits: tf.Tensor, name: str) -> tf.Tensor:
  """float32 [...] weights for logits [..., C]; None means all ones."""
  if weights is None:
    return tf.ones(tf.shape(logits)[:-1], tf.float32)
  weights = _f32(weights)
  rank, w_rank = logits.shape.rank, weights.shape.rank
  if rank is not None and w_rank is not None and w_rank != rank - 1:
    raise ValueError(
      f"{name}: weights must have the rank of logits minus one (per token,"
      f" [..., T] for logits [..., T, C]); got weights {weights.shape} for"
      f" logits {logits.shape}"
    )
  return weights


def _check_rank(x: tf.Tensor, rank: int, name: str, layout: str) -> None:
  if x.shape.rank is not None and x.shape.rank != rank:
    raise ValueError(f"{name} must be {layout} (rank {rank}); got {x.shape}")


# ---------------------------------------------------------------------------
# Classification losses (§4.1, §4.3).
# ---------------------------------------------------------------------------
def sigmoid_focal_loss(
  logits: tf.Tensor,
  labels: tf.Tensor,
  weights: Optional[tf.Tensor],
  alpha: float = 0.25,
  gamma: float = 2.0,
) -> tf.Tensor:
  """Sigmoid focal loss normalised by the number of valid tokens (§4.1).

  Per element with logit `z` and target `y`:
  `ce = BCE(z, y)`, `p_t = exp(-ce)`,
  `fl = ce * (1 - p_t)**gamma * (alpha * y + (1 - alpha) * (1 - y))`;
  result `= sum(w[..., None] * fl) / (sum(w) + 1e-8)`.  The alpha weighting is
  always applied (as in the reference): `alpha=0.5` halves every element.

  Args:
    logits: float [..., T, C] (C may be 1).
    labels: {0, 1} [..., T, C], int or float.
    weights: float [..., T] per-token validity (batch_mask * token mask), or
      None for all ones.
    alpha: balancing factor (a Python float; 0.25 in every config).
    gamma: focusing exponent (a Python float >= 0; 2.0 in every config).

  Returns:
    float32 scalar.
  """
  if alpha is None:
    raise ValueError(
      "sigmoid_focal_loss: alpha must be a float; the reference always"
      " applies alpha * y + (1 - alpha) * (1 - y)"
    )
  gamma = float(gamma)
  if gamma < 0:
    raise ValueError(f"sigmoid_focal_loss: gamma must be >= 0, got {gamma}")
  logits = _f32(logits)
  labels = _f32(labels)
  weights = _token_weights(weights, logits, "sigmoid_focal_loss")
  ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
  loss = ce
  if gamma:
    # 1 - p_t = 1 - exp(-ce), computed without cancellation.
    one_minus_pt = -tf.math.expm1(-ce)
    if gamma == 2.0:
      loss = loss * tf.square(one_minus_pt)
    else:
      loss = loss * tf.pow(one_minus_pt, gamma)
  loss = loss * (alpha * labels + (1.0 - alpha) * (1.0 - labels))
  per_token = tf.reduce_sum(loss, axis=-1)
  return _normalised_sum(per_token, weights)


def sigmoid_cross_entropy(
  logits: tf.Tensor, labels: tf.Tensor, weights: Optional[tf.Tensor]
) -> tf.Tensor:
  """Sigmoid BCE summed over classes, normalised by valid tokens (§4.3).

  Args:
    logits: float [..., T, C].
    labels: {0, 1} [..., T, C] (all-zero rows are background).
    weights: float [..., T], or None for all ones.

  Returns:
    float32 scalar `sum(w[..., None] * ce) / (sum(w) + 1e-8)`.
  """
  logits = _f32(logits)
  labels = _f32(labels)
  weights = _token_weights(weights, logits, "sigmoid_cross_entropy")
  ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
  return _normalised_sum(tf.reduce_sum(ce, axis=-1), weights)


def top_one_correct(
  logits: tf.Tensor,
  labels: tf.Tensor,
  background_logit_threshold: float = 0.0,
) -> tf.Tensor:
  """Per-token correctness of the top-1 prediction with background (§4.5).

  The reference's `weighted_top_one_correctly_classified` (TAL/HD
  `precision@1`, AS `frame_accuracy`): a token is correct if it is predicted
  foreground (`max logit > threshold`) and the label at the argmax class is 1,
  or predicted background (`max logit <= threshold`) and all its labels are 0.
  With a static C == 1 the reference instead uses `(logit >= 0) == label`.

  Args:
    logits: float [..., C].
    labels: {0, 1} [..., C].
    background_logit_threshold: threshold of the C > 1 rule.

  Returns:
    float32 [...] in {0, 1}.
  """
  logits = _f32(logits)
  labels = _f32(labels)
  if logits.shape[-1] == 1:
    correct = tf.equal(logits[..., 0] >= 0.0, labels[..., 0] > 0.0)
    return _f32(correct)
  num_classes = tf.shape(logits)[-1]
  top1 = tf.one_hot(tf.argmax(logits, axis=-1), num_classes, dtype=tf.float32)
  label_at_top1 = tf.reduce_sum(top1 * labels, axis=-1) > 0.0
  foreground = tf.reduce_max(logits, axis=-1) > background_logit_threshold
  background_label = tf.reduce_sum(labels, axis=-1) <= 0.0
  correct = tf.logical_or(
    tf.logical_and(foreground, label_at_top1),
    tf.logical_and(tf.logical_not(foreground), background_label),
  )
  return _f32(correct)


# ---------------------------------------------------------------------------
# Box regression (§4.2).
# ---------------------------------------------------------------------------
def _split_boxes(pred: tf.Tensor, target: tf.Tensor):
  pred = _f32(pred)
  target = _f32(target)
  for x, name in ((pred, "pred"), (target, "target")):
    if x.shape.rank is not None and x.shape[-1] not in (None, 2):
      raise ValueError(
        f"{name} must be [..., 2] = (d_start, d_end); got {x.shape}"
      )
  return pred[..., 0], pred[..., 1], target[..., 0], target[..., 1]


def temporal_iou(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """IoU of two segments given as distances from the same token.

  `iou = (min(ps, gs) + min(pe, ge)) / (max(ps, gs) + max(pe, ge) + 1e-6)`.

  Args:
    pred: float [..., 2] = (d_start, d_end) >= 0.
    target: float [..., 2], same layout.

  Returns:
    float32 [...].
  """
  ps, pe, gs, ge = _split_boxes(pred, target)
  union = tf.maximum(ps, gs) + tf.maximum(pe, ge) + _BOX_EPS
  return (tf.minimum(ps, gs) + tf.minimum(pe, ge)) / union


def box_loss_terms(pred: tf.Tensor, target: tf.Tensor) -> dict[str, tf.Tensor]:
  """Every box regression term, per element (§4.2).

  With `u = max(ps, gs) + max(pe, ge) + 1e-6`:
  * `'iou'`: `1 - (min(ps, gs) + min(pe, ge)) / u`;
  * `'l1'`: `(|ps - gs| + |pe - ge|) / u`;
  * `'center_offset_squared'`: `(0.5 * ((pe - ps) - (ge - gs)) / u)**2`;
  * `'diou'`: `'iou' + 'center_offset_squared'`.

  Args:
    pred: float [..., 2] = (d_start, d_end), predicted distances >= 0.
    target: float [..., 2], target distances.

  Returns:
    dict name -> float32 [...], keys `BOX_LOSS_TERMS`.
  """
  ps, pe, gs, ge = _split_boxes(pred, target)
  union = tf.maximum(ps, gs) + tf.maximum(pe, ge) + _BOX_EPS
  iou = (tf.minimum(ps, gs) + tf.minimum(pe, ge)) / union
  l1 = (tf.abs(ps - gs) + tf.abs(pe - ge)) / union
  center = tf.square(0.5 * ((pe - ps) - (ge - gs)) / union)
  return {
    "iou": 1.0 - iou,
    "l1": l1,
    "center_offset_squared": center,
    "diou": 1.0 - iou + center,
  }


def parse_box_loss_type(box_loss_type: str) -> list[tuple[float, str]]:
  """Parses `"iou"`, `"l1+iou"`, `"0.5*l1+1.0*iou"`, `"diou"`, ...

  Terms are separated by `+`, each optionally `weight*name`; whitespace around
  tokens is ignored.  Names are `BOX_LOSS_TERMS`.

  Args:
    box_loss_type: the specification string.

  Returns:
    [(weight, name), ...] in the order given.

  Raises:
    ValueError: naming the offending term (empty, unknown name, weight that
      is not a finite number >= 0, more than one `*`).
  """
  if not isinstance(box_loss_type, str):
    raise ValueError(
      f"box_loss_type must be a string, got {type(box_loss_type).__name__}"
    )
  parsed = []
  for raw in box_loss_type.split("+"):
    term = raw.strip()
    if not term:
      raise ValueError(
        f"box_loss_type {box_loss_type!r}: empty term (stray '+'?)"
      )
    parts = [p.strip() for p in term.split("*")]
    if len(parts) == 1:
      weight, name = 1.0, parts[0]
    elif len(parts) == 2:
      try:
        weight = float(parts[0])
      except ValueError:
        raise ValueError(
          f"box_loss_type {box_loss_type!r}: term {term!r} has weight"
          f" {parts[0]!r}, which is not a number"
        ) from None
      name = parts[1]
    else:
      raise ValueError(
        f"box_loss_type {box_loss_type!r}: term {term!r} must be 'name' or"
        " 'weight*name'"
      )
    if name not in BOX_LOSS_TERMS:
      raise ValueError(
        f"box_loss_type {box_loss_type!r}: unknown box loss {name!r} in term"
        f" {term!r}; known: {', '.join(BOX_LOSS_TERMS)}"
      )
    if not math.isfinite(weight) or weight < 0:
      raise ValueError(
        f"box_loss_type {box_loss_type!r}: term {term!r} needs a finite"
        f" weight >= 0, got {weight}"
      )
    parsed.append((weight, name))
  return parsed


def _masked_boxes(pred, target, positives):
  """Replaces boxes outside the positives by (1, 1) (finite value & grad)."""
  pred = _f32(pred)
  target = _f32(target)
  keep = tf.expand_dims(positives > 0.0, -1)
  return (
    tf.where(keep, pred, tf.ones_like(pred)),
    tf.where(keep, target, tf.ones_like(target)),
  )


def _box_metrics(
  pred: tf.Tensor,
  target: tf.Tensor,
  positives: tf.Tensor,
  box_loss_type: str,
) -> dict[str, tf.Tensor]:
  """'box_loss', 'mean_iou' and '<term>_loss' per term, all over positives."""
  parsed = parse_box_loss_type(box_loss_type)
  positives = _f32(positives)
  pred, target = _masked_boxes(pred, target, positives)
  terms = box_loss_terms(pred, target)
  combined = tf.add_n([w * terms[name] for w, name in parsed])
  out = {
    "box_loss": _normalised_sum(combined, positives),
    "mean_iou": _normalised_sum(1.0 - terms["iou"], positives),
  }
  for _, name in parsed:
    out[f"{name}_loss"] = _normalised_sum(terms[name], positives)
  return out


def box_loss(
  pred: tf.Tensor,
  target: tf.Tensor,
  positives: tf.Tensor,
  box_loss_type: str = "iou",
) -> tf.Tensor:
  """Weighted box regression loss over the positive pairs (§4.2).

  Args:
    pred: float [..., 2] predicted (d_start, d_end).
    target: float [..., 2] target (d_start, d_end); any value (sentinels,
      negatives) where `positives` is 0.
    positives: float [...], label * weight: > 0 exactly at the positive
      (token, class) / (caption, token) pairs.
    box_loss_type: see `parse_box_loss_type`.

  Returns:
    float32 scalar `sum(loss * positives) / (sum(positives) + 1e-8)`.
  """
  return _box_metrics(pred, target, positives, box_loss_type)["box_loss"]


def mean_iou(
  pred: tf.Tensor, target: tf.Tensor, positives: tf.Tensor
) -> tf.Tensor:
  """Mean temporal IoU over the positive pairs (logged metric, §4.5).

  Normalised by `sum(positives)` (positive pairs).  The reference divides by
  the number of positive FRAMES (frames with any positive class), which
  differs only when a TAL frame is positive for several classes.

  Args:
    pred: float [..., 2].
    target: float [..., 2].
    positives: float [...].

  Returns:
    float32 scalar `sum(iou * positives) / (sum(positives) + 1e-8)`.
  """
  positives = _f32(positives)
  pred, target = _masked_boxes(pred, target, positives)
  return _normalised_sum(temporal_iou(pred, target), positives)


# ---------------------------------------------------------------------------
# Task losses.
# ---------------------------------------------------------------------------
def localization_loss(
  logits: tf.Tensor,
  displacements_pred: tf.Tensor,
  labels: tf.Tensor,
  displacements: tf.Tensor,
  weights: Optional[tf.Tensor],
  *,
  alpha: float = 0.25,
  gamma: float = 2.0,
  box_loss_type: str = "iou",
  classification_loss_alpha: float = 10.0,
) -> dict[str, tf.Tensor]:
  """TAL / HD loss: focal relevancy + box regression at positives (§4.1-4.4).

  Args:
    logits: float [B, T, C] relevancy logits (T = all pyramid tokens).
    displacements_pred: float [B, T, C, 2] predicted (d_start, d_end).
    labels: {0, 1} [B, T, C] multi-hot positives.
    displacements: float [B, T, C, 2] targets (sentinel where not positive).
    weights: float [B, T] = batch_mask * token mask, or None for all ones.
    alpha: focal alpha.
    gamma: focal gamma.
    box_loss_type: see `parse_box_loss_type`.
    classification_loss_alpha: weight of the classification loss.

  Returns:
    dict of float32 scalars: `'loss'` (= classification_loss_alpha *
    classification_loss + box_loss), `'classification_loss'` (focal, per
    valid token), `'box_loss'` and `'<term>_loss'` per term of
    `box_loss_type` (per positive pair), `'mean_iou'` (per positive pair),
    `'precision@1'` (`top_one_correct`, per valid token).
  """
  logits = _f32(logits)
  weights = _token_weights(weights, logits, "localization_loss")
  cls = sigmoid_focal_loss(logits, labels, weights, alpha=alpha, gamma=gamma)
  positives = _f32(labels) * weights[..., None]
  out = _box_metrics(
    displacements_pred, displacements, positives, box_loss_type
  )
  out["classification_loss"] = cls
  out["loss"] = classification_loss_alpha * cls + out["box_loss"]
  out["precision@1"] = _normalised_sum(top_one_correct(logits, labels), weights)
  return out


def _caption_side(value, own, name: str, same_batch: bool, default_shape):
  """A per-caption-video quantity: given, the own one, or ones."""
  if value is not None:
    return _f32(value)
  if own is None:
    return tf.ones(default_shape, tf.float32)
  if not same_batch:
    raise ValueError(
      f"moment_retrieval_loss: pass {name} (indexed by the caption's video,"
      " [Bc, ...]) unless Bc == Bv and caption_offset == 0 are known"
      " statically (one replica, static shapes)"
    )
  return own


def moment_retrieval_loss(
  logits: tf.Tensor,
  displacements_pred: tf.Tensor,
  labels: tf.Tensor,
  displacements: tf.Tensor,
  frame_weights: tf.Tensor,
  caption_valid: tf.Tensor,
  batch_mask: Optional[tf.Tensor] = None,
  *,
  caption_offset: Optional[TensorLike] = 0,
  caption_batch_mask: Optional[tf.Tensor] = None,
  caption_frame_weights: Optional[tf.Tensor] = None,
  all_pairs: bool = True,
  frame_mask_from_caption_video: bool = False,
  alpha: float = 0.25,
  gamma: float = 2.0,
  box_loss_type: str = "iou",
  classification_loss_alpha: float = 10.0,
) -> dict[str, tf.Tensor]:
  """MR loss with every caption of the batch as negatives (§4.1, §4.2).

  `logits[i, j, k]` is video `i` (of this replica) fused with caption `k` of
  video `j` of the caption batch (all replicas' captions when gathered);
  video `i`'s own captions sit at `j = i + caption_offset` (the diagonal).

  Classification with `all_pairs=True` (the reference's `all_gather_loss`):
  targets are `labels[i]` on the diagonal and 0 off it (other videos'
  captions are negatives at every token); weights
  `batch_mask[i] * caption_batch_mask[j] * caption_valid[j, k] * f[., t]`
  with `f = frame_weights[i]`, or `caption_frame_weights[j]` when
  `frame_mask_from_caption_video=True` (the reference's indexing, a defect:
  the frame mask belongs to the video, not to the caption; the two agree for
  linspace sampling, whose mask is all ones).  Focal loss normalised by the
  sum of these weights.  `all_pairs=False` uses only each video's own
  captions, weights `batch_mask[i] * caption_valid[i + offset, k] *
  frame_weights[i, t]`.

  Box loss: own captions only (the diagonal), positives
  `labels[b, k, t] * batch_mask[b] * caption_valid[b + offset, k] *
  frame_weights[b, t]`.

  Args:
    logits: float relevancy logits.  `[Bv, Bc, K, T]` for every (video,
      caption) pair; Bc == Bv on one replica.  With `all_pairs=False` also
      `[Bv, K, T]` (each video with its own captions only).  A caption axis
      of static size 1 is read as "own captions" (the only consistent
      meaning: a real caption batch has Bc >= Bv).
    displacements_pred: float [Bv, K, T, 2], the box head on each video's OWN
      captions (the diagonal of the pair layout, which the task already
      extracts with the same `caption_offset`).
    labels: {0, 1} [Bv, K, T], this replica's videos' own captions.
    displacements: float [Bv, K, T, 2] targets of the own captions (any
      value, e.g. negative, outside the positives).
    frame_weights: float [Bv, T] token mask of this replica's videos.
    caption_valid: [Bc, K] validity of every caption of the caption batch
      ([Bv, K] when the captions are not gathered).
    batch_mask: float [Bv] or None (ones): real (1) / padded (0) videos.
    caption_offset: int (Python or int32 scalar tensor, e.g. from
      `ops.distribute.gather_rows` divided by K): row of this replica's first
      video in the caption batch.  None means 0.
    caption_batch_mask: float [Bc] batch mask of the caption videos.  If None:
      `batch_mask` when Bc == Bv statically and caption_offset is statically
      0, ones if `batch_mask` is None, a ValueError otherwise.
    caption_frame_weights: float [Bc, T] token masks of the caption videos,
      only read when `frame_mask_from_caption_video`; None defaults like
      `caption_batch_mask` (to `frame_weights`).
    all_pairs: use every (video, caption) pair (True) or own captions only.
    frame_mask_from_caption_video: index the frame mask by j (reference).
    alpha: focal alpha.
    gamma: focal gamma.
    box_loss_type: see `parse_box_loss_type`.
    classification_loss_alpha: weight of the classification loss.

  Returns:
    dict of float32 scalars: `'loss'` (= classification_loss_alpha *
    classification_loss + box_loss), `'classification_loss'`, `'box_loss'`,
    `'<term>_loss'` per box term, `'mean_iou'`, and `'accuracy'` (binary
    accuracy of `logit >= 0` per (pair, token), over the classification
    weights).
  """
  if caption_offset is None:
    caption_offset = 0
  logits = _f32(logits)
  labels = _f32(labels)
  displacements_pred = _f32(displacements_pred)
  frame_weights = _f32(frame_weights)
  caption_valid = _f32(caption_valid)
  if displacements_pred.shape.rank == 5:
    raise ValueError(
      "displacements_pred must be the own-caption (diagonal) predictions"
      f" [Bv, K, T, 2], got {displacements_pred.shape}; gather the diagonal"
      " j = i + caption_offset first"
    )
  _check_rank(displacements_pred, 4, "displacements_pred", "[Bv, K, T, 2]")
  _check_rank(labels, 3, "labels", "[Bv, K, T]")
  _check_rank(_f32(displacements), 4, "displacements", "[Bv, K, T, 2]")
  _check_rank(frame_weights, 2, "frame_weights", "[Bv, T]")
  _check_rank(caption_valid, 2, "caption_valid", "[Bc, K]")
  rank = logits.shape.rank
  if rank == 3 and not all_pairs:
    logits = logits[:, None]  # own captions: a caption axis of size 1
  else:
    _check_rank(logits, 4, "logits", "[Bv, Bc, K, T]")
  static_bv, static_bc = logits.shape[0], logits.shape[1]
  own_only = static_bc == 1  # [Bv, 1, K, T]: each video's own captions
  if own_only and all_pairs and static_bv not in (None, 1):
    raise ValueError(
      f"all_pairs needs logits [Bv, Bc, K, T] with Bc >= Bv, got {logits.shape}"
    )

  bv, bc = tf.shape(logits)[0], tf.shape(logits)[1]
  static_offset = tf.get_static_value(caption_offset)
  same_batch = (
    static_bv is not None
    and static_bv == static_bc
    and static_offset is not None
    and int(static_offset) == 0
  )
  own = tf.range(bv) + tf.cast(caption_offset, tf.int32)  # [Bv] in [0, Bc)
  video_mask = (
    tf.ones([bv], tf.float32) if batch_mask is None else _f32(batch_mask)
  )
  own_caption_valid = tf.gather(caption_valid, own)  # [Bv, K]

  if all_pairs:
    diag = tf.one_hot(own, bc, dtype=tf.float32)  # [Bv, Bc]
    cls_logits = logits
    targets = diag[:, :, None, None] * labels[:, None]  # [Bv, Bc, K, T]
    caption_mask = _caption_side(
      caption_batch_mask,
      None if batch_mask is None else video_mask,
      "caption_batch_mask",
      same_batch,
      [bc],
    )
    if frame_mask_from_caption_video:
      token_mask = _caption_side(
        caption_frame_weights,
        frame_weights,
        "caption_frame_weights",
        same_batch,
        None,
      )[None, :, None, :]
    else:
      token_mask = frame_weights[:, None, None, :]
    cls_weights = (
      video_mask[:, None, None, None]
      * caption_mask[None, :, None, None]
      * caption_valid[None, :, :, None]
      * token_mask
    )
  else:
    if own_only:
      cls_logits = logits[:, 0]  # [Bv, K, T]
    else:
      cls_logits = tf.gather(logits, own, axis=1, batch_dims=1)
    targets = labels
    cls_weights = (
      video_mask[:, None, None]
      * own_caption_valid[:, :, None]
      * frame_weights[:, None, :]
    )

  cls = sigmoid_focal_loss(
    cls_logits[..., None], targets[..., None], cls_weights, alpha, gamma
  )
  correct = _f32(tf.equal(cls_logits >= 0.0, targets > 0.0))

  box_weights = (
    video_mask[:, None, None]
    * own_caption_valid[:, :, None]
    * frame_weights[:, None, :]
  )
  out = _box_metrics(
    displacements_pred, displacements, labels * box_weights, box_loss_type
  )
  out["classification_loss"] = cls
  out["loss"] = classification_loss_alpha * cls + out["box_loss"]
  out["accuracy"] = _normalised_sum(correct, cls_weights)
  return out


def segmentation_loss(
  logits: tf.Tensor, labels: tf.Tensor, weights: Optional[tf.Tensor]
) -> dict[str, tf.Tensor]:
  """AS loss: sigmoid BCE over all classes per valid frame (§4.3).

  Args:
    logits: float [B, T, C].
    labels: {0, 1} [B, T, C], one-hot or all-zero (background).
    weights: float [B, T] = batch_mask * frame mask, or None for all ones.

  Returns:
    dict of float32 scalars: `'loss'` (`sigmoid_cross_entropy`) and
    `'frame_accuracy'` (`top_one_correct` averaged over the weighted frames,
    §4.5 / §6.4).
  """
  logits = _f32(logits)
  weights = _token_weights(weights, logits, "segmentation_loss")
  return {
    "loss": sigmoid_cross_entropy(logits, labels, weights),
    "frame_accuracy": _normalised_sum(top_one_correct(logits, labels), weights),
  }


def classification_loss(
  logits: tf.Tensor,
  labels: tf.Tensor,
  weights: Optional[tf.Tensor] = None,
) -> dict[str, tf.Tensor]:
  """Video-text classification (Kinetics-style pre-training, paper §4.1.2).

  Sigmoid BCE over all classes, summed over classes, normalised by the number
  of (weighted) examples.  Not in the reference (spec §7.4).

  Args:
    logits: float [B, C].
    labels: {0, 1} [B, C] multi-hot.
    weights: float [B] (batch_mask) or None for all ones.

  Returns:
    dict of float32 scalars: `'loss'` and `'precision@1'` (fraction of
    weighted examples whose arg-max class is a positive; no background rule).
  """
  logits = _f32(logits)
  labels = _f32(labels)
  weights = _token_weights(weights, logits, "classification_loss")
  top1 = tf.one_hot(
    tf.argmax(logits, axis=-1), tf.shape(logits)[-1], dtype=tf.float32
  )
  hit = _f32(tf.reduce_sum(top1 * labels, axis=-1) > 0.0)
  return {
    "loss": sigmoid_cross_entropy(logits, labels, weights),
    "precision@1": _normalised_sum(hit, weights),
  }
