"""Sinks: what a frame's results become (drawn overlays, JSON lines, annotated video, files, the MJPEG stream)."""
