import os
import shutil
import tarfile
import zipfile

import numpy as np
import pytest

from edge_age.data.faceset import load_faces, perceptual_hash
from firmware_host.errors import EdgeAgeError
from tests.conftest import UTK64, copy_slice, sample_names


@pytest.fixture()
def folder(tmp_path):
    return copy_slice(UTK64, tmp_path / "faces", sample_names(UTK64, 40))


def test_folder_is_read_recursively_and_cached(folder):
    nested = folder / "more" / "deeper"
    nested.mkdir(parents=True)
    moved = sorted(os.listdir(folder))[:5]
    for name in moved[:5]:
        if (folder / name).is_file():
            shutil.move(folder / name, nested / name)
    first = load_faces(folder, size=48)
    assert len(first.names) == 40 and not first.from_cache
    assert first.images.shape == (40, 48, 48, 3) and first.images.dtype == np.uint8
    assert any(n.startswith("more/deeper/") for n in first.names)
    second = load_faces(folder, size=48)
    assert second.from_cache
    np.testing.assert_array_equal(first.images, second.images)
    assert second.sha256 == first.sha256
    # a new file changes the key: the cache is rebuilt
    shutil.copy2(UTK64 / sorted(os.listdir(UTK64))[-1], folder / "extra_0_0_20170101000000000.jpg.chip.jpg")
    third = load_faces(folder, size=48)
    assert not third.from_cache and len(third.names) == 41


def test_a_copy_of_the_same_faces_has_the_same_fingerprint(folder, tmp_path):
    """Soft targets made on one copy of the data serve another (CI's fresh copy, another path, other file times);
    a changed byte of one face is other data."""
    copy = tmp_path / "elsewhere" / "faces"
    shutil.copytree(folder, copy)  # new modification times
    first = sorted(copy.iterdir())[0]
    os.utime(first, (0, 0))
    fingerprint = load_faces(folder, use_cache=False).fingerprint
    assert load_faces(copy, use_cache=False).fingerprint == fingerprint
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF  # inside the JPEG's last scan: same size, still readable
    first.write_bytes(bytes(data))
    assert load_faces(copy, use_cache=False).fingerprint != fingerprint


def test_images_are_rgb(folder):
    import cv2
    faces = load_faces(folder, size=64, use_cache=False)
    name = faces.names[0]
    bgr = cv2.imread(str(folder / name))
    np.testing.assert_array_equal(faces.images[0], bgr[:, :, ::-1])


def test_archives_stream_the_same_images(folder, tmp_path):
    ref = load_faces(folder, use_cache=False)
    tgz, zp = tmp_path / "faces.tar.gz", tmp_path / "faces.zip"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(folder, arcname="UTKFace")
    with zipfile.ZipFile(zp, "w") as z:
        for name in ref.names:
            z.write(folder / name, f"UTKFace/{name}")
        z.writestr("UTKFace/README.txt", "not an image")
    for archive in (tgz, zp):
        faces = load_faces(archive)
        assert sorted(n.split("/", 1)[1] for n in faces.names) == sorted(ref.names)
        order = np.argsort(faces.names)
        np.testing.assert_array_equal(np.asarray(faces.images)[order], ref.images[np.argsort(ref.names)])
    assert load_faces(zp).ignored == ["UTKFace/README.txt"]


def test_truncated_archive(folder, tmp_path):
    tgz = tmp_path / "faces.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(folder, arcname="UTKFace")
    data = tgz.read_bytes()
    tgz.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgeAgeError, match="truncated or corrupt"):
        load_faces(tgz)


def test_corrupt_and_non_image_files_are_counted(folder):
    name = sorted(os.listdir(folder))[0]
    data = (folder / name).read_bytes()
    (folder / "20_1_0_20170101000000000.jpg.chip.jpg").write_bytes(data[: len(data) // 2])
    (folder / "30_0_0_20170101000000001.jpg.chip.jpg").write_bytes(b"this is text, not a JPEG")
    (folder / "notes.txt").write_text("hello")
    faces = load_faces(folder)
    assert len(faces.names) == 40
    assert sorted(n for n, _ in faces.unreadable) == ["20_1_0_20170101000000000.jpg.chip.jpg",
                                                       "30_0_0_20170101000000001.jpg.chip.jpg"]
    assert faces.ignored == ["notes.txt"]


@pytest.mark.parametrize("content", [None, "text"])
def test_no_images(tmp_path, content):
    if content:
        (tmp_path / "readme.txt").write_text(content)
    with pytest.raises(EdgeAgeError, match="no image files"):
        load_faces(tmp_path)


def test_perceptual_hash_survives_reencoding():
    import cv2
    bgr = cv2.imread(str(UTK64 / sorted(os.listdir(UTK64))[100]))
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    _, buf = cv2.imencode(".jpg", cv2.convertScaleAbs(bgr, alpha=1.1, beta=8), [cv2.IMWRITE_JPEG_QUALITY, 60])
    again = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    other = cv2.cvtColor(cv2.imread(str(UTK64 / sorted(os.listdir(UTK64))[5000])), cv2.COLOR_BGR2GRAY)
    assert bin(perceptual_hash(grey) ^ perceptual_hash(again)).count("1") <= 4
    assert bin(perceptual_hash(grey) ^ perceptual_hash(other)).count("1") > 8
