"""150 steps on a handful of synthetic videos: the training loss
goes down and moment-retrieval R1@0.5 on those videos goes up (the model can
fit what it is shown; margins, not times).  The videos come as the
benchmark's cached scene embeddings (the main job's input; the image
tower's gradients are checked by the layer and task tests, and a frames
run of this test took 3.5 minutes of the suite).  Held-out quality is the
main job's business (tools/main_job.py), not a unit test's."""

import itertools

import numpy as np
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import pipeline, synthetic
from unloc_tf.tasks import moment_retriever

N0 = 32
PYR = spec.PyramidSpec(N0)
STEPS = 150


def _iou(a, b):
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  union = max(a[1], b[1]) - min(a[0], b[0])
  return inter / union if union > 0 else 0.0


def r1_at_05(model, batches):
  """Top-1 token's decoded segment vs the caption's ground truth."""
  pos = np.concatenate([np.arange(n) * 2**l
                        for l, n in enumerate(PYR.level_lengths)])
  stride = np.concatenate([np.full(n, 2**l)
                           for l, n in enumerate(PYR.level_lengths)])
  hits = total = 0
  for b in batches:
    out = model(b, training=False)
    logits = out["logits"].numpy()  # [B, S, T]
    dist = out["displacements"].numpy()  # [B, S, T, 2]
    for i in range(logits.shape[0]):
      if not b[pipeline.BATCH_MASK][i]:
        continue
      n = int(b[spec.NUM_FRAMES_TOTAL][i])
      spt = float(b[spec.BATCH_SECS_PER_TIMESTEP][i])
      scale = (n - 1) / (N0 - 1) * spt
      for c in range(logits.shape[1]):
        gt = (float(b[spec.GT_START][i, c]), float(b[spec.GT_END][i, c]))
        if gt[0] < 0:  # padded caption
          continue
        t = int(np.argmax(logits[i, c]))
        seg = ((pos[t] - dist[i, c, t, 0] * stride[t]) * scale,
               (pos[t] + dist[i, c, t, 1] * stride[t]) * scale)
        hits += _iou(seg, gt) >= 0.5
        total += 1
  return hits / total


def test_training_improves_loss_and_recall(tmp_path):
  config = synthetic.SyntheticConfig(num_train=8, num_val=2, num_test=2,
                                     min_duration=10, max_duration=20, seed=3)
  synthetic.write_benchmark(str(tmp_path), config, tasks=(spec.MR,),
                            num_shards=1, zero_shot_records=False,
                            state_embeddings=True, render=False)
  cfg = pipeline.InputConfig(task=spec.MR, num_frames=N0, pyramid=PYR,
                             input_mode="embeddings",
                             embedding_dim=synthetic.SCENE_EMBEDDING_DIM,
                             max_text_length=16, num_captions_eval=5)
  files = str(tmp_path / spec.MR / "train-*")
  train = pipeline.make_dataset(files, cfg, is_training=True,
                                global_batch_size=8, seed=0,
                                shuffle_buffer=64, deterministic=True)
  evals = list(pipeline.make_dataset(files, cfg, is_training=False,
                                     global_batch_size=16))
  tf.keras.utils.set_random_seed(0)
  model = fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=PYR,
      input_mode="embeddings", text_max_length=16, num_conv_layers=2)
  it = iter(train)
  first = next(it)
  model(first, training=True)
  r1_before = r1_at_05(model, evals)
  losses = fixtures.fit(model, itertools.chain([first], it), STEPS,
                        jit_compile=True)
  r1_after = r1_at_05(model, evals)
  start, end = np.mean(losses[:20]), np.mean(losses[-20:])
  print(f"loss {start:.3f} -> {end:.3f}; R1@0.5 {r1_before:.3f} ->"
        f" {r1_after:.3f}")
  assert end < 0.7 * start
  assert r1_after >= r1_before + 0.2
