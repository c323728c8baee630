"""Files: atomic writes and set replacement, JSON and CSV reading and writing, paths, the cache and hashing."""
