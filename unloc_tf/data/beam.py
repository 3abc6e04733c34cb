"""Apache Beam pipeline options for the converters (the optional `beam` extra).

The record builder (`unloc_tf.datasets.beam_conversion`) and the feature
extractor (`unloc_tf.features.beam_extraction`) run on any Beam runner.
Their tools take the options as TensorFlow Datasets' `tfds build` does: one
flag, `--beam_pipeline_options`, a comma-separated list of Beam's own
pipeline flags without their dashes, e.g.

  direct_num_workers=2                          (this machine: 2 processes)
  runner=DataflowRunner,project=P,region=R,temp_location=gs://B/tmp,
      setup_file=./setup.py                     (Google Cloud Dataflow)
  runner=FlinkRunner,flink_master=HOST:8081,environment_type=DOCKER
  runner=SparkRunner,spark_master_url=spark://HOST:7077

(the README's "Dataset conversion on Apache Beam" lists what each needs).
Without `runner`, Beam's local FnApiRunner runs: the DirectRunner runs these
pipelines on it too, but first tries the Prism runner, whose binary it
downloads from GitHub.  With `direct_num_workers` > 1 and no
`direct_running_mode`, the local runner starts worker processes
(`multi_processing`: decoding and the towers hold the GIL).  Workers log
errors only (`default_sdk_harness_log_level=ERROR`) unless told otherwise.
"""

from __future__ import annotations

import logging
from typing import List

INSTALL_HINT = ("Apache Beam is not installed: pip install 'unloc_tf[beam]'"
                " (or apache-beam), or drop --beam_pipeline_options to use"
                " the multiprocess path")


def import_beam():
  """The `apache_beam` module; ImportError with what to install."""
  # Importing Beam logs (on the root logger too) which of its Google Cloud
  # connectors are missing (apitools, bigquery): nothing these pipelines use.
  disabled = logging.root.manager.disable
  logging.disable(logging.WARNING)
  try:
    import apache_beam  # noqa: PLC0415 (the optional beam extra)
  except ImportError as e:
    raise ImportError(INSTALL_HINT) from e
  finally:
    logging.disable(disabled)
  # The runners' INFO lines (ports, harness start) are not for the user.
  logging.getLogger("apache_beam").setLevel(logging.WARNING)
  return apache_beam


def pipeline_args(options: str) -> List[str]:
  """`--beam_pipeline_options` ("k=v,k2=v2,flag") -> Beam's argv.

  Raises:
    ValueError: an empty item or a key with dashes or spaces.
  """
  args, keys = [], set()
  for item in (options or "").split(","):
    item = item.strip()
    if not item:
      if options.strip():
        raise ValueError(f"--beam_pipeline_options={options!r}: an empty"
                         " item (expected key=value,key=value)")
      continue
    key, eq, value = item.partition("=")
    key = key.strip()
    if not key or key.startswith("-") or " " in key:
      raise ValueError(f"--beam_pipeline_options: bad item {item!r}"
                       " (expected key=value without leading dashes,"
                       " e.g. runner=DirectRunner)")
    keys.add(key)
    args.append(f"--{key}={value.strip()}" if eq else f"--{key}")
  runner = next((a.split("=", 1)[1] for a in args
                 if a.startswith("--runner=")), None)
  if runner is None:
    runner = "FnApiRunner"
    args.insert(0, "--runner=FnApiRunner")
  if runner in ("FnApiRunner", "DirectRunner"):
    workers = next((a.split("=", 1)[1] for a in args
                    if a.startswith("--direct_num_workers=")), "1")
    if "direct_running_mode" not in keys and workers not in ("0", "1"):
      args.append("--direct_running_mode=multi_processing")
  if "default_sdk_harness_log_level" not in keys:
    args.append("--default_sdk_harness_log_level=ERROR")
  return args


def make_pipeline(options: str):
  """A `beam.Pipeline` with the options of `pipeline_args(options)`."""
  beam = import_beam()
  from apache_beam.options.pipeline_options import (  # noqa: PLC0415
    PipelineOptions,
  )
  return beam.Pipeline(options=PipelineOptions(pipeline_args(options)))
