"""Pipeline: from a frame to ages (find faces, predict them, time each stage), the run loop with its windows and
report, and ``predict`` over image files."""
