"""What every UnLoc task model shares: `UnlocTask` and `TaskResults`.

A task model is a backbone (towers → fusion → pyramid, `UnlocBackbone`) plus
a head, and owns the three things that differ per task:

* `loss_terms(batch, outputs)` — the task's loss (reference_spec.md §4);
  `compute_loss` divides it by the replicas in sync, so the optimizer's
  cross-replica SUM of gradients is the global-batch gradient;
* `decode(outputs, batch, settings)` — dense outputs → detections in
  seconds (reference_spec.md §5, `unloc_tf.postprocess`); evaluation and the
  exported SavedModel both call it, so they cannot disagree;
* `new_results(settings)` — a host-side `TaskResults` that gathers decoded
  batches into the official metrics and prediction files.

`forward` runs the model with prompt ensembling (§5.1): class names tokenised
with P prompt templates are scored once per prompt and the RAW outputs are
averaged before `decode`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import postprocess, spec
from unloc_tf.metrics import localization
from unloc_tf.models import unloc_backbone
from unloc_tf.ops import distribute

# Text a task reads: a class list shared by the batch (TAL, AS, CLS), the
# queries of each video (MR: K captions; HD: one), or none (video-only TAL).
CLASS_NAMES = "class_names"
QUERIES = "queries"

# dtypes of the model inputs, for building a model from shapes alone.
_INPUT_DTYPES = {
    spec.FRAMES: "uint8",
    spec.FRAME_EMBEDDINGS: "float32",
    spec.TEXT_EMBEDDINGS: "float32",
}
_TEXT_KEYS = (spec.TEXT_IDS, spec.TEXT_MASK, spec.TEXT_EMBEDDINGS,
              spec.TEXT_VALID)


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """Post-processing of the dense outputs (reference_spec.md §5).

  Attributes:
    max_detections: M, detections kept per video (per caption for MR).
    score_threshold: candidates need `sigmoid(logit) >= score_threshold`.
    soft_nms_sigma: Gaussian Soft-NMS sigma.
    per_class: Soft-NMS per class (TAL) instead of class-agnostic.
    background_logit_threshold: AS frames whose max logit is `<=` this are
      background.
    saliency_max_clips, secs_per_clip: HD per-clip saliency outputs.
  """

  max_detections: int = 100
  score_threshold: float = 0.001
  soft_nms_sigma: float = 0.3
  per_class: bool = False
  background_logit_threshold: float = 0.0
  saliency_max_clips: int = 75
  secs_per_clip: float = 2.0


@dataclasses.dataclass(frozen=True)
class MetricSettings:
  """What the official metrics need besides the predictions.

  Attributes:
    class_names: names of the output classes (TAL / AS / CLS results).
    tiou_thresholds: ActivityNet mAP thresholds (TAL / HD).
    recall_ks, recall_thresholds, recall_rule: MR Recall@K,IoU=m (">=" as
      UnLoc and VSLNet, ">" as 2D-TAN).
    decode: the post-processing settings (AS uses the background rule).
  """

  class_names: Optional[Tuple[str, ...]] = None
  tiou_thresholds: Tuple[float, ...] = tuple(
      float(t) for t in localization.DEFAULT_TIOU_THRESHOLDS)
  recall_ks: Tuple[int, ...] = (1, 5)
  recall_thresholds: Tuple[float, ...] = (0.3, 0.5, 0.7)
  recall_rule: str = ">="
  decode: DecodeSettings = DecodeSettings()

  def class_name(self, c: int) -> str:
    """Name of output class c (its index as a string when unknown)."""
    if self.class_names and 0 <= c < len(self.class_names):
      return self.class_names[c]
    return str(c)


def video_key(batch: Dict[str, np.ndarray], i: int) -> str:
  """`media_id`, or `media_id#example_id` for per-query records."""
  vid = batch[spec.VIDEO_ID][i]
  vid = vid.decode() if isinstance(vid, bytes) else str(vid)
  eid = -1
  if spec.EXAMPLE_ID_KEY in batch:
    eid = int(batch[spec.EXAMPLE_ID_KEY][i])
  return f"{vid}#{eid}" if eid >= 0 else vid


def real_rows(batch: Dict[str, np.ndarray]) -> List[int]:
  """Rows of a host batch that are real examples (not evaluation padding)."""
  mask = batch.get("batch_mask")
  n = len(batch[spec.VIDEO_ID]) if mask is None else len(mask)
  return [i for i in range(n) if mask is None or mask[i]]


class TaskResults:
  """Gathers decoded batches on the host; gives metrics and predictions.

  `add` takes numpy batches (the pipeline's keys) and the numpy output of
  the task's `decode` for them; rows whose `batch_mask` is 0 are padding.
  """

  def __init__(self, settings: MetricSettings):
    self.settings = settings

  def add(self, batch: Dict[str, np.ndarray],
          detections: Dict[str, np.ndarray]) -> None:
    raise NotImplementedError

  def metrics(self) -> Dict[str, float]:
    """The official metrics of everything added."""
    raise NotImplementedError

  def predictions(self) -> Any:
    """What was predicted, in the structure the prediction files hold."""
    raise NotImplementedError

  def detections(self) -> Dict[str, List[dict]]:
    """{example key: [{"label" or "query", "segment": [s, e], "score"}]}."""
    raise NotImplementedError

  def write_predictions(self, path_prefix: str) -> Optional[str]:
    """Writes the predictions in the benchmark's official format, if it has
    one; returns the path (None: nothing written)."""
    del path_prefix
    return None


class UnlocTask(keras.Model):
  """Base class of the task models (see the module docstring).

  Args:
    backbone: an `UnlocBackbone` (or its serialised config).
    head: the task head (or its config), or None for a head the subclass
      builds itself.
  """

  task: str = ""

  def __init__(self, backbone, head=None, **kwargs):
    super().__init__(**kwargs)
    self.backbone = unloc_backbone.maybe_deserialize(backbone)
    self.head = unloc_backbone.maybe_deserialize(head)

  # -- what the task reads -------------------------------------------------
  @property
  def text_kind(self) -> Optional[str]:
    """`CLASS_NAMES`, `QUERIES` or None (the model reads no text)."""
    return CLASS_NAMES

  @property
  def texts_per_video(self) -> Optional[int]:
    """How many text items each video reads, when the task fixes it (HD:
    its one query), else None."""
    return None

  # -- building ------------------------------------------------------------
  def build(self, input_shape: Dict[str, Sequence[Optional[int]]]):
    """Creates every variable by tracing `call` on symbolic inputs.

    Which sub-layers run depends on the batch keys (frames or cached
    embeddings, token ids or cached text), so the trace uses the first
    batch's keys and shapes; no value is computed.
    """
    inputs = {
        key: keras.KerasTensor(shape, _INPUT_DTYPES.get(key, "int32"))
        for key, shape in input_shape.items()
        if key in _INPUT_DTYPES or key in (spec.FRAME_MASK, spec.TEXT_IDS,
                                           spec.TEXT_MASK, spec.TEXT_VALID)}
    self.compute_output_spec(inputs)
    self.backbone.built = True  # used through its methods, never called
    self.built = True

  # -- training ------------------------------------------------------------
  def loss_terms(self, batch: Dict[str, tf.Tensor],
                 outputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """{"loss": scalar, and its parts} for one replica's batch."""
    raise NotImplementedError

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del y, sample_weight
    if y_pred is None:
      y_pred = self(x, training=training)
    out = self.loss_terms(x, y_pred)
    self.last_losses = out
    return out["loss"] / tf.cast(distribute.num_replicas(), tf.float32)

  # -- prediction ----------------------------------------------------------
  def forward(self, inputs: Dict[str, tf.Tensor],
              num_prompts: int = 1) -> Dict[str, tf.Tensor]:
    """Dense outputs with prompt ensembling (reference_spec.md §5.1).

    Args:
      inputs: a batch.  Class names with a prompt axis (`text_ids` /
        `text_mask` [B, P, C, L], or `text_embeddings` [B, P, C, De]) are
        run once per prompt; otherwise the model runs once.
      num_prompts: P when the class rows are already flat and class-major
        ([B, C * P, L], as the serving signature takes them): one pass,
        then the outputs of each class's P rows are averaged.

    Returns:
      The outputs of `call`, with the raw logits and displacements averaged
      over the prompts.
    """
    inputs = {k: v for k, v in inputs.items() if v.dtype != tf.string}
    text = inputs.get(spec.TEXT_IDS, inputs.get(spec.TEXT_EMBEDDINGS))
    if text is not None and len(text.shape) == 4:
      per_prompt = []
      for p in range(text.shape[1]):
        one = dict(inputs)
        for key in _TEXT_KEYS:
          if key in one and len(one[key].shape) >= 3:
            one[key] = one[key][:, p]
        per_prompt.append(self(one, training=False))
      return postprocess.ensemble_prompts(per_prompt)
    out = self(inputs, training=False)
    if num_prompts == 1:
      return out
    return average_class_major_prompts(out, num_prompts)

  def decode(self, outputs: Dict[str, tf.Tensor], batch: Dict[str, tf.Tensor],
             settings: DecodeSettings = DecodeSettings()
             ) -> Dict[str, tf.Tensor]:
    """Dense outputs → detections (seconds), as evaluation and serving."""
    raise NotImplementedError

  def new_results(self, settings: MetricSettings) -> TaskResults:
    """An empty host-side accumulator for this task's official metrics."""
    raise NotImplementedError

  # -- serialisation -------------------------------------------------------
  def task_config(self) -> Dict[str, Any]:
    """The subclass's own constructor arguments (for `get_config`)."""
    return {}

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config["backbone"] = unloc_backbone.serialize_sublayer(self.backbone)
    if self.head is not None:
      config["head"] = unloc_backbone.serialize_sublayer(self.head)
    config.update(self.task_config())
    return config


# ---------------------------------------------------------------------------
# Helpers of the class-name tasks (TAL, AS, CLS).
# ---------------------------------------------------------------------------
def average_class_major_prompts(outputs: Dict[str, tf.Tensor],
                                num_prompts: int) -> Dict[str, tf.Tensor]:
  """Outputs over class-major rows (output class c * P + p) → the raw logits
  and displacements of each class averaged over its P prompts.

  Args:
    outputs: {"logits": [B, T, C * P], "displacements": [B, T, C * P, 2]
      (optional), ...}.
    num_prompts: P.
  """
  logits = outputs["logits"]
  shape = tf.shape(logits)
  stacked = {"logits": tf.transpose(
      tf.reshape(logits, [shape[0], shape[1], -1, num_prompts]),
      [3, 0, 1, 2])}
  if "displacements" in outputs:
    stacked["displacements"] = tf.transpose(
        tf.reshape(outputs["displacements"],
                   [shape[0], shape[1], -1, num_prompts, 2]),
        [3, 0, 1, 2, 4])
  result = dict(outputs)
  result.update(postprocess.ensemble_prompts(stacked))
  return result


def class_text(inputs: Dict[str, tf.Tensor]):
  """Class-name text of a batch: row 0 of the (tiled) class table.

  Returns:
    (ids [C, L] or None, mask [C, L] or None, embeddings [C, De] or None).
  """
  ids = inputs.get(spec.TEXT_IDS)
  emb = inputs.get(spec.TEXT_EMBEDDINGS)
  if ids is not None:
    if len(ids.shape) != 3:
      raise ValueError(f"'{spec.TEXT_IDS}' must be [B, C, L] (one prompt per"
                       f" class); got shape {ids.shape}")
    return ids[0], inputs[spec.TEXT_MASK][0], None
  if emb is not None:
    return None, None, emb[0]
  return None, None, None


def fuse_with_class_names(backbone, inputs, training=False):
  """Every video of the batch fused with every class name.

  Returns:
    The fusion's dict: tokens [B, C, T, D], mask [B, C, T], text [B, C, D].
  """
  video = backbone.encode_video(inputs, training=training)
  ids, mask, emb = class_text(inputs)
  text, text_mask, _ = backbone.text_features(ids, mask, emb,
                                              training=training)
  return backbone.fuse(video, inputs[spec.FRAME_MASK], text=text,
                       text_mask=text_mask, pairing="all", training=training)


def token_weights(inputs, token_mask):
  """Loss weights per token: token mask × batch mask (evaluation padding)."""
  weights = tf.cast(token_mask, tf.float32)
  if "batch_mask" in inputs:
    weights *= tf.cast(inputs["batch_mask"], tf.float32)[:, None]
  return weights
