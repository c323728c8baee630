"""Detection: the detector table (YuNet, BlazeFace, Haar), detection on a reduced frame, faces carried between
detections, alignment and tracking."""
