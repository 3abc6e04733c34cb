"""The launch layer: the only code that reads gin (and, in `flags`, absl
flags).

`load_experiment(gin_files, gin_bindings)` parses an experiment once and
returns an `Experiment`: the model builder, the train / eval data and input
configs, the evaluator, and `train` / `evaluate` / `export`.  Tools define
their flags with `unloc_tf.launch.flags` and run their `main` with
`unloc_tf.launch.cli.run`.  Names load on first use, so importing
`unloc_tf.launch.cli` does not import TensorFlow.
"""

import importlib

__all__ = ["OPERATIVE_CONFIG", "Experiment", "load_experiment", "parse_gin"]


def __getattr__(name):
  if name in __all__:
    return getattr(importlib.import_module("unloc_tf.launch.experiment"),
                   name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
