"""The bundled model family: members addressable by name (``m``, ``s``, ``n``).

Each member is a folder of ``edge_age/family/`` holding ``member.json`` (its facts
and measured figures), ready ``.tflite`` files with their sidecars, its model card
and, where bundled, its Keras float and QAT models. Nothing here needs TensorFlow:
the runtime-only install resolves names too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from firmware_host.errors import EdgeAgeError

FAMILY_DIR = Path(__file__).resolve().parent / "family"
DEFAULT_MEMBER = "s"
DEFAULT_TARGET = "int8-qat"
ORDER = ("m", "s", "n")  # most accurate first


@dataclass(frozen=True)
class Member:
    """One bundled member: its folder and the facts of its ``member.json``."""

    name: str
    folder: Path
    facts: dict

    def tflite(self, target: str = DEFAULT_TARGET) -> Path:
        """The installed ``.tflite`` of ``target``; an error naming the targets it has."""
        files = self.files()
        if target not in files:
            raise EdgeAgeError(f"member {self.name} has no {target} file; it has {', '.join(files) or 'none'}")
        return files[target]

    def files(self) -> dict[str, Path]:
        """Target name to the absolute path of each installed ``.tflite``."""
        out = {}
        for target, name in self.facts.get("files", {}).items():
            path = (self.folder / name).resolve()
            if path.is_file():
                out[target] = path
        return out

    def keras(self, kind: str = "float") -> Path:
        """The member's Keras model, ``float`` or ``qat``."""
        rel = self.facts.get("keras", {}).get(kind)
        path = (self.folder / rel).resolve() if rel else None
        if path is None or not path.is_file():
            raise EdgeAgeError(f"member {self.name} has no bundled Keras {kind} model: 'make members' in a clone "
                               f"of the repository trains it into runs/members/{self.name}")
        return path

    def summary(self) -> dict:
        """What ``edge-age models --json`` prints for this member."""
        return {"name": self.name, "default": self.name == DEFAULT_MEMBER,
                **{k: v for k, v in self.facts.items() if k not in ("files", "keras")},
                "files": {t: str(p) for t, p in self.files().items()}}


def _read(folder: Path) -> Member:
    path = folder / "member.json"
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgeAgeError(f"{path} is not a readable member description: {exc}") from None
    if not isinstance(facts, dict) or not isinstance(facts.get("files"), dict):
        raise EdgeAgeError(f"{path} has no 'files' object")
    return Member(folder.name, folder, facts)


def members(root: Path = FAMILY_DIR) -> list[Member]:
    """Every bundled member, most accurate first."""
    found = [_read(p.parent) for p in sorted(root.glob("*/member.json"))]
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(found, key=lambda m: (rank.get(m.name, len(rank)), m.name))


def member(name: str, root: Path = FAMILY_DIR) -> Member:
    """The member called ``name``; an error listing the members otherwise."""
    for m in members(root):
        if m.name == name:
            return m
    names = ", ".join(m.name for m in members(root)) or "none are installed"
    raise EdgeAgeError(f"unknown model {name!r}: not a file, and not a member of the family ({names})")


def is_member_name(value: str | Path) -> bool:
    """True for a bare name (no folder, no suffix) that is not an existing file."""
    text = str(value)
    return not Path(text).exists() and "/" not in text and "." not in text


def resolve_tflite(value: str | Path | None, target: str = DEFAULT_TARGET) -> Path:
    """A ``.tflite`` path: the file given, or the ``target`` file of the member named (default member when None);
    an error naming a ``.tflite`` file that does not exist (rather than its sidecar)."""
    if value is None:
        return member(DEFAULT_MEMBER).tflite(target)
    if is_member_name(value):
        return member(str(value)).tflite(target)
    if Path(value).suffix == ".tflite" and not Path(value).is_file():
        raise EdgeAgeError(f"model file {value} does not exist")
    return Path(value)


def resolve_keras(value: str | Path | None) -> Path | None:
    """A Keras float model path: the file given, or the member's bundled one (None stays None)."""
    if value is None:
        return None
    return member(str(value)).keras("float") if is_member_name(value) else Path(value)
