"""Defaults of the camera pipeline and of measurements over time, in one place (read by the CLI without loading OpenCV).

The pipeline's two are to be settled by measurement (``make pipeline-figures``): the fastest settings that
keep raw-photo accuracy and the share of frames with a face.
"""
DETECT_SIZE = 0  # --detect-size: longer side, in pixels, of the frame the detector sees (0 = the full frame);
# 320 lost YuNet faces in 9 of 1,032 raw photos (edge-age evaluate s --detect), so the full frame stays the default
DETECT_EVERY = 3  # --detect-every: one frame in this many is detected; faces are carried forward on the others
WINDOW_S = 10.0  # --window: seconds per window of latency (bench) or fps and stage times (run)
