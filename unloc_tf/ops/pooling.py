"""Masked means and text-token pooling (reference_spec.md §2.5).

`pool_text` reduces text-tower states [N, L, D] to one vector per text, as the
reference's `model_utils.extract_emb` does before early fusion:
  * `"eos"`: the state at `argmax(token_ids)` of each row. CLIP's EOS id
    (49407) is the largest id, so this is the EOS position. For a caption
    truncated before its EOS the argmax is BOS (49406, larger than every
    word piece), i.e. position 0 (the reference rule, kept). Ties go to the
    first position.
  * `"token"`: the state at position 0.
  * `"gap"`: the mean over the positions where `mask` is 1.

Written with `keras.ops`, so it works on TF tensors, inside
`tf.function(jit_compile=True)`, and on symbolic Keras tensors.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import keras
from keras import ops

TEXT_POOLING_MODES = ("eos", "token", "gap")


def _tensor(x: Any) -> Any:
  """Backend tensor for array-likes; symbolic Keras tensors pass through."""
  if x is None or isinstance(x, keras.KerasTensor):
    return x
  return ops.convert_to_tensor(x)


def masked_mean(x: Any, mask: Any, axis: Union[int, Sequence[int]]) -> Any:
  """Mean of `x` over `axis`, counting only entries where `mask` is non-zero.

  `mask` has the leading dims of `x` (rank <= rank of x) and is broadcast
  over the trailing ones, e.g. x [N, L, D] with mask [N, L]. Non-binary
  masks act as weights. Where the mask sums to 0 the result is 0 (the
  reference divides by the count and would give NaN there, e.g. for an
  all-padding caption slot).

  Args:
    x: Float tensor.
    mask: Bool/int/float tensor whose shape is a prefix of x's shape.
    axis: Axis or axes of `x` to average over.

  Returns:
    `x` reduced over `axis`.
  """
  x = _tensor(x)
  mask = ops.cast(_tensor(mask), x.dtype)
  extra = len(x.shape) - len(mask.shape)
  if extra < 0:
    raise ValueError(
        f"mask rank ({len(mask.shape)}) exceeds x rank ({len(x.shape)}).")
  for _ in range(extra):
    mask = ops.expand_dims(mask, -1)
  weights = ops.broadcast_to(mask, ops.shape(x))
  total = ops.sum(x * weights, axis=axis)
  count = ops.sum(weights, axis=axis)
  return ops.divide_no_nan(total, count)


def pool_text(states: Any, token_ids: Optional[Any], mask: Optional[Any],
              mode: str = "eos") -> Any:
  """One vector per text from its token states.

  Args:
    states: Float [N, L, D] text-tower states.
    token_ids: Int [N, L] token ids (needed for `"eos"`, and for `"gap"`
      when `mask` is None).
    mask: [N, L] 1 on real tokens, or None: for `"gap"` the reference's
      padding rule `token_ids > 0` is used. Unused by `"eos"` and `"token"`.
    mode: `"eos"`, `"token"` or `"gap"` (see the module docstring).

  Returns:
    Float [N, D].
  """
  states, token_ids, mask = _tensor(states), _tensor(token_ids), _tensor(mask)
  if mode == "eos":
    if token_ids is None:
      raise ValueError("pool_text(mode='eos') needs token_ids.")
    index = ops.argmax(token_ids, axis=-1)                  # [N]
    index = ops.reshape(ops.cast(index, "int32"), (-1, 1, 1))
    return ops.take_along_axis(states, index, axis=1)[:, 0]
  if mode == "token":
    return states[:, 0]
  if mode == "gap":
    if mask is None:
      if token_ids is None:
        raise ValueError("pool_text(mode='gap') needs a mask or token_ids.")
      mask = ops.greater(token_ids, 0)
    return masked_mean(states, mask, axis=1)
  raise ValueError(f"mode must be one of {TEXT_POOLING_MODES}, got {mode!r}.")
