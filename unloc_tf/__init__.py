"""unloc_tf: UnLoc (ICCV 2023) in TensorFlow 2 / Keras 3.

Where things are: `unloc_tf.tasks` (the task models and their builders),
`unloc_tf.models` (the backbone), `unloc_tf.data.pipeline` (batches from
records), `unloc_tf.launch` (gin experiments), `unloc_tf.Predictor`
(detections on video files).  Submodules load on first use, so
`import unloc_tf` stays light.
"""

from unloc_tf.version import __version__

__all__ = ["Predictor", "__version__"]


def __getattr__(name):
  if name == "Predictor":
    from unloc_tf.predict import Predictor  # noqa: PLC0415

    return Predictor
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
