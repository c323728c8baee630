"""UTKFace-style face crops: reading, labels, cache, audit and split."""
