"""Defaults of the camera pipeline and of measurements over time, in one place (read by the CLI without loading OpenCV).

The pipeline's two were settled by measurement (``make pipeline-figures``): the fastest settings that
keep raw-photo accuracy and the share of frames with a face.
"""
DETECT_SIZE = 0  # --detect-size: longer side, in pixels, of the frame the detector sees (0 = the full frame).
# make pipeline-figures (640x480, YuNet): 480 kept every raw photo's face, 320 lost 9 of 1,032; the full frame stays
# the default because a reduced frame loses small faces in larger frames (a 1080p camera, group photos)
DETECT_EVERY = 5  # --detect-every: one frame in this many is detected; faces are carried forward on the others.
# YuNet, 1 face, full frame: 44 fps at 1, 99 at 3, 124 at 5 (4 faces: 30, 61, 77), a face in 100% of frames
WINDOW_S = 10.0  # --window: seconds per window of latency (bench) or fps and stage times (run)
WINDOWS_KEPT = 720  # windows a run keeps: the first and the last 719 (two hours of 10 s windows), so a week's run
# holds the same few hundred KB as an hour's
