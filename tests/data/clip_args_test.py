"""Tests of unloc_tf.data.clip_args (clip and seed arguments)."""

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.data import clip_args


def test_check_clip_accepts_uint8_clips_and_names_the_op():
  clip = clip_args.check_clip(np.zeros([2, 4, 5, 3], np.uint8), "op")
  assert isinstance(clip, tf.Tensor) and clip.shape == (2, 4, 5, 3)
  with pytest.raises(ValueError, match="op expects uint8 frames"):
    clip_args.check_clip(tf.zeros([2, 4, 5, 3]), "op")
  with pytest.raises(ValueError, match=r"op expects frames of shape"):
    clip_args.check_clip(tf.zeros([4, 5, 3], tf.uint8), "op")


def test_as_seed_and_split_seed():
  assert clip_args.as_seed([1, 2]).dtype == tf.int32
  assert clip_args.as_seed(tf.constant([1, 2], tf.int64)).dtype == tf.int64
  with pytest.raises(ValueError, match="int32 or int64"):
    clip_args.as_seed(tf.constant([1.0, 2.0]))
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
    clip_args.as_seed([1, 2, 3])  # not [2]
  seeds = clip_args.split_seed(clip_args.as_seed([3, 4]), 4)
  assert len(seeds) == 4 and all(s.shape == (2,) for s in seeds)
  assert len({tuple(s.numpy()) for s in seeds}) == 4
  # Stateless: the same seed splits the same way.
  again = clip_args.split_seed(tf.constant([3, 4]), 4)
  for a, b in zip(seeds, again):
    np.testing.assert_array_equal(a, b)
