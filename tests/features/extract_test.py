"""unloc_tf.features: cached embeddings reproduce the frames model; shards
are resumable and deterministic."""

import os

import numpy as np
import pytest
import tensorflow as tf

import gin
from tests import fixtures
from unloc_tf import features as ef
from unloc_tf import launch, spec
from unloc_tf.data import pipeline, schema, synthetic
from unloc_tf.tasks import action_localizer
from unloc_tf.train import checkpoints

NUM_FRAMES = 16
SMALL = [f"NUM_FRAMES = {NUM_FRAMES}", "NUM_LEVELS = 2",
         "REGRESSION_BOUNDS = (4,)", "EVAL_BATCH_SIZE = 2",
         "NUM_CAPTIONS_EVAL = 3"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("syn"))
  config = synthetic.SyntheticConfig(num_train=1, num_val=1, num_test=3,
                                     min_duration=6, max_duration=10)
  synthetic.write_benchmark(out, config, tasks=(spec.TAL, spec.MR),
                            num_shards=2, zero_shot_records=False)
  return out


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _experiment(data_dir, *extra):
  return launch.load_experiment(["experiments/synthetic_mr"],
                                [f"DATA_DIR = '{data_dir}'", *SMALL, *extra])


def _run(model, files, config):
  """Outputs of every real example and its sampled frame indices."""
  ds = pipeline.make_dataset(files, config, is_training=False,
                             global_batch_size=2, deterministic=True)
  outs, keys = [], []
  for batch in ds:
    numeric = {k: v for k, v in batch.items() if v.dtype != tf.string}
    out = model(numeric, training=False)
    mask = batch["batch_mask"].numpy() > 0
    out = {k: v.numpy()[mask] for k, v in out.items()}
    # Padding captions (text_valid 0) differ between the modes ("" tokens
    # vs zero embeddings) and are never scored: zero them.
    valid = batch[spec.TEXT_VALID].numpy()[mask]
    for key in ("logits", "displacements"):
      shape = valid.shape + (1,) * (out[key].ndim - valid.ndim)
      out[key] = out[key] * valid.reshape(shape)
    outs.append(out)
    keys.append(batch[spec.FRAME_INDICES].numpy()[mask])
  return outs, keys


def test_cached_frames_and_captions_match_the_frames_model(data_dir,
                                                           tmp_path):
  files = pipeline.split_pattern(data_dir, "test", spec.MR)
  workdir = str(tmp_path / "work")
  experiment = _experiment(data_dir)
  config = experiment.eval_config
  model = experiment.build_model()
  # Distinct CLS rows (a trained model's): the cache must use the frame's
  # linspace slot to be exact.
  table = model.backbone.image_encoder.class_embedding
  rng = np.random.default_rng(0)
  table.assign(rng.normal(size=table.shape).astype(np.float32))
  checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"),
                           model).save(1)
  frames_out, frames_idx = _run(model, files, config)

  restored, step = experiment.load_model(workdir)
  assert step == 1
  towers = ef.Towers.from_model(restored, config, source=workdir)
  out_dir = str(tmp_path / "emb")
  summary = ef.extract([files], out_dir, towers, batch_size=7,
                       text_embeddings=True, progress=False)
  assert summary["cls_slots"] == "linspace"
  assert summary["embedding_dim"] == 64
  assert len(summary["written"]) == 2 and not summary["skipped"]
  assert os.path.exists(os.path.join(out_dir, ef.MANIFEST_NAME))

  cached_experiment = _experiment(
      data_dir, "INPUT_MODE = 'embeddings'", "EMBEDDING_DIM = 64",
      "TEXT_INPUT = 'embeddings'",
      "pipeline.InputConfig.text_mode = 'embeddings'",
      "pipeline.InputConfig.text_embedding_dim = 64")
  cached = cached_experiment.build_model()
  cached_config = cached_experiment.eval_config
  assert cached.backbone.image_encoder is None
  assert cached.backbone.text_encoder is None
  report = checkpoints.restore_partial(cached,
                                       os.path.join(workdir, "checkpoints"))
  cached_out, cached_idx = _run(cached, os.path.join(out_dir, "test-*"),
                                cached_config)
  assert not report["missing"]
  assert len(cached_out) == len(frames_out) > 0
  for a, b, ia, ib in zip(frames_out, cached_out, frames_idx, cached_idx):
    np.testing.assert_array_equal(ia, ib)
    for key in ("logits", "displacements"):
      np.testing.assert_allclose(a[key], b[key], atol=1e-4, rtol=0)


def test_resumable_deterministic_shards_without_frames(data_dir, tmp_path):
  # --model_size mode with a .npz of a task model's weights.
  pyr = spec.PyramidSpec(NUM_FRAMES, 2, ((0, 4), (4, float("inf"))))
  model = fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", pyramid_spec=pyr,
      image_size=64, text_max_length=16)
  model.build({spec.FRAMES: (1, NUM_FRAMES, 64, 64, 3),
               spec.FRAME_MASK: (1, NUM_FRAMES),
               spec.TEXT_IDS: (1, 2, 16), spec.TEXT_MASK: (1, 2, 16)})
  npz = str(tmp_path / "weights.npz")
  checkpoints.save_weights_npz(model, npz)
  towers = ef.towers_from_size("tiny", num_frames=NUM_FRAMES, image_size=64,
                               min_resize=64, text_max_length=16,
                               checkpoint=npz)
  np.testing.assert_array_equal(
      towers.image_encoder.patch_embedding.kernel.numpy(),
      model.backbone.image_encoder.patch_embedding.kernel.numpy())

  files = pipeline.split_pattern(data_dir, "test", spec.TAL)
  out_dir = str(tmp_path / "emb")
  kwargs = dict(batch_size=16, keep_frames=False, text_embeddings=True,
                class_names=("jumping", "running", "sitting"),
                progress=False)
  first = ef.extract([files], out_dir, towers, **kwargs)
  assert first["cls_slots"] == "shared"  # fresh init: identical CLS rows
  assert len(first["written"]) == 2
  shard_a, shard_b = sorted(first["written"])
  bytes_a, bytes_b = open(shard_a, "rb").read(), open(shard_b, "rb").read()
  mtime_a = os.stat(shard_a).st_mtime_ns
  names = np.load(os.path.join(out_dir, ef.CLASS_NAME_EMBEDDINGS))
  assert names.shape == (3, 1, 64)

  os.remove(shard_b)  # as if the job died while writing the second shard
  second = ef.extract([files], out_dir, towers, **kwargs)
  assert second["skipped"] == [shard_a]
  assert second["written"] == [shard_b]
  assert os.stat(shard_a).st_mtime_ns == mtime_a
  assert open(shard_b, "rb").read() == bytes_b
  assert open(shard_a, "rb").read() == bytes_a
  assert not [f for f in os.listdir(out_dir)
              if f.endswith(".incomplete")]
  third = ef.extract([files], out_dir, towers, **kwargs)
  assert not third["written"] and len(third["skipped"]) == 2

  raw = next(iter(tf.data.TFRecordDataset(shard_a)))
  parsed = schema.parse(raw, with_frames=False,
                        embedding_key=spec.IMAGE_EMBEDDING, embedding_dim=64)
  ex = tf.train.SequenceExample.FromString(raw.numpy())
  assert spec.IMAGE_ENCODED not in ex.feature_lists.feature_list
  n = int(parsed[spec.CLIP_FRAMES])
  assert parsed[spec.IMAGE_EMBEDDING].shape == (n, 64)
  assert np.isfinite(parsed[spec.IMAGE_EMBEDDING].numpy()).all()


def test_frame_slots():
  slots, exact = ef.frame_slots(10, 4, "linspace")
  assert exact
  idx = [0, 3, 6, 9]  # int(linspace(0, 9, 4))
  assert [slots[i] for i in idx] == [0, 1, 2, 3]
  slots, exact = ef.frame_slots(3, 4, "linspace")  # frames repeat
  assert not exact and slots[0] == 0
  np.testing.assert_array_equal(ef.frame_slots(6, 4, "window")[0],
                                [0, 1, 2, 3, 0, 1])
  np.testing.assert_array_equal(ef.frame_slots(3, 4, "shared")[0], [0, 0, 0])


def test_errors_name_the_record(tmp_path):
  ex = tf.train.SequenceExample()
  ex.context.feature[spec.CLIP_FRAMES].int64_list.value.append(3)
  with pytest.raises(ValueError, match=r"x.tfrecord: record 5: field"
                     r" 'image/encoded': no JPEG"):
    ef.process_record(ex.SerializeToString(), "x.tfrecord: record 5", None,
                      None, 4)
