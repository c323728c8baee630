"""Labels from UTKFace file names: ``age_gender_race_yyyymmddHHMMSSfff.jpg.chip.jpg``.

Parsing is lenient: a deviation from the convention that still leaves the labels
readable is recorded as an issue and the labels are kept; a name whose age or
gender cannot be read is set aside with its reason.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_AGE = 116
GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
TIMESTAMP_DIGITS = 17

_SUFFIX = re.compile(r"(?P<space>\s*)(?P<dot>\.?)(?:jpe?g|png)(?:\.chip\.(?:jpe?g|png))?$", re.IGNORECASE)


@dataclass(frozen=True)
class NameLabels:
    """What one file name says: labels (``-1`` = unknown), issues, and why it was set aside."""

    age: int = -1
    gender: int = -1
    race: int = -1
    timestamp: str = ""
    issues: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.reason is None

    @property
    def malformed(self) -> bool:
        return bool(self.issues) or self.reason is not None

    @property
    def minute(self) -> str:
        """The time stamp to the minute (``yyyymmddHHMM``), or ``""``."""
        return self.timestamp[:12] if len(self.timestamp) >= 12 else ""


def parse_name(name: str) -> NameLabels:
    """Read age, gender, race and time stamp from a file name (a path is fine)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    issues: list[str] = []
    match = _SUFFIX.search(base)
    stem = base[: match.start()] if match else base.rsplit(".", 1)[0]
    if match and match.group("space"):
        issues.append("space before the extension")
    if match and not match.group("dot"):
        issues.append("missing dot before the extension")
    raw = stem.split("_")
    fields = [f.strip() for f in raw if f.strip()]
    if len(fields) != len(raw):
        issues.append("empty field")
    if len(fields) < 2 or not fields[0].isdigit():
        return NameLabels(issues=tuple(issues), reason="no age_gender_ prefix in the name")
    age = int(fields[0])
    if not 0 <= age <= MAX_AGE:
        return NameLabels(issues=tuple(issues), reason=f"age {age} outside 0..{MAX_AGE}")
    if fields[1] not in ("0", "1"):
        return NameLabels(age=age, issues=tuple(issues), reason=f"gender {fields[1]!r} is not 0 (male) or 1 (female)")
    gender = int(fields[1])
    rest = fields[2:]
    race, timestamp = -1, ""
    if rest and len(rest[0]) == 1 and rest[0].isdigit():
        race = int(rest.pop(0))
        if race >= len(RACES):
            issues.append(f"race {race} outside 0..{len(RACES) - 1}")
            race = -1
    else:
        issues.append("missing race field")
    if rest and rest[0].isdigit():
        timestamp = rest.pop(0)
        if len(timestamp) != TIMESTAMP_DIGITS:
            issues.append(f"time stamp of {len(timestamp)} digits")
    else:
        issues.append("missing time stamp")
    if rest:
        issues.append("extra fields")
    return NameLabels(age, gender, race, timestamp, tuple(issues))
