"""Input pipelines: shapes, masks, targets wiring, determinism, bad input."""

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import augment, input_config, pipeline, records

Seg = records.Segment
N0 = 8
PYR = spec.PyramidSpec(N0, num_levels=2, regression_ranges=((0, 2),
                                                            (2, np.inf)))
CLASSES = ("jump", "run", "swim")


def _config(task, **kw):
  base = dict(task=task, num_frames=N0, pyramid=PYR, crop_size=16,
              min_resize=20, max_text_length=8, max_num_segments=4,
              secs_per_timestep=0.5)
  if task in (spec.TAL, spec.AS, spec.CLS):
    base.update(num_classes=3, class_names=CLASSES)
  base.update(kw)
  return pipeline.InputConfig(**base)


def _tal_records(embeddings_dim=None):
  return [
      fixtures.video_record(
          f"v{i}", n=12 + 4 * i, embeddings_dim=embeddings_dim,
          segments=[Seg(1, 5, i % 3), Seg(4, 11, (i + 1) % 3)])
      for i in range(3)
  ]


def _mr_records():
  return [
      fixtures.video_record(
          f"m{i}", n=16, segments=[Seg(0, 5, label_string="a cat sits"),
                                   Seg(6, 15, label_string="the cat runs"),
                                   Seg(2, 9, label_string="it jumps")])
      for i in range(3)
  ]


def _first(ds):
  return {k: v.numpy() for k, v in next(iter(ds)).items()}


def _check_spec(ds, config, is_training, batch):
  expected = pipeline.describe_batch(config, is_training, batch)
  got = {k: (tuple(v.shape.as_list()), v.dtype.name)
         for k, v in ds.element_spec.items()}
  assert got == expected
  for v in ds.element_spec.values():
    assert v.shape.is_fully_defined()


@pytest.mark.parametrize("task", [spec.TAL, spec.MR, spec.HD, spec.AS,
                                  spec.CLS])
@pytest.mark.parametrize("mode", ["frames", "embeddings"])
@pytest.mark.parametrize("is_training", [True, False])
def test_shapes_every_task_and_mode(tmp_path, task, mode, is_training):
  emb_dim = 5 if mode == "embeddings" else None
  if task == spec.MR:
    recs = _mr_records()
  elif task == spec.HD:
    recs = [fixtures.video_record(
        "h", n=16, segments=[Seg(1, 4, 0, "q one"), Seg(9, 12, 0, "q one")],
        saliency=records.Saliency([0, 1, 4], np.ones((3, 3)), 2.0))]
  elif task == spec.CLS:
    recs = [fixtures.video_record("c", n=9, clip_labels=[2])]
  else:
    recs = _tal_records()
  for r in recs:
    if emb_dim:
      r.embeddings = np.random.default_rng(0).normal(
          size=(r.num_frames, emb_dim)).astype(np.float32)
  fixtures.write(tmp_path, "d", recs)
  config = _config(task, input_mode=mode, embedding_dim=emb_dim,
                   num_captions_eval=4, max_saliency_clips=10,
                   num_classes=1 if task == spec.HD else 3,
                   class_names=None if task in (spec.MR, spec.HD)
                   else CLASSES)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), config,
                             is_training=is_training, global_batch_size=2)
  _check_spec(ds, config, is_training, 2)
  b = _first(ds)
  if mode == "frames":
    assert b[spec.FRAMES].dtype == np.uint8  # the model normalises
    assert b[spec.FRAMES].std() > 5
  else:
    assert np.abs(b[spec.FRAME_EMBEDDINGS]).sum() > 0


@pytest.mark.parametrize("task", [spec.MR, spec.HD])
def test_cached_caption_and_query_embeddings(tmp_path, task):
  """text_mode='embeddings': the batch carries the stored caption (MR) or
  query (HD) embeddings, with the strings beside them."""
  cached = np.arange(2 * 3, dtype=np.float32).reshape(2, 3) + 1.0
  if task == spec.MR:
    rec = fixtures.video_record(
        "m", n=16, segments=[Seg(0, 5, label_string="a cat sits"),
                             Seg(6, 15, label_string="the cat runs")],
        segment_embeddings=cached)
  else:
    rec = fixtures.video_record(
        "h", n=16, segments=[Seg(1, 4, 0, "q one"), Seg(9, 12, 0, "q one")],
        saliency=records.Saliency([0, 1, 4], np.ones((3, 3)), 2.0),
        segment_embeddings=cached)
  fixtures.write(tmp_path, "d", [rec])
  config = _config(task, text_mode="embeddings", text_embedding_dim=3,
                   num_captions_eval=3, max_saliency_clips=10,
                   num_classes=1 if task == spec.HD else 3,
                   class_names=None)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), config,
                             is_training=False, global_batch_size=1)
  _check_spec(ds, config, False, 1)
  b = _first(ds)
  if task == spec.MR:
    np.testing.assert_array_equal(b[spec.TEXT_EMBEDDINGS][0, :2], cached)
    assert not b[spec.TEXT_EMBEDDINGS][0, 2].any()  # padding caption
    assert list(b[spec.TEXT_STRINGS][0]) == [b"a cat sits", b"the cat runs",
                                            b""]
  else:  # the query's embedding (first segment; HD records repeat it)
    np.testing.assert_array_equal(b[spec.TEXT_EMBEDDINGS][0], cached[:1])
    assert list(b[spec.TEXT_STRINGS][0]) == [b"q one"]
  assert spec.TEXT_IDS not in b


def test_tal_eval_batch_contents(tmp_path):
  fixtures.write(tmp_path, "d", _tal_records(embeddings_dim=3))
  config = _config(spec.TAL, input_mode="embeddings", embedding_dim=3)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), config, is_training=False,
                             global_batch_size=2)
  batches = [{k: v.numpy() for k, v in b.items()} for b in ds]
  assert len(batches) == 2
  b0, b1 = batches
  np.testing.assert_array_equal(b0[pipeline.BATCH_MASK], [1, 1])
  np.testing.assert_array_equal(b1[pipeline.BATCH_MASK], [1, 0])
  assert list(b0[spec.VIDEO_ID]) == [b"v0", b"v1"]
  # linspace over n = 12 frames: int(linspace(0, 11, 8)).
  np.testing.assert_array_equal(
      b0[spec.FRAME_INDICES][0], np.linspace(0, 11, 8).astype(np.int32))
  # Embedding rows are their stored-frame index * 3 + channel.
  np.testing.assert_array_equal(b0[spec.FRAME_EMBEDDINGS][0][:, 0],
                                3 * b0[spec.FRAME_INDICES][0])
  np.testing.assert_array_equal(b0[spec.FRAME_MASK], np.ones((2, N0)))
  # Ground truth in seconds (0.5 s per stored frame), padded with -1.
  np.testing.assert_allclose(b0[spec.GT_START][0], [0.5, 2.0, -1, -1])
  np.testing.assert_allclose(b0[spec.GT_END][0], [2.5, 5.5, -1, -1])
  np.testing.assert_array_equal(b0[spec.GT_LABEL][0], [0, 1, -1, -1])
  np.testing.assert_array_equal(b0[spec.GT_VALID][0], [1, 1, 0, 0])
  assert b0[spec.NUM_FRAMES_TOTAL][1] == 16
  # Some positives for both classes present in video 0; none for class 2.
  labels = b0[spec.LABELS][0]
  assert labels[:, 0].sum() > 0 and labels[:, 1].sum() > 0
  assert labels[:, 2].sum() == 0
  assert b0[spec.TEXT_IDS].shape == (2, 3, 8)
  assert (b0[spec.TEXT_IDS][:, :, 0] == 49406).all()


def test_class_subset_drops_and_renumbers(tmp_path):
  fixtures.write(tmp_path, "d", _tal_records(embeddings_dim=3))
  config = _config(spec.TAL, input_mode="embeddings", embedding_dim=3,
                   class_subset=(1,))
  b = _first(pipeline.make_dataset(str(tmp_path / "d-*"), config,
                                   is_training=False, global_batch_size=3))
  # Video 0 has class 0 at [1,5] and class 1 at [4,11]: only the latter
  # stays, renumbered to 0.
  np.testing.assert_array_equal(b[spec.GT_LABEL][0], [0, -1, -1, -1])
  np.testing.assert_allclose(b[spec.GT_START][0][:1], [2.0])
  assert b[spec.LABELS].shape[-1] == 1
  assert b[spec.TEXT_IDS].shape == (3, 1, 8)


def test_prompts_train_random_eval_fixed_and_all(tmp_path):
  fixtures.write(tmp_path, "d", _tal_records(embeddings_dim=3))
  prompts = ("a video of {}.", "a photo of {}.")
  common = dict(input_mode="embeddings", embedding_dim=3, prompts=prompts)
  ev = _first(pipeline.make_dataset(
      str(tmp_path / "d-*"), _config(spec.TAL, prompt_index=1, **common),
      is_training=False, global_batch_size=1))
  allp = _first(pipeline.make_dataset(
      str(tmp_path / "d-*"), _config(spec.TAL, prompt_index=-1, **common),
      is_training=False, global_batch_size=1))
  assert allp[spec.TEXT_IDS].shape == (1, 2, 3, 8)
  np.testing.assert_array_equal(allp[spec.TEXT_IDS][:, 1],
                                ev[spec.TEXT_IDS])
  assert not np.array_equal(allp[spec.TEXT_IDS][:, 0], ev[spec.TEXT_IDS])
  tr = pipeline.make_dataset(str(tmp_path / "d-*"), _config(spec.TAL,
                                                            **common),
                             is_training=True, global_batch_size=1, seed=3)
  seen = set()
  for b in tr.take(12):
    seen.add(tuple(b[spec.TEXT_IDS].numpy()[0, 0, 1:4]))
  assert len(seen) == 2  # both prompts get drawn


def test_mr_train_picks_one_caption_eval_pads(tmp_path):
  fixtures.write(tmp_path, "d", _mr_records())
  tr_cfg = _config(spec.MR, num_captions_train=1, num_captions_eval=5)
  tr = pipeline.make_dataset(str(tmp_path / "d-*"), tr_cfg, is_training=True,
                             global_batch_size=1, seed=1)
  firsts = {int(b[spec.GT_START].numpy()[0, 0] * 2) for b in tr.take(20)}
  assert firsts == {0, 6, 2}  # random caption each time
  ev = _first(pipeline.make_dataset(str(tmp_path / "d-*"), tr_cfg,
                                    is_training=False, global_batch_size=1))
  np.testing.assert_array_equal(ev[spec.TEXT_VALID][0], [1, 1, 1, 0, 0])
  assert ev[spec.LABELS].shape == (1, 5, PYR.total_tokens)
  assert ev[spec.LABELS][0, 3:].sum() == 0
  assert ev[spec.LABELS][0, :3].sum(axis=1).min() > 0
  # Padded captions tokenise to [BOS, EOS, 0...].
  np.testing.assert_array_equal(ev[spec.TEXT_IDS][0, 4, :3],
                                [49406, 49407, 0])


def test_as_eval_windows_cover_every_frame_once(tmp_path):
  recs = [fixtures.video_record("a", n=21, embeddings_dim=2,
                                segments=[Seg(2, 9, 1), Seg(7, 12, 2)]),
          fixtures.video_record("b", n=5, embeddings_dim=2)]
  fixtures.write(tmp_path, "d", recs)
  config = _config(spec.AS, input_mode="embeddings", embedding_dim=2)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), config, is_training=False,
                             global_batch_size=2)
  covered = {b"a": [], b"b": []}
  for b in ds:
    b = {k: v.numpy() for k, v in b.items()}
    for j in range(2):
      if not b[pipeline.BATCH_MASK][j]:
        continue
      idx = b[spec.FRAME_INDICES][j][b[spec.FRAME_MASK][j] == 1]
      covered[b[spec.VIDEO_ID][j]].extend(idx.tolist())
      if b[spec.VIDEO_ID][j] == b"a" and b[spec.WINDOW_OFFSET][j] == 8:
        lab = b[spec.LABELS][j]
        # frames 8..15: 8,9 overlap (later segment wins → class 2), 10..12
        # class 2, 13..15 background.
        np.testing.assert_array_equal(lab.argmax(-1)[:5], [2] * 5)
        assert lab[5:].sum() == 0
  assert sorted(covered[b"a"]) == list(range(21))
  assert sorted(covered[b"b"]) == list(range(5))


def test_as_center_window_and_training_offsets(tmp_path):
  fixtures.write(tmp_path, "d", [fixtures.video_record("a", n=30,
                                                       embeddings_dim=2)])
  cfg = _config(spec.AS, input_mode="embeddings", embedding_dim=2,
                eval_windows="center")
  b = _first(pipeline.make_dataset(str(tmp_path / "d-*"), cfg,
                                   is_training=False, global_batch_size=1))
  assert b[spec.WINDOW_OFFSET][0] == (30 - N0) // 2
  tr = pipeline.make_dataset(str(tmp_path / "d-*"), cfg, is_training=True,
                             global_batch_size=1, seed=0)
  offsets = {int(b[spec.WINDOW_OFFSET].numpy()[0]) for b in tr.take(40)}
  assert min(offsets) >= 0 and max(offsets) <= 30 - N0 and len(offsets) > 5


def test_normalize_in_pipeline(tmp_path):
  fixtures.write(tmp_path, "d", _tal_records())
  outs = [_first(pipeline.make_dataset(
      str(tmp_path / "d-*"), _config(spec.TAL, normalize=norm),
      is_training=False, global_batch_size=1))[spec.FRAMES]
          for norm in (False, True)]
  assert outs[1].dtype == np.float32
  np.testing.assert_allclose(outs[1], augment.normalize(outs[0]).numpy(),
                             atol=1e-6)


def test_determinism_with_seed(tmp_path):
  fixtures.write(tmp_path, "d", _tal_records(), num_shards=2)
  cfg = _config(spec.TAL, jitter_scale=True, rand_augment=True)

  def run(seed):
    ds = pipeline.make_dataset(str(tmp_path / "d-*"), cfg, is_training=True,
                               global_batch_size=2, seed=seed,
                               deterministic=True)
    return [(b[spec.VIDEO_ID].numpy().tolist(), b[spec.FRAMES].numpy())
            for b in ds.take(3)]

  a, b, c = run(7), run(7), run(8)
  for (ia, fa), (ib, fb) in zip(a, b):
    assert ia == ib
    np.testing.assert_array_equal(fa, fb)
  assert any(not np.array_equal(fa, fc) for (_, fa), (_, fc) in zip(a, c))


def test_input_context_shards_files(tmp_path):
  recs = [fixtures.video_record(f"v{i}", n=8, embeddings_dim=2,
                                segments=[Seg(1, 3, 0)]) for i in range(4)]
  fixtures.write(tmp_path, "d", recs, num_shards=4)
  cfg = _config(spec.TAL, input_mode="embeddings", embedding_dim=2)
  seen = []
  for pid in range(2):
    ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                     input_pipeline_id=pid,
                                     num_replicas_in_sync=2)
    ds = pipeline.make_dataset(str(tmp_path / "d-*"), cfg, is_training=False,
                               global_batch_size=4, input_context=ctx)
    ids = []
    for b in ds:
      assert b[spec.VIDEO_ID].shape == (2,)  # per-replica batch
      ids += [v for v, m in zip(b[spec.VIDEO_ID].numpy(),
                                b[pipeline.BATCH_MASK].numpy()) if m]
    seen.append(set(ids))
  assert seen[0].isdisjoint(seen[1])
  assert seen[0] | seen[1] == {b"v0", b"v1", b"v2", b"v3"}


# ---------------------------------------------------------------------------
# Training order: a pure function of (seed, position), restartable.
# ---------------------------------------------------------------------------
def _numpy_batches(ds, n):
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


@pytest.mark.parametrize("task,mode,order", [
    (spec.TAL, "frames", "epochs"), (spec.AS, "frames", "epochs"),
    (spec.MR, "embeddings", "epochs"), (spec.TAL, "frames", "buffer"),
    (spec.AS, "embeddings", "buffer")])
def test_skip_batches_resumes_bit_exactly(tmp_path, task, mode, order):
  """make_dataset(skip_batches=k) yields exactly batches k, k+1, ... of
  the uninterrupted pipeline (records, random crops / jitter / windows /
  captions), also across epoch ends (7 records, batch 2), in both
  training orders."""
  dim = 4 if mode == "embeddings" else None
  recs = [fixtures.video_record(
      f"v{i}", n=12 + 2 * i, embeddings_dim=dim,
      segments=[Seg(1, 5, i % 3, label_string="a cat sits"),
                Seg(4, 11, (i + 1) % 3, label_string="it jumps")])
          for i in range(7)]
  fixtures.write(tmp_path, "d", recs, num_shards=3)
  extra = dict(input_mode="embeddings", embedding_dim=dim) if dim else dict(
      jitter_scale=True, rand_augment=True)
  cfg = _config(task, **extra)

  def batches(skip, n):
    return _numpy_batches(pipeline.make_dataset(
        str(tmp_path / "d-*"), cfg, is_training=True, global_batch_size=2,
        seed=3, shuffle_buffer=3, order=order, skip_batches=skip), n)

  full = batches(0, 10)
  for skip in (1, 3, 7):
    resumed = batches(skip, 10 - skip)
    for i, (a, b) in enumerate(zip(full[skip:], resumed)):
      assert a.keys() == b.keys()
      for key in a:
        np.testing.assert_array_equal(a[key], b[key],
                                      err_msg=f"skip {skip} batch {i} {key}")


def test_epochs_order_sees_every_record_once_per_epoch(tmp_path):
  recs = [fixtures.video_record(f"v{i}", n=8, embeddings_dim=2,
                                segments=[Seg(1, 3, 0)]) for i in range(6)]
  fixtures.write(tmp_path, "d", recs, num_shards=3)
  cfg = _config(spec.TAL, input_mode="embeddings", embedding_dim=2)

  def ids(seed):
    ds = pipeline.make_dataset(str(tmp_path / "d-*"), cfg, is_training=True,
                               global_batch_size=6, seed=seed,
                               shuffle_buffer=4)
    return [b[spec.VIDEO_ID].numpy().tolist() for b in ds.take(3)]

  epochs = ids(0)
  for epoch in epochs:
    assert sorted(epoch) == [f"v{i}".encode() for i in range(6)]
  assert len({tuple(e) for e in epochs}) > 1  # reshuffled every epoch
  assert ids(0) == epochs and ids(1) != epochs


def test_skip_batches_needs_training_and_a_known_order(tmp_path):
  fixtures.write(tmp_path, "d", _tal_records())
  with pytest.raises(ValueError, match="skip_batches needs is_training=True"):
    pipeline.make_dataset(str(tmp_path / "d-*"), _config(spec.TAL),
                          is_training=False, global_batch_size=1,
                          skip_batches=2)
  with pytest.raises(ValueError, match="order must be one of"):
    pipeline.make_dataset(str(tmp_path / "d-*"), _config(spec.TAL),
                          is_training=True, global_batch_size=1,
                          order="random")


def test_buffer_order_is_kept_as_an_option(tmp_path):
  """order='buffer' (tf.data's shuffle buffer, the reference's order)
  still trains and checkpoints its iterator."""
  fixtures.write(tmp_path, "d", _tal_records(), num_shards=2)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), _config(spec.TAL),
                             is_training=True, global_batch_size=2, seed=1,
                             order="buffer")
  ids = [v for b in ds.take(3) for v in b[spec.VIDEO_ID].numpy().tolist()]
  assert set(ids) == {b"v0", b"v1", b"v2"}


# ---------------------------------------------------------------------------
# Bad input: the error names the file, the record index and the field.
# ---------------------------------------------------------------------------
def _good_jpegs(n):
  return records.encode_jpeg(fixtures.frames(n))


@pytest.mark.parametrize("bad,field,text", [
    (dict(n_frames_field=None), spec.CLIP_FRAMES, "missing"),
    (dict(n_frames_field=0, jpegs=[]), spec.CLIP_FRAMES, "empty video"),
    (dict(n_frames_field=7), spec.IMAGE_ENCODED, "number of JPEG frames"),
    (dict(start=[2], end=[9]), spec.SEGMENT_END_INDEX, "outside the video"),
    (dict(start=[2], end=[4], start_us=[5], end_us=[5]),
     spec.SEGMENT_END_TIMESTAMP, "zero-length"),
    (dict(label=[9]), spec.SEGMENT_LABEL_INDEX, "class index outside"),
    (dict(jpegs=_good_jpegs(5)[:4] + [b"\xff\xd8garbage"]),
     spec.IMAGE_ENCODED, "corrupt or truncated JPEG at stored frame 4"),
    (dict(jpegs=_good_jpegs(5)[:2] + [_good_jpegs(1)[0][:200]]
          + _good_jpegs(2)), spec.IMAGE_ENCODED, "stored frame 2"),
])
def test_bad_records_name_file_record_field(tmp_path, bad, field, text):
  args = dict(n_frames_field=5, jpegs=_good_jpegs(5), start=[1], end=[3],
              label=[0])
  args.update(bad)
  good = fixtures.raw_example(5, _good_jpegs(5), start=[1], end=[3],
                              label=[0])
  path = fixtures.write_raw(tmp_path, "broken",
                            [good, fixtures.raw_example(**args)])
  cfg = _config(spec.TAL, num_frames=4, pyramid=spec.PyramidSpec(
      4, num_levels=1, regression_ranges=((0, np.inf),)))
  ds = pipeline.make_dataset(path, cfg, is_training=False,
                             global_batch_size=1)
  it = iter(ds)
  next(it)  # record 0 is fine
  with pytest.raises(tf.errors.InvalidArgumentError) as err:
    next(it)
  msg = err.value.message
  assert f"{path}: record 1: field {field}: " in msg, msg
  assert text in msg, msg


def test_missing_files_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no files match"):
    pipeline.make_dataset(str(tmp_path / "nothing-*"), _config(spec.MR),
                          is_training=True, global_batch_size=1)


def test_mr_iterator_checkpoints_with_the_graph_tokenizer(tmp_path):
  """Captions are tokenised in the graph (a stateful BPE cache): the
  iterator still checkpoints and resumes at the same batch."""
  fixtures.write(tmp_path, "d", _mr_records())
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), _config(spec.MR),
                             is_training=True, global_batch_size=1, seed=2,
                             deterministic=True)
  it = iter(ds)
  next(it)
  ckpt = tf.train.Checkpoint(iterator=it)
  path = ckpt.save(str(tmp_path / "ckpt"))
  expected = next(it)[spec.TEXT_IDS].numpy()
  it2 = iter(ds)
  tf.train.Checkpoint(iterator=it2).restore(path)
  np.testing.assert_array_equal(next(it2)[spec.TEXT_IDS].numpy(), expected)


@pytest.mark.parametrize("min_resize", [24, 20])  # stored at size, resized
@pytest.mark.parametrize("task", [spec.TAL, spec.AS])
def test_eval_frames_are_decode_eval_frames(tmp_path, task, min_resize):
  """The evaluation pixels are `augment.decode_eval_frames` of the stored
  JPEGs at the sampled indices (what extract_features caches), whether the
  24x32 frames are stored at the short side (crop decoded alone) or not."""
  recs = _tal_records()
  fixtures.write(tmp_path, "d", recs)
  cfg = _config(task, min_resize=min_resize, crop_size=16)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), cfg, is_training=False,
                             global_batch_size=2)
  jpegs = {r.media_id.encode(): tf.constant(r.frames) for r in recs}
  rows = 0
  for b in ds:
    for j in range(2):
      if not b[pipeline.BATCH_MASK][j]:
        continue
      stored = jpegs[b[spec.VIDEO_ID][j].numpy()]
      expected = augment.decode_eval_frames(
          tf.gather(stored, b[spec.FRAME_INDICES][j]), 16, min_resize)
      np.testing.assert_array_equal(b[spec.FRAMES][j], expected)
      rows += 1
  # AS: ceil(n / 8) windows of the 12, 16 and 20 frames.
  assert rows == (3 if task == spec.TAL else 2 + 2 + 3)


def test_the_pipeline_re_exports_its_config():
  """Gin binds `pipeline.InputConfig`; callers use these names here."""
  assert pipeline.InputConfig is input_config.InputConfig
  assert pipeline.describe_batch is input_config.describe_batch
  assert pipeline.BATCH_MASK == input_config.BATCH_MASK == "batch_mask"
