"""The paper's pre-training task trains: `VideoTextClassifier` on the
synthetic benchmark's Kinetics-style classification split (one trimmed clip
per event, its action as the label; every clip fused with all 8 class
names), from the cached scene embeddings as the MR training test.  The loss
falls and top-1 accuracy on the training clips rises well above chance
(1/8); margins, not times."""

import itertools

import numpy as np
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import pipeline, synthetic
from unloc_tf.data.synthetic import scene
from unloc_tf.tasks import video_text_classifier

N0 = 16
STEPS = 60


def top1(model, batches):
  hits = total = 0
  for b in batches:
    logits = model(b, training=False)["logits"].numpy()  # [B, C]
    labels = b[spec.LABELS].numpy()
    for i in np.flatnonzero(b[pipeline.BATCH_MASK].numpy()):
      hits += labels[i, logits[i].argmax()] > 0
      total += 1
  return hits / total


def test_classifier_training_improves_loss_and_accuracy(tmp_path):
  config = synthetic.SyntheticConfig(num_train=8, num_val=1, num_test=1,
                                     min_duration=10, max_duration=20, seed=5)
  synthetic.write_benchmark(str(tmp_path), config, tasks=(spec.CLS,),
                            num_shards=1, zero_shot_records=False,
                            state_embeddings=True, render=False)
  cfg = pipeline.InputConfig(
      task=spec.CLS, num_frames=N0, input_mode="embeddings",
      embedding_dim=synthetic.SCENE_EMBEDDING_DIM, max_text_length=16,
      num_classes=len(scene.ACTIONS), class_names=tuple(scene.ACTIONS))
  files = str(tmp_path / spec.CLS / "train-*")
  train = pipeline.make_dataset(files, cfg, is_training=True,
                                global_batch_size=8, seed=0,
                                shuffle_buffer=64, deterministic=True)
  evals = list(pipeline.make_dataset(files, cfg, is_training=False,
                                     global_batch_size=16))
  assert sum(int(b[pipeline.BATCH_MASK].numpy().sum()) for b in evals) >= 16
  tf.keras.utils.set_random_seed(0)
  model = fixtures.build_task(
      video_text_classifier.build_video_text_classifier, "tiny",
      num_frames=N0, input_mode="embeddings", text_max_length=16)
  it = iter(train)
  first = next(it)
  model(first, training=True)
  acc_before = top1(model, evals)
  losses = fixtures.fit(model, itertools.chain([first], it), STEPS,
                        jit_compile=False)
  acc_after = top1(model, evals)
  start, end = np.mean(losses[:10]), np.mean(losses[-10:])
  print(f"loss {start:.3f} -> {end:.3f}; top-1 {acc_before:.3f} ->"
        f" {acc_after:.3f}")
  assert end < 0.7 * start
  assert acc_after >= 0.5 and acc_after >= acc_before + 0.25
