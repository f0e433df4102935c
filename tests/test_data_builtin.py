"""Built-in offline data: real bundled photos and the deterministic painted domain."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from modify_ms.data.builtin import (builtin_images, builtin_photos, builtin_style_images, materialize_builtin)
from modify_ms.data.imageio import read_image
from modify_ms.data.sources import open_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HASH_CODE = ("import hashlib; from modify_ms.data.builtin import builtin_photos, builtin_style_images; "
             "h = hashlib.sha256(); [h.update(a.tobytes()) for a in builtin_photos(32) + builtin_style_images(32)]; "
             "print(h.hexdigest())")


def test_photos_and_painted_sets():
    photos, painted = builtin_photos(32), builtin_style_images(32)
    assert len(photos) == len(painted) == 102  # astronaut, grace_hopper, 100 LFW faces
    for image in photos + painted:
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert photos[0].std() > 20 and photos[1].std() > 20  # real colour photos, not blank
    assert np.all(photos[5][..., 0] == photos[5][..., 2])  # LFW faces are grayscale
    # the painted domain is a different domain: colourful, few colours per channel, dark ink lines
    assert any(np.abs(p.astype(int) - q).mean() > 20 for p, q in zip(photos, painted))
    assert np.mean([len(np.unique(q[..., 0])) for q in painted]) < np.mean([len(np.unique(p[..., 0])) for p in photos])
    assert not all(np.all(q[..., 0] == q[..., 2]) for q in painted[2:])  # gray faces get tinted
    with pytest.raises(ValueError, match="unknown built-in data set"):
        builtin_images("builtin:sketches", 32)
    with pytest.raises(ValueError, match=r"\[8, 4096\]"):
        builtin_photos(4)


def test_painted_domain_is_byte_identical_across_runs():
    h = hashlib.sha256()
    for image in builtin_photos(32) + builtin_style_images(32):
        h.update(image.tobytes())
    out = subprocess.run([sys.executable, "-c", HASH_CODE], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == h.hexdigest()


def test_materialize_writes_once_and_completely(tmp_path):
    folder = materialize_builtin("builtin:painted", 32, str(tmp_path))
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    assert len(files) == 102 and os.path.isfile(os.path.join(folder, "COMPLETE"))
    np.testing.assert_array_equal(read_image(os.path.join(folder, files[3])), builtin_style_images(32)[3])
    stamp = os.stat(os.path.join(folder, files[0])).st_mtime_ns
    assert materialize_builtin("painted", 32, str(tmp_path)) == folder  # reused, not rewritten
    assert os.stat(os.path.join(folder, files[0])).st_mtime_ns == stamp
    os.remove(os.path.join(folder, "COMPLETE"))  # an interrupted run is redone
    os.remove(os.path.join(folder, files[0]))
    materialize_builtin("painted", 32, str(tmp_path))
    assert os.path.isfile(os.path.join(folder, files[0]))
    assert not [f for f in os.listdir(folder) if f.startswith(".tmp")]


def test_builtin_names_work_as_data_paths():
    source = open_source("builtin:photos", size=32)
    assert len(source) == 102
    np.testing.assert_array_equal(source.read(1), builtin_photos(32)[1])
