"""A shared test harness for the package's Keras layers.

`run_layer_test` runs the checks every serialisable layer must pass (after
keras-hub's `TestCase.run_layer_test`), so the per-layer test files only
assert what is specific to the layer (values by hand, masks, reference
parity, defaults). Each check and what it catches:

1. eager call: the layer builds from its constructor arguments and runs on
   the sample input; the outputs have the expected structure and shapes,
   the layer's compute dtype and finite values;
2. XLA: `tf.function(jit_compile=True)` gives the eager outputs, and the
   traced outputs have static shapes equal to the eager ones (catches
   Python-side shape logic that breaks under tracing, ops XLA cannot compile,
   shapes lost in graph mode);
3. config: `get_config` holds every argument of the constructor's
   signature and the given values, `from_config` rebuilds the same config,
   the clone has the same weight paths and, with the weights copied, the same
   outputs; the class is registered for deserialisation, the package's
   layers as `unloc_tf>ClassName` (catches arguments missing from or renamed
   in the config, sub-layers whose names or order differ after a round
   trip);
4. saving: a functional model around the layer is saved to a `.keras` file
   and reloaded with the same outputs; the symbolic outputs have the eager
   shapes (catches weights that are not tracked or saved, and wrong
   `compute_output_shape` / symbolic calls);
5. training: the gradients of a random projection of the outputs reach
   every trainable weight that should train (not None, finite, not all
   zero) and one SGD step changes them; the weights listed in
   `untrained_weights` get no gradient and do not move (catches weights that
   are created but not used, a stop-gradient missing or in the wrong place,
   NaNs in the backward pass).

Before the checks the trainable weights get a small random perturbation, so
weights initialised to constants (zero biases, unit scales) still tell a
saved / copied value from a fresh one.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import warnings
from typing import Any, Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf


def _is_array(x) -> bool:
  return isinstance(x, (np.ndarray, tf.Tensor))


def _map_arrays(fn: Callable, structure):
  """Applies `fn` to the array leaves of nested lists / tuples / dicts."""
  if isinstance(structure, dict):
    return {k: _map_arrays(fn, v) for k, v in structure.items()}
  if isinstance(structure, (list, tuple)):
    return type(structure)(_map_arrays(fn, v) for v in structure)
  return fn(structure) if _is_array(structure) else structure


def _arrays(structure) -> list:
  """The array leaves of a nested structure, in `_map_arrays` order."""
  found = []
  _map_arrays(found.append, structure)
  return found


def _shapes(outputs):
  """Outputs as the same nesting of shape tuples (lists become tuples)."""
  if isinstance(outputs, dict):
    return {k: _shapes(v) for k, v in outputs.items()}
  if isinstance(outputs, (list, tuple)):
    return tuple(_shapes(v) for v in outputs)
  return tuple(outputs.shape)


def _normalize_shapes(expected):
  if isinstance(expected, dict):
    return {k: _normalize_shapes(v) for k, v in expected.items()}
  if isinstance(expected, (list, tuple)) and expected and not all(
      d is None or isinstance(d, int) for d in expected):
    return tuple(_normalize_shapes(v) for v in expected)
  return tuple(expected)


def _numpy_leaves(outputs) -> list:
  return [np.asarray(t) for t in keras.tree.flatten(outputs)]


def _float_leaves(outputs) -> list:
  return [t for t in keras.tree.flatten(outputs) if t.dtype.is_floating]


def _flat_shapes(outputs):
  return tuple(tuple(t.shape) for t in keras.tree.flatten(outputs))


def _config_value(value):
  """A constructor argument as `get_config` stores it (a sub-layer without
  its build config: its owner builds it, in the owner's name scope)."""
  if isinstance(value, keras.layers.Layer):
    config = keras.saving.serialize_keras_object(value)
    config.pop("build_config", None)
    return config
  if isinstance(value, tuple):
    return list(value)
  return value


def _assert_same_outputs(got, want, what: str, atol: float = 0.0):
  got, want = _numpy_leaves(got), _numpy_leaves(want)
  assert len(got) == len(want), f"{what}: {len(got)} outputs, want {len(want)}"
  for i, (g, w) in enumerate(zip(got, want)):
    np.testing.assert_allclose(g, w, rtol=atol, atol=atol,
                               err_msg=f"{what}: output {i}")


def _perturb_weights(layer: keras.layers.Layer, seed: int = 0,
                    scale: float = 0.1) -> None:
  """Adds N(0, scale) noise to every trainable float weight of `layer`."""
  rng = np.random.default_rng(seed)
  for v in layer.trainable_weights:
    noise = scale * rng.normal(size=v.shape)
    v.assign(v.numpy() + noise.astype(v.dtype))


def _call(layer, args, kwargs, **extra):
  return layer(*args, **kwargs, **extra)


def _check_eager(layer, args, kwargs, expected_output_shape):
  outputs = _call(layer, args, kwargs)
  assert layer.built, f"{type(layer).__name__} did not build on its call"
  if expected_output_shape is not None:
    assert _shapes(outputs) == _normalize_shapes(expected_output_shape), (
        f"output shapes {_shapes(outputs)}, want {expected_output_shape}")
  for t in _float_leaves(outputs):
    assert t.dtype == layer.compute_dtype, (t.dtype, layer.compute_dtype)
    assert np.all(np.isfinite(t.numpy())), "non-finite eager output"
  return outputs


def _check_xla(layer, args, kwargs, outputs, atol):
  args, kwargs = _map_arrays(tf.convert_to_tensor, (args, kwargs))
  compiled = tf.function(lambda a, k: _call(layer, a, k), jit_compile=True)
  xla_outputs = compiled(args, kwargs)
  traced = compiled.get_concrete_function(args, kwargs).structured_outputs
  assert _shapes(traced) == _shapes(outputs), (
      f"static shapes under tracing {_shapes(traced)}, eager"
      f" {_shapes(outputs)}")
  _assert_same_outputs(xla_outputs, outputs, "XLA vs eager", atol=atol)


def _check_config(layer_cls, init_kwargs, layer, args, kwargs, outputs,
                  check_paths):
  config = layer.get_config()
  params = inspect.signature(layer_cls.__init__).parameters.values()
  for p in params:
    if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
      assert p.name in config, f"get_config() lacks argument {p.name!r}"
  for key, value in init_kwargs.items():
    assert key in config, f"get_config() lacks argument {key!r}"
    assert config[key] == _config_value(value), (
        f"get_config()[{key!r}] = {config[key]!r}, constructed with {value!r}")
  serialized = keras.saving.serialize_keras_object(layer)
  name = serialized["registered_name"]
  assert keras.saving.get_registered_object(name) is layer_cls, (
      f"{layer_cls.__name__} is not registered as serializable")
  if layer_cls.__module__.startswith("unloc_tf."):
    assert name == f"unloc_tf>{layer_cls.__name__}", name
  assert isinstance(keras.saving.deserialize_keras_object(serialized),
                    layer_cls)
  clone = layer_cls.from_config(config)
  assert clone.get_config() == config, "from_config changed the config"
  _call(clone, args, kwargs)  # Builds the weights.
  if check_paths:
    assert [w.path for w in clone.weights] == [w.path for w in layer.weights]
  clone.set_weights(layer.get_weights())
  _assert_same_outputs(_call(clone, args, kwargs), outputs,
                       "from_config clone with copied weights")


def _check_saving(layer, args, kwargs, outputs, tmp_path):
  arrays = _arrays((args, kwargs))
  inputs = [keras.Input(shape=a.shape[1:], batch_size=a.shape[0],
                        dtype=a.dtype.name)
            for a in arrays]
  symbols = iter(inputs)
  sym_args, sym_kwargs = _map_arrays(lambda _: next(symbols), (args, kwargs))
  model = keras.Model(inputs, _call(layer, sym_args, sym_kwargs))
  assert _shapes(model.outputs) == _flat_shapes(outputs), (
      "symbolic output shapes differ from the eager ones")
  path = os.path.join(tmp_path, "layer.keras")
  with warnings.catch_warnings():
    # Keras' writer calls np.array(variable, copy=False) (numpy 2 warns).
    warnings.filterwarnings("ignore", "__array__ implementation",
                            DeprecationWarning)
    model.save(path)
    loaded = keras.saving.load_model(path)
  assert len(loaded.weights) == len(model.weights)
  _assert_same_outputs(loaded(arrays), model(arrays), "reloaded .keras model")


def _check_training(layer, args, kwargs, untrained_weights, seed):
  def is_untrained(v):
    return any(part in v.path for part in untrained_weights)

  variables = layer.trainable_variables
  assert variables, f"{type(layer).__name__} has no trainable weights"
  for part in untrained_weights:
    assert any(part in v.path for v in variables), (
        f"untrained_weights entry {part!r} matches no trainable weight")
  rng = np.random.default_rng(seed)
  before = [v.numpy() for v in variables]
  with tf.GradientTape() as tape:
    outputs = _call(layer, args, kwargs, training=True)
    # A random projection: a plain sum would be blind to what follows a
    # LayerNorm (the normalised values sum to a constant).
    loss = tf.add_n([
        tf.reduce_sum(t * rng.normal(size=t.shape).astype(t.dtype.name))
        for t in _float_leaves(outputs)])
  grads = tape.gradient(loss, variables)
  trained = []
  for v, g in zip(variables, grads):
    if is_untrained(v):
      assert g is None, f"{v.path} should not train but gets a gradient"
      continue
    assert g is not None, f"{v.path} gets no gradient"
    g = tf.convert_to_tensor(g).numpy()  # IndexedSlices of embeddings.
    assert np.all(np.isfinite(g)), f"{v.path} has a non-finite gradient"
    assert np.any(g != 0), f"{v.path} has an all-zero gradient"
    trained.append((g, v))
  keras.optimizers.SGD(learning_rate=0.1).apply_gradients(trained)
  for v, old in zip(variables, before):
    moved = not np.array_equal(v.numpy(), old)
    assert moved != is_untrained(v), (
        f"{v.path} {'moved' if moved else 'did not move'} after an SGD step")


def run_layer_test(
    layer_cls: type,
    init_kwargs: dict,
    input_data: Any,
    *,
    call_kwargs: Optional[dict] = None,
    expected_output_shape: Any = None,
    untrained_weights: Sequence[str] = (),
    run_training: bool = True,
    xla_skip_reason: Optional[str] = None,
    weight_paths_skip_reason: Optional[str] = None,
    run_saving: bool = True,
    tmp_path: Optional[str] = None,
    atol: float = 1e-5,
    seed: int = 0,
):
  """Builds `layer_cls(**init_kwargs)` and runs the checks of the module doc.

  Args:
    layer_cls: a Keras layer class registered as serializable (under the
      `unloc_tf` package for the package's own layers).
    init_kwargs: constructor arguments (tiny sizes).
    input_data: the positional call arguments: a tuple is unpacked into them;
      anything else (an array, a list of arrays) is the only one. Array
      leaves (numpy or tf) become model inputs; other leaves stay constants.
      Every array needs its batch (or item) axis first.
    call_kwargs: keyword call arguments (arrays or constants such as
      `pairing="all"`); `training` is set by the harness.
    expected_output_shape: the output shapes in the output's nesting: a shape
      tuple, a tuple / list of them, or a dict of them. None: not checked.
    untrained_weights: substrings of weight paths that must get no gradient
      from this call (a tower behind a stop-gradient, sub-layers `call` does
      not use); every other trainable weight must train.
    run_training: run the gradient / SGD check.
    xla_skip_reason: why the layer cannot run under XLA; None runs the check.
    weight_paths_skip_reason: the known defect that gives a `from_config`
      clone other weight paths; None runs the check.
    run_saving: run the `.keras` save / load check.
    tmp_path: directory for the `.keras` file (a fresh temporary one if None).
    atol: absolute and relative tolerance of the XLA-vs-eager comparison
      (the config and saving checks compare exactly: same weights, same ops).
    seed: seed of the initial weights, dropout masks, the weight
      perturbation and the loss projection.

  Returns:
    (layer, outputs): the built layer with its perturbed weights (as before
    the SGD step) and its eager outputs, for further asserts.
  """
  args = input_data if isinstance(input_data, tuple) else (input_data,)
  kwargs = dict(call_kwargs or {})
  keras.utils.set_random_seed(seed)  # Initial weights, dropout masks.
  layer = layer_cls(**init_kwargs)
  _check_eager(layer, args, kwargs, expected_output_shape)
  _perturb_weights(layer, seed=seed)
  outputs = _check_eager(layer, args, kwargs, expected_output_shape)
  weights = layer.get_weights()

  if xla_skip_reason is None:
    _check_xla(layer, args, kwargs, outputs, atol)
  _check_config(layer_cls, init_kwargs, layer, args, kwargs, outputs,
                check_paths=weight_paths_skip_reason is None)
  if run_saving:
    if tmp_path is None:
      with tempfile.TemporaryDirectory() as tmp:
        _check_saving(layer, args, kwargs, outputs, tmp)
    else:
      _check_saving(layer, args, kwargs, outputs, str(tmp_path))
  if run_training:
    _check_training(layer, args, kwargs, tuple(untrained_weights), seed)
    layer.set_weights(weights)
  return layer, outputs
