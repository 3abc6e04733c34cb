"""The launch layer: the only code that reads gin (and, in `flags`, absl
flags).

`load_experiment(gin_files, gin_bindings)` parses an experiment once and
returns an `Experiment`: the model builder, the train / eval data and input
configs, the evaluator, and `train` / `evaluate` / `export`.  Tools define
their flags with `unloc_tf.launch.flags`.
"""

from unloc_tf.launch.experiment import (
    OPERATIVE_CONFIG,
    Experiment,
    load_experiment,
    parse_gin,
)

__all__ = ["OPERATIVE_CONFIG", "Experiment", "load_experiment", "parse_gin"]
