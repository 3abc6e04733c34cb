"""One planned video -> its serialised records (`convert_video`)."""

from __future__ import annotations

import os

import tensorflow as tf

from tests.datasets.helpers import SRC_FPS
from unloc_tf import spec
from unloc_tf.datasets import common, video_records


def _params(task, fps=SRC_FPS):
  return video_records.Params(task, fps, short_side=0, jpeg_quality=90,
                              duration_tolerance=1.0)


def test_missing_video_and_nothing_to_write():
  item = common.VideoItem("x", [common.RecordPlan("x")],
                          common.video_names("x"),
                          issues=[{"reason": "planned", "video_id": "x"}])
  result = video_records.convert_video(item, _params(spec.TAL))
  assert result.serialized == [] and not result.converted
  assert result.issues == [
      {"reason": "planned", "video_id": "x"},
      {"reason": common.MISSING_VIDEO, "video_id": "x",
       "detail": "no file named any of ['x', 'v_x'] with a video extension"}]
  item = common.VideoItem("y", [], common.video_names("y"), path="/nowhere")
  result = video_records.convert_video(item, _params(spec.TAL))
  assert (result.serialized, result.issues) == ([], [])


def test_action_segmentation_record(syn):
  """Segments clipped to the video, indices rounded half up, later steps
  overwrite earlier ones in the frame labels."""
  vid = sorted(v for v in syn.videos if v.startswith("syn_train"))[0]
  d = syn.videos[vid].duration
  rec = common.RecordPlan(vid, segments=[
      common.SegmentPlan(0, 0.3, 2.1, 1, "a"),
      common.SegmentPlan(1, 1.0, d + 5.0, 0, "b"),
      common.SegmentPlan(2, d + 1.0, d + 2.0, 1, "a")])
  item = common.VideoItem(vid, [rec], common.video_names(vid), d,
                          path=os.path.join(syn.videos_dir, vid + ".mp4"))
  result = video_records.convert_video(item, _params(spec.AS))
  assert result.converted and len(result.serialized) == 1
  assert [i["reason"] for i in result.issues] == [common.SEGMENT_CLIPPED,
                                                  common.SEGMENT_OUTSIDE]
  ex = tf.train.SequenceExample.FromString(result.serialized[0])
  c = ex.context.feature
  n = c[spec.CLIP_FRAMES].int64_list.value[0]
  assert n == result.frames
  # 0.3 * 5 = 1.5 -> 2 (half up); 2.1 * 5 = 10.5 -> 11.
  assert list(c[spec.SEGMENT_START_INDEX].int64_list.value) == [2, 5]
  assert list(c[spec.SEGMENT_END_INDEX].int64_list.value) == [11, n - 1]
  labels = [list(f.int64_list.value) for f in
            ex.feature_lists.feature_list[spec.FRAME_LABEL_INDEX].feature]
  assert labels == [[]] * 2 + [[1]] * 3 + [[0]] * (n - 5)
