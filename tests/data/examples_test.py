"""Per-example processing: one record → one example (AS: one per window)."""

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import augment, examples, input_config, records

Seg = records.Segment
N0 = 8
PYR = spec.PyramidSpec(N0, num_levels=2, regression_ranges=((0, 2),
                                                            (2, np.inf)))
CLASSES = ("jump", "run", "swim")


def _config(task, **kw):
  base = dict(task=task, num_frames=N0, pyramid=PYR, crop_size=16,
              min_resize=20, max_text_length=8, max_num_segments=4,
              secs_per_timestep=0.5, num_classes=3, class_names=CLASSES)
  base.update(kw)
  return input_config.InputConfig(**base)


def _parsed(tmp_path, proc, rec):
  [path] = fixtures.write(tmp_path, "d", [rec])
  raw = next(iter(tf.data.TFRecordDataset(path)))
  return proc.parse(tf.constant(path), tf.constant(0, tf.int64), raw)


@pytest.mark.parametrize("is_training", [True, False])
def test_decode_and_crop_fast_path_equals_full_decode(tmp_path, is_training):
  """Frames stored at the target short side decode only the crop; the
  pixels are the ones preprocess_clip gives on the fully decoded clip."""
  rec = fixtures.video_record("v", n=10, segments=[Seg(1, 4, 0)])
  cfg = _config(spec.TAL, min_resize=24, crop_size=16, rand_augment=True)
  proc = examples.Processor(cfg, is_training, validate=True)
  p = _parsed(tmp_path, proc, rec)
  indices = tf.constant([0, 1, 3, 4, 5, 6, 8, 9])
  seed = tf.constant([5, 11], tf.int64)
  fast = proc._visual(p, indices, seed)[spec.FRAMES].numpy()
  decoded = tf.stack([tf.io.decode_jpeg(p[spec.IMAGE_ENCODED][i])
                      for i in indices.numpy()])
  slow = augment.preprocess_clip(
      decoded, is_training=is_training, seed=seed, crop_size=16,
      min_resize=24, rand_augment=True, normalize_output=False).numpy()
  np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("task", [spec.TAL, spec.AS])
def test_examples_have_the_described_shapes(tmp_path, task):
  rec = fixtures.video_record("v", n=11, embeddings_dim=3,
                              segments=[Seg(1, 4, 0), Seg(5, 9, 2)])
  cfg = _config(task, input_mode="embeddings", embedding_dim=3)
  proc = examples.Processor(cfg, is_training=False, validate=True)
  p = _parsed(tmp_path, proc, rec)
  seed = tf.constant([1, 2], tf.int64)
  if task == spec.AS:
    ex = proc.window_example(p, tf.constant(8), seed)
    assert ex[spec.WINDOW_OFFSET] == 8
    # Frames 8..10 are real, 11..15 loop back and are masked.
    np.testing.assert_array_equal(ex[spec.FRAME_MASK], [1] * 3 + [0] * 5)
  else:
    ex = proc.linspace_example(p, seed)
    np.testing.assert_array_equal(ex[spec.FRAME_INDICES],
                                  np.linspace(0, 10, N0).astype(np.int32))
  expected = {k: (shape[1:], dtype) for k, (shape, dtype) in
              input_config.describe_batch(cfg, False, 1).items()
              if k != input_config.BATCH_MASK}
  got = {k: (tuple(v.shape.as_list()), v.dtype.name) for k, v in ex.items()}
  assert got == expected
  np.testing.assert_array_equal(ex[spec.GT_LABEL], [0, 2, -1, -1])


@pytest.mark.parametrize("rule,expected", [
    ("length", [1, 1, 1, 1, 1, 0, 0, 0]),
    ("nonzero", [1, 1, 0, 1, 1, 0, 0, 0])])
def test_text_mask_rule_reaches_the_class_names(rule, expected):
  """`InputConfig.text_mask_rule` (gin-bindable): 'thanks!".' tokenises to
  BOS, thanks, "!" (id 0), '".', EOS; the reference's rule masks the "!"
  out."""
  config = _config(spec.TAL, class_names=('thanks!".', "run", "swim"),
                   text_mask_rule=rule)
  ids, mask = examples._host_class_text(config)  # noqa: SLF001
  assert list(ids.numpy()[0, 0, 1:4]) == [1085, 0, 2811]
  np.testing.assert_array_equal(mask.numpy()[0, 0], expected)
