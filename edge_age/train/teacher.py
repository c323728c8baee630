"""The teacher of the model family, and its soft targets for distillation.

The teacher is an ensemble of trained float models, each run on the face and on
its mirror image: its age output is the log of the averaged age distributions
(so it decodes like any ``ldl`` model) and its gender output the averaged
P(female). It is saved as one ``.keras`` file that ``edge-age evaluate`` reads.

Its soft targets (:mod:`edge_age.data.soft_targets`) are the members' averaged outputs
for every face on the split's training and validation sides, on the face and on
its mirror image, so that a student flipped by augmentation learns the matching one.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from converters.tf_setup import keras, tensorflow
from edge_age.data.soft_targets import FORMAT, SIDES, SoftTargets, write_soft_targets
from edge_age.train.models import custom_objects
from firmware_host.errors import EdgeAgeError
from firmware_host.files import atomic
from firmware_host.files.jsonio import write_json
from firmware_host.infer.contract import split_outputs

log = logging.getLogger(__name__)


def build_teacher(members: list, input_size: int, *, mirror: bool = True):
    """One Keras model averaging ``members`` (float two-head models), over the face and its mirror image if
    ``mirror``."""
    k = keras()
    layers = custom_objects()
    image = k.Input((input_size, input_size, 3), name="image")
    views = (image, layers["MirrorFaces"](name="mirror")(image)) if mirror else (image,)
    ages, genders = [], []
    for i, member in enumerate(members):
        member._name = f"member_{i}"
        size = int(member.input_shape[1])
        for view in views:
            x = view if size == input_size else k.layers.Resizing(size, size, interpolation="bilinear")(view)
            out = member(x)
            age, gender = split_outputs(out)
            ages.append(age)
            genders.append(gender)
    age = layers["AverageAgeLogits"](name="age")(ages) if len(ages) > 1 else ages[0]
    gender = k.layers.Average(name="gender")(genders) if len(genders) > 1 else genders[0]
    return k.Model(image, {"age": age, "gender": gender}, name="teacher")


def teacher_outputs(model, images: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Age distributions (softmax of the age output) and P(female) for uint8 RGB faces."""
    from firmware_host.infer.preprocess import normalize
    from firmware_host.progress import track
    tf = tensorflow()
    ages, females = [], []
    for start in track(range(0, len(images), batch), "teacher", total=-(-len(images) // batch)):
        out = model(normalize(np.asarray(images[start:start + batch])), training=False)
        age, gender = split_outputs(out)
        ages.append(np.asarray(tf.nn.softmax(age)))
        females.append(np.asarray(gender)[:, 0])
    return np.concatenate(ages).astype(np.float32), np.concatenate(females).astype(np.float32)


def make_teacher(members: list[Path], *, data, split_path: Path, out: Path) -> dict:
    """Write ``teacher.keras`` (members averaged over the mirror image) and ``soft_targets.npz`` into ``out``."""
    from edge_age.data.split import read_split
    from edge_age.train.loop import split_arrays
    from edge_age.train.model_io import load_model, save_model
    from firmware_host.files.paths import file_sha256
    if not members:
        raise EdgeAgeError("the teacher needs at least one member model")
    out = atomic.writable_dir(out)
    loaded = [load_model(p) for p in members]
    size = max(int(m.input_shape[1]) for m in loaded)
    split = read_split(split_path)
    arrays, fingerprint = split_arrays(data, split, size)
    plain = build_teacher(loaded, size, mirror=False)
    files, age, age_m, fem, fem_m = [], [], [], [], []
    for side in SIDES:
        images = arrays[side].images
        a, f = teacher_outputs(plain, images)
        am, fm = teacher_outputs(plain, images[:, :, ::-1])
        files += arrays[side].files
        age.append(a), age_m.append(am), fem.append(f), fem_m.append(fm)
    meta = {"format": FORMAT, "data_fingerprint": fingerprint, "split_sha256": file_sha256(split_path),
            "split_file": Path(split_path).name, "members": [str(p) for p in members], "input_size": size,
            "sides": list(SIDES), "faces": len(files)}
    targets = SoftTargets(files, np.concatenate(age), np.concatenate(age_m), np.concatenate(fem),
                          np.concatenate(fem_m), meta)
    write_soft_targets(out / "soft_targets.npz", targets)
    save_model(build_teacher(loaded, size, mirror=True), out / "teacher.keras")
    write_json(out / "teacher.json", meta)
    log.info("soft targets for %d faces written to %s", len(files), out)
    return meta
