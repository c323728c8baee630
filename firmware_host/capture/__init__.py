"""Capture: frames from a camera, a video file, a stream or an image folder, and image files read with limits."""
