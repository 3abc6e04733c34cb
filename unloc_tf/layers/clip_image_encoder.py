"""CLIP image tower applied to every frame of a clip (reference_spec.md §2.2).

`CLIPImageEncoder` turns a clip [B, T, H, W, 3] into one token per frame
[B, T, Dv] (the reference's `clip_video_encoder` with final endpoint
`temporal_tokens`). Frames are encoded independently (time is folded into the
batch); the tower has no temporal mixing.

Per frame: bias-free Conv2D(Dv, p, stride p) patch embedding -> (token mode)
prepend the CLS vector *of this frame position* -> add the learned positional
embedding (shared by all frames) -> `ln_pre` -> `num_layers` keras-hub
`CLIPEncoderLayer` blocks (pre-LN, quick-GELU, no causal mask) -> `ln_post`
on every token -> frame token = CLS output (`"token"`) or mean of the patch
outputs (`"gap"`). There is no CLIP `proj` inside the tower; the model's
`video_projection` follows it.

Differences from a stock CLIP / keras-hub `CLIPVisionEncoder`:
  * the CLS embedding is a `(num_frames, Dv)` table, one learnable vector per
    frame position (the reference's `class_embedding`), initialised here by
    tiling one random vector (the reference's fresh init draws independent
    rows, but every released config loads it from a checkpoint, and CLIP
    initialisation tiles CLIP's single vector: §7.3);
  * the positional embedding is a plain `(1 + P, Dv)` or `(P, Dv)` weight, so
    there are no `position_ids` to forget (keras-hub's are all zeros in a
    fresh encoder, dependencies.md §B gotcha 1);
  * `"gap"` mode has no CLS token at all.

Weights, for a checkpoint converter (Keras paths under the layer's name;
reference names from §2.11 in brackets):
  * `patch_embedding.kernel` (p, p, 3, Dv)  [`conv1/kernel` (p*p*3, Dv),
    flattened in (row, col, channel) order: a plain reshape];
  * `class_embedding` (num_frames, Dv), token mode only, else None
    [`class_embedding`];
  * `position_embedding` (1 + P or P, Dv)
    [`VisionTransformer/positional_embedding`];
  * `ln_pre.{gamma,beta}`, `ln_post.{gamma,beta}` [`ln_pre`, `ln_post`
    `{scale,bias}`];
  * `blocks[i]` = keras-hub `CLIPEncoderLayer` named `resblocks_{i}`
    [`transformer/resblocks.{i}`]: `layer_norm_1` [`ln_1`],
    Keras `MultiHeadAttention` `attention` whose EinsumDense sub-layers
    (attributes `_query_dense`, `_key_dense`, `_value_dense`,
    `_output_dense`; paths `attention/{query,key,value,attention_output}`)
    hold kernels (Dv, heads, Dv/heads) with biases (heads, Dv/heads), and
    the output kernel (heads, Dv/heads, Dv) with bias (Dv,)
    [`attn/{query,key,value,out}`, same layout], `layer_norm_2` [`ln_2`],
    `dense_1` [`mlp/c_fc`], `dense_2` [`mlp/c_proj`].
  Variable paths look like `clip_image_encoder/resblocks_0/attention/query/
  kernel`.

`adapt_class_embedding` and `adapt_position_embedding` reproduce the
reference's shape adaptations when loading CLIP or UnLoc weights (§7.3).

Dimensions: B batch, T frames, H = W = image_size, p patch size,
P = (image_size / p)^2 patches, Dv = hidden_dim.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops
from keras_hub.src.models.clip.clip_layers import CLIPEncoderLayer

# keras-hub 0.32 has no public alias of CLIPEncoderLayer (keras_hub.layers
# exports only the image converters), hence the `src` import above.

FRAME_TOKEN_MODES = ("token", "gap")
# OpenAI CLIP normalisation constants (same values as unloc_tf.data.augment;
# layers may not import data, so they are repeated here).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class _TiledRandomNormal(keras.initializers.Initializer):
  """Draws one N(0, stddev) row of width shape[-1] and tiles it to `shape`."""

  def __init__(self, stddev: float):
    self.stddev = float(stddev)

  def __call__(self, shape, dtype=None):
    row = keras.initializers.RandomNormal(stddev=self.stddev)(
        (1, shape[-1]), dtype=dtype)
    return ops.tile(row, (shape[0], 1))

  def get_config(self):
    return {"stddev": self.stddev}


def clip_blocks(num_layers: int, hidden_dim: int, num_heads: int,
                intermediate_dim: int, causal: bool, dtype=None) -> list:
  """`num_layers` keras-hub CLIP residual blocks (quick-GELU MLP, LN eps
  1e-5), named `resblocks_{i}` as the reference's parameter tree."""
  return [
      CLIPEncoderLayer(hidden_dim, num_heads, intermediate_dim,
                       intermediate_activation="quick_gelu",
                       use_causal_mask=causal, dtype=dtype,
                       name=f"resblocks_{i}")
      for i in range(num_layers)
  ]


@keras.saving.register_keras_serializable(package="unloc_tf")
class CLIPImageEncoder(keras.layers.Layer):
  """Frame-wise CLIP ViT producing one token per frame.

  Args:
    patch_size: Side p of the square patches (16 for B/16, 14 for L/14).
    hidden_dim: Width Dv of the tower (768 B/16, 1024 L/14).
    num_layers: Number of residual attention blocks (12 B/16, 24 L/14).
    num_heads: Attention heads per block (12 B/16, 16 L/14).
    intermediate_dim: Hidden width of the MLPs (4 * hidden_dim in CLIP).
    image_size: Side of the square input frames; a multiple of `patch_size`.
    num_frames: Number of frames T (= level-0 tokens N0). Sets the number of
      rows of the per-frame CLS table; in `"token"` mode the input must have
      exactly this many frames (in `"gap"` mode any T works).
    frame_token: `"token"`: a per-frame-position CLS token is prepended and
      its output is the frame token. `"gap"`: no CLS token; the frame token
      is the mean of the patch outputs.
    layer_norm_epsilon: Epsilon of `ln_pre` and `ln_post` (CLIP: 1e-5; the
      blocks' own LayerNorms use keras-hub's fixed 1e-5).
    normalize_input: If True, inputs are pixels on the 0..255 scale (uint8
      or float) and are normalised inside with CLIP's mean/std:
      `x * (1 / (255 std)) - mean / std`. If False, inputs are float frames
      already normalised.
    remat: If True, every block is rematerialised in the backward pass
      (`keras.remat`, i.e. `tf.recompute_grad`): its activations are
      recomputed instead of stored; same values (the reference's
      `remat_block`).
    **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

  Call args:
    frames: [B, T, H, W, 3] uint8 or float (see `normalize_input`). T, H, W
      must be static; B may be dynamic.
    training: Forwarded to the blocks (no dropout in CLIP).

  Returns:
    Float tensor [B, T, hidden_dim]: one token per frame.
  """

  def __init__(
      self,
      patch_size: int = 16,
      hidden_dim: int = 768,
      num_layers: int = 12,
      num_heads: int = 12,
      intermediate_dim: int = 3072,
      image_size: int = 224,
      num_frames: int = 128,
      frame_token: str = "token",
      layer_norm_epsilon: float = 1e-5,
      normalize_input: bool = True,
      remat: bool = False,
      **kwargs,
  ):
    super().__init__(**kwargs)
    if frame_token not in FRAME_TOKEN_MODES:
      raise ValueError(
          f"frame_token must be one of {FRAME_TOKEN_MODES}, got "
          f"{frame_token!r}.")
    if image_size % patch_size:
      raise ValueError(
          f"image_size ({image_size}) must be a multiple of patch_size "
          f"({patch_size}).")
    if hidden_dim % num_heads:
      raise ValueError(
          f"hidden_dim ({hidden_dim}) must be divisible by num_heads "
          f"({num_heads}).")
    # === Config ===
    self.patch_size = int(patch_size)
    self.hidden_dim = int(hidden_dim)
    self.num_layers = int(num_layers)
    self.num_heads = int(num_heads)
    self.intermediate_dim = int(intermediate_dim)
    self.image_size = int(image_size)
    self.num_frames = int(num_frames)
    self.frame_token = str(frame_token)
    self.layer_norm_epsilon = float(layer_norm_epsilon)
    self.normalize_input = bool(normalize_input)
    self.remat = bool(remat)
    self.num_patches = (self.image_size // self.patch_size) ** 2
    self.num_tokens = self.num_patches + (self.frame_token == "token")

    # === Layers ===
    self.patch_embedding = keras.layers.Conv2D(
        self.hidden_dim,
        kernel_size=self.patch_size,
        strides=self.patch_size,
        padding="valid",
        use_bias=False,
        # The reference's `conv1` is a Flax Dense: lecun_normal, and the Dense
        # fan-in p*p*3 equals the Conv2D fan-in.
        kernel_initializer="lecun_normal",
        dtype=self.dtype_policy,
        name="patch_embedding",
    )
    self.ln_pre = keras.layers.LayerNormalization(
        epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="ln_pre")
    self.blocks = clip_blocks(self.num_layers, self.hidden_dim,
                              self.num_heads, self.intermediate_dim,
                              causal=False, dtype=self.dtype_policy)
    self.ln_post = keras.layers.LayerNormalization(
        epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
        name="ln_post")
    self.class_embedding = None
    self.position_embedding = None

  def build(self, frames_shape=None):
    if frames_shape is not None:
      self._check_shape(frames_shape)
    scale = self.hidden_dim**-0.5  # CLIP's init scale for both embeddings.
    if self.frame_token == "token":
      self.class_embedding = self.add_weight(
          shape=(self.num_frames, self.hidden_dim),
          initializer=_TiledRandomNormal(scale),
          name="class_embedding",
      )
    self.position_embedding = self.add_weight(
        shape=(self.num_tokens, self.hidden_dim),
        initializer=keras.initializers.RandomNormal(stddev=scale),
        name="position_embedding",
    )
    s = self.image_size
    self.patch_embedding.build((None, s, s, 3))
    token_shape = (None, self.num_tokens, self.hidden_dim)
    self.ln_pre.build(token_shape)
    for block in self.blocks:
      block.build(token_shape)
    self.ln_post.build(token_shape)
    self.built = True

  def _check_shape(self, shape):
    shape = tuple(shape)
    if len(shape) != 5 or shape[-1] != 3:
      raise ValueError(
          f"CLIPImageEncoder expects frames [B, T, H, W, 3], got {shape}.")
    _, t, h, w, _ = shape
    if t is None:
      raise ValueError(f"The number of frames must be static, got {shape}.")
    if h != self.image_size or w != self.image_size:
      raise ValueError(
          f"CLIPImageEncoder(image_size={self.image_size}) got frames of "
          f"size {h}x{w} (shape {shape}).")
    if self.frame_token == "token" and t != self.num_frames:
      raise ValueError(
          f"CLIPImageEncoder in 'token' mode has a CLS table of "
          f"num_frames={self.num_frames} rows but got T={t} frames "
          f"(shape {shape}).")

  def _normalize(self, frames):
    if not self.normalize_input:
      return ops.cast(frames, self.compute_dtype)
    scale = np.array([1.0 / (255.0 * s) for s in CLIP_STD], np.float32)
    offset = np.array([-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)],
                      np.float32)
    x = ops.cast(frames, "float32") * scale + offset
    return ops.cast(x, self.compute_dtype)

  def call(self, frames, training=False):
    self._check_shape(frames.shape)
    t = frames.shape[1]
    s = self.image_size
    x = self._normalize(frames)
    x = ops.reshape(x, (-1, s, s, 3))                       # [B*T, H, W, 3]
    x = self.patch_embedding(x)                             # [B*T, h, w, Dv]
    x = ops.reshape(x, (-1, self.num_patches, self.hidden_dim))
    if self.frame_token == "token":
      # Row b*T + t of the folded batch gets the CLS vector of frame t.
      cls = ops.broadcast_to(
          self.class_embedding[None],
          (ops.shape(frames)[0], t, self.hidden_dim))
      cls = ops.reshape(cls, (-1, 1, self.hidden_dim))      # [B*T, 1, Dv]
      x = ops.concatenate([ops.cast(cls, x.dtype), x], axis=1)
    x = x + ops.cast(self.position_embedding, x.dtype)[None]
    x = self.ln_pre(x)
    for block in self.blocks:
      if self.remat:
        # Not `keras.RematScope`: Keras then hands `training` to
        # `tf.recompute_grad` as a keyword, which graph mode rejects. The
        # closure takes the activations positionally and nothing else.
        x = keras.remat(lambda h, b=block: b(h, training=training))(x)
      else:
        x = block(x, training=training)
    x = self.ln_post(x)                                     # [B*T, S, Dv]
    if self.frame_token == "token":
      x = x[:, 0]
    else:
      x = ops.mean(x, axis=1)
    return ops.reshape(x, (-1, t, self.hidden_dim))         # [B, T, Dv]

  def compute_output_shape(self, frames_shape):
    return (frames_shape[0], frames_shape[1], self.hidden_dim)

  def get_config(self):
    config = super().get_config()
    config.update({
        "patch_size": self.patch_size,
        "hidden_dim": self.hidden_dim,
        "num_layers": self.num_layers,
        "num_heads": self.num_heads,
        "intermediate_dim": self.intermediate_dim,
        "image_size": self.image_size,
        "num_frames": self.num_frames,
        "frame_token": self.frame_token,
        "layer_norm_epsilon": self.layer_norm_epsilon,
        "normalize_input": self.normalize_input,
        "remat": self.remat,
    })
    return config


# ---------------------------------------------------------------------------
# Shape adaptation of pretrained weights (reference_spec.md §7.3).
# ---------------------------------------------------------------------------
def _resize_linear(x: np.ndarray, new_len: int, axis: int) -> np.ndarray:
  """Linear resampling along `axis` with the end points kept (align corners).

  Same sample positions as `scipy.ndimage.zoom(order=1)` (its default
  `grid_mode=False`), which the reference uses: output i reads input
  position i * (n - 1) / (new_len - 1) (position 0 if either length is 1).

  Args:
    x: float64 array.
    new_len: Output length along `axis`.
    axis: Axis to resample.

  Returns:
    float64 array with `new_len` entries along `axis`.
  """
  n = x.shape[axis]
  if new_len == n:
    return x
  if n == 1 or new_len == 1:
    pos = np.zeros(new_len)
  else:
    pos = np.arange(new_len) * ((n - 1) / (new_len - 1))
  lo = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
  hi = np.minimum(lo + 1, n - 1)
  w_shape = [1] * x.ndim
  w_shape[axis] = new_len
  w = (pos - lo).reshape(w_shape)
  return np.take(x, lo, axis=axis) * (1.0 - w) + np.take(x, hi, axis=axis) * w


def adapt_class_embedding(class_embedding: np.ndarray,
                          num_frames: int) -> np.ndarray:
  """Fits a pretrained class embedding to a (num_frames, D) CLS table.

  * (D,) (CLIP's single vector): tiled to every frame position.
  * (N, D) (an UnLoc checkpoint): linearly interpolated along time, end rows
    kept (reference: `scipy.ndimage.zoom(order=1)`); N == num_frames is a
    copy.

  Args:
    class_embedding: (D,) or (N, D) array.
    num_frames: Number of rows of the target table.

  Returns:
    (num_frames, D) array of the input dtype.
  """
  c = np.asarray(class_embedding)
  if c.ndim == 1:
    return np.tile(c[None], (num_frames, 1))
  if c.ndim != 2:
    raise ValueError(
        f"class_embedding must be (D,) or (N, D), got shape {c.shape}.")
  return _resize_linear(c.astype(np.float64), num_frames, 0).astype(c.dtype)


def _grid_side(num_patches: int, what: str) -> int:
  side = math.isqrt(num_patches)
  if side * side != num_patches:
    raise ValueError(
        f"{what}: {num_patches} patch positions do not form a square grid.")
  return side


def adapt_position_embedding(pos: np.ndarray, num_tokens: int, has_cls: bool,
                             source_has_cls: bool | None = None) -> np.ndarray:
  """Fits a pretrained ViT positional embedding to another token count.

  The patch rows form a square grid that is resized bilinearly with the
  corners kept (reference: `scipy.ndimage.zoom(order=1)` on the
  (side, side, D) grid, `vivit model_utils.interpolate_positional_embeddings`).
  A CLS row of the source (row 0) is kept when the target has one
  (`has_cls`, "token" mode) and dropped otherwise ("gap" mode).

  Args:
    pos: (1 + P_src, D) or (P_src, D) pretrained embedding.
    num_tokens: Rows of the target (`CLIPImageEncoder.position_embedding`):
      1 + P with a CLS row, P without.
    has_cls: Whether the target has a CLS row.
    source_has_cls: Whether `pos` has a CLS row. None: inferred from the row
      count (a square number of rows means no CLS row; CLIP checkpoints
      always have one).

  Returns:
    (num_tokens, D) array of the input dtype.

  Raises:
    ValueError: if a grid is not square, or the target needs a CLS row the
      source does not have.
  """
  pos = np.asarray(pos)
  if pos.ndim != 2:
    raise ValueError(f"pos must be (N, D), got shape {pos.shape}.")
  if source_has_cls is None:
    n = pos.shape[0]
    source_has_cls = math.isqrt(n) ** 2 != n
  if has_cls and not source_has_cls:
    raise ValueError(
        "The target has a CLS position but the source embedding has none; "
        "keep the target's own CLS row and adapt the grid rows with "
        "has_cls=False.")
  grid = pos[1:] if source_has_cls else pos
  src_side = _grid_side(grid.shape[0], "source")
  dst_side = _grid_side(num_tokens - int(has_cls), "target")
  g = grid.astype(np.float64).reshape(src_side, src_side, -1)
  g = _resize_linear(_resize_linear(g, dst_side, 0), dst_side, 1)
  g = g.reshape(dst_side * dst_side, -1).astype(pos.dtype)
  if has_cls:
    return np.concatenate([pos[:1], g], axis=0)
  return g
