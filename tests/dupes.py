"""An independent reference for byte-identical groups: plain hashlib over the files."""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path


def duplicate_groups(folder: Path) -> list[list[str]]:
    """Sorted groups (size >= 2) of file names with identical bytes."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for name in sorted(os.listdir(folder)):
        by_hash[hashlib.md5((folder / name).read_bytes()).hexdigest()].append(name)
    return sorted(g for g in by_hash.values() if len(g) > 1)
