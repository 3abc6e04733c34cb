"""Prediction on video files: `Predictor.from_workdir(...)` /
`Predictor.from_saved_model(...)`, then `.predict(paths, queries=...)`
(all videos batched together) or `predict_videos(predictor, paths,
output_dir)` (each video on its own: bad ones reported and skipped, finished
ones skipped on a rerun, outputs written atomically).  Long videos are cut
into windows as `Chunking` (`data.chunks`) says."""

from unloc_tf.data.chunks import Chunking
from unloc_tf.predict.outputs import (
    Summary,
    output_paths,
    predict_videos,
    write_outputs,
)
from unloc_tf.predict.predictor import (
    SIGNATURES,
    TASKS,
    Predictor,
    saved_model_dir,
)
from unloc_tf.predict.videos import (
    Video,
    decode,
    list_videos,
    output_names,
    temporal_resolution,
    video_records,
)

__all__ = ["SIGNATURES", "TASKS", "Chunking", "Predictor", "Summary", "Video",
           "decode", "list_videos", "output_names", "output_paths",
           "predict_videos", "saved_model_dir", "temporal_resolution",
           "video_records", "write_outputs"]
