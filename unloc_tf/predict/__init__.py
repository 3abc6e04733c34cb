"""Prediction on video files: `Predictor.from_workdir(...)` /
`Predictor.from_saved_model(...)`, then `.predict(paths, queries=...)`."""

from unloc_tf.predict.predictor import (
    SIGNATURES,
    TASKS,
    Predictor,
    saved_model_dir,
    write_outputs,
)
from unloc_tf.predict.videos import (
    Video,
    decode,
    list_videos,
    output_names,
    temporal_resolution,
    video_records,
)

__all__ = ["SIGNATURES", "TASKS", "Predictor", "Video", "decode",
           "list_videos", "output_names", "saved_model_dir",
           "temporal_resolution", "video_records", "write_outputs"]
