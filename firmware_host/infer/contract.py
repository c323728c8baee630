"""The model-output contract: an edge-age model has one output whose name ends in ``age`` (logits over whole
years, or one regression value) and one ending in ``gender`` (the probability of female). QAT prefixes the
names (``quant_age``), and TFLite does not keep their order, so outputs are always picked by name, here."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from firmware_host.errors import EdgeAgeError
from firmware_host.infer.postprocess import IDENTITY, SOFTMAX, VALUE, AgeDecoding, decode_age

HEADS = ("age", "gender")


def output_key(keys: Iterable[str], head: str) -> str | None:
    """The first key ending in ``head`` ("age" or "gender"), or None."""
    return next((k for k in keys if k.endswith(head)), None)


def is_age_gender(keys: Iterable[str]) -> bool:
    """Whether ``keys`` hold both an age and a gender output."""
    keys = list(keys)
    return all(output_key(keys, head) is not None for head in HEADS)


def head_of(key: str) -> str:
    """"age" for an age output's key, else "gender"."""
    return "age" if key.endswith("age") else "gender"


def split_outputs(outputs: Mapping[str, object]) -> tuple[object, object]:
    """(age output, gender output) of a model's outputs by name, as they are (tensors or arrays)."""
    age, gender = (outputs[k] if (k := output_key(outputs, head)) is not None else None for head in HEADS)
    if age is None or gender is None:
        raise EdgeAgeError(f"model outputs {sorted(outputs)} are not named age and gender")
    return age, gender


def mirror_averaged(run: Callable[[np.ndarray], Mapping[str, np.ndarray]], images: np.ndarray,
                    mirror: bool = True) -> dict[str, np.ndarray]:
    """``run``'s outputs (by name) for a batch of ``images`` (N, H, W, C); with ``mirror``, each averaged with its
    output for the same images flipped left to right: the age logits and the gender probability alike."""
    outputs = {k: np.asarray(v) for k, v in run(images).items()}
    if not mirror:
        return outputs
    flipped = run(np.ascontiguousarray(np.asarray(images)[:, :, ::-1]))
    return {k: (v + np.asarray(flipped[k])) / 2 for k, v in outputs.items()}


def pick_outputs(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(age output, gender probability) from outputs named ``*age`` and ``*gender``."""
    age, gender = split_outputs(outputs)
    return age, gender[:, 0]


def ages_from_output(age: np.ndarray, decoding: AgeDecoding = IDENTITY) -> np.ndarray:
    """Ages from logits over ages 0..K-1 or from a regression head's value, as ``decoding`` reads them."""
    age = np.asarray(age)
    return decode_age(age, SOFTMAX if age.shape[-1] > 1 else VALUE, None, decoding)[0]
