"""Installs unloc_tf, its bundled gin configs (as unloc_tf.gin_configs) and
the tools' console scripts."""

import os

import setuptools

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = {}
with open(os.path.join(HERE, "unloc_tf", "version.py")) as f:
  exec(f.read(), VERSION)  # noqa: S102 (our own file)


def _gin_files():
  out = []
  for root, _, files in os.walk(os.path.join(HERE, "gin")):
    for name in files:
      if name.endswith(".gin"):
        out.append(os.path.relpath(os.path.join(root, name),
                                   os.path.join(HERE, "gin")))
  return sorted(out)


setuptools.setup(
    name="unloc_tf",
    version=VERSION["__version__"],
    description=("UnLoc (ICCV 2023) in TensorFlow 2 / Keras 3: one model for"
                 " moment retrieval, temporal action localization, action"
                 " segmentation and highlight detection."),
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["unloc_tf", "unloc_tf.*"])
    + ["unloc_tf.gin_configs", "unloc_tf_tools"],
    # gin/ installs inside the package, so configs are found by name; tools/
    # installs beside it as `unloc_tf_tools`, only for the console scripts.
    package_dir={"unloc_tf.gin_configs": "gin", "unloc_tf_tools": "tools"},
    package_data={
        "unloc_tf.gin_configs": _gin_files(),
        "unloc_tf.data": ["assets/*"],
    },
    include_package_data=False,
    install_requires=[
        # 2.20 is the newest tensorflow-tpu; keep the code working on both.
        "tensorflow>=2.20,<2.22",
        "keras>=3.10,<3.16",
        "keras-hub>=0.32,<0.33",
        "tensorflow-text>=2.20,<2.22",
        "absl-py>=2.0",
        "gin-config>=0.5,<0.6",
        "numpy>=1.26",
    ],
    extras_require={
        "data": ["av==18.1.0", "tqdm>=4.60", "matplotlib>=3.7"],
        "viz": ["matplotlib>=3.7"],
        # Dataset conversion / feature extraction on Apache Beam.
        "beam": ["apache-beam>=2.60,<3"],
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6",
                "matplotlib>=3.7", "tensorflow-serving-api>=2.20,<2.22",
                "apache-beam>=2.60,<3"],
    },
    entry_points={
        "console_scripts": [
            "unloc-make-synthetic=unloc_tf_tools.make_synthetic:run",
            "unloc-main-job=unloc_tf_tools.main_job:run",
            "unloc-train=unloc_tf_tools.train:run",
            "unloc-evaluate=unloc_tf_tools.evaluate:run",
            "unloc-export=unloc_tf_tools.export_saved_model:run",
            "unloc-visualize=unloc_tf_tools.visualize:run",
            "unloc-serving-metadata=unloc_tf_tools.serving_metadata:run",
            "unloc-make-zero-shot-splits=unloc_tf_tools.make_zero_shot_splits:run",
            "unloc-evaluate-zero-shot=unloc_tf_tools.evaluate_zero_shot:run",
            "unloc-build-records=unloc_tf_tools.build_records:run",
            "unloc-extract-features=unloc_tf_tools.extract_features:run",
            "unloc-predict=unloc_tf_tools.predict:run",
            "unloc-convert-clip=unloc_tf_tools.convert_clip_checkpoint:run",
            "unloc-convert-reference=unloc_tf_tools.convert_reference_checkpoint:run",
        ],
    },
)
