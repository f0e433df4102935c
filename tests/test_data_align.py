"""FFHQ alignment on the real bundled photos, the no-dlib paths, single-photo errors
and the folder tool.

Expected eye positions come from the FFHQ geometry, not from the code under test:
the crop square has half-side |x| = max(2|eye_to_eye|, 1.8|eye_to_mouth|) centred
0.1 eye_to_mouth below the eye midpoint, so when 2|eye_to_eye| wins the eyes land
at x = 3/8 and 5/8 of the width and 0.1 |eye_to_mouth| / (2|x|) of the width above
the centre. The eyes are measured by running dlib's landmarks again on the output.
Tolerance: 2 px at 256 (0.8 %), the spread of dlib's 68-point eye centres between
renderings; grace_hopper wears glasses, whose frames pull the eye points, so 4 px.
"""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from modify_ms.data import align as align_mod
from modify_ms.data.align import (Aligner, AlignUnavailableError, FaceDetector, NoFaceError, dlib_available,
                                  find_landmark_model)
from modify_ms.data.builtin import (ASTRONAUT_QUAD, GRACE_HOPPER_QUAD, astronaut_photo, grace_hopper_photo)
from modify_ms.data.imageio import ImageReadError, read_image, save_image_atomic
from modify_ms.data.prepare import load_photo

SIZE = 256
needs_dlib = pytest.mark.skipif(not dlib_available(), reason="alignment extra not installed (pip install .[align])")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def aligner():
    return Aligner(SIZE, "dlib")


def _eyes(landmarks):
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)


def _expected_eyes(source_landmarks, size):
    """FFHQ eye centres in output pixel indices (see module doc) for a given source face."""
    left, right = _eyes(source_landmarks)
    eye_to_eye = np.hypot(*(right - left))
    mouth = (source_landmarks[48] + source_landmarks[54]) / 2
    eye_to_mouth = np.hypot(*(mouth - (left + right) / 2))
    half = max(2.0 * eye_to_eye, 1.8 * eye_to_mouth)
    px = size / (2 * half)  # output pixels per source pixel
    centre = size / 2 - 0.5
    y = centre - 0.1 * eye_to_mouth * px
    return np.array([centre - eye_to_eye / 2 * px, y]), np.array([centre + eye_to_eye / 2 * px, y])


def _check_ffhq_geometry(result, detector, tol):
    out_face = detector.best_face(result.image, "aligned output")
    got_left, got_right = _eyes(out_face.landmarks)
    want_left, want_right = _expected_eyes(result.face.landmarks, SIZE)
    assert abs(got_left[1] - got_right[1]) <= tol, "eyes are not level"
    np.testing.assert_allclose(got_left, want_left, atol=tol)
    np.testing.assert_allclose(got_right, want_right, atol=tol)
    return got_left, got_right


@needs_dlib
def test_astronaut_aligns_to_ffhq_eye_positions(aligner, detector):
    photo = astronaut_photo()
    result = aligner(photo, "astronaut")
    assert result.method == "ffhq" and result.image.shape == (SIZE, SIZE, 3) and result.image.dtype == np.uint8
    left, right = _check_ffhq_geometry(result, detector, tol=2.0)
    # the eye row of FFHQ crops: just above the middle; eyes a quarter of the width apart
    assert 0.45 * SIZE < left[1] < 0.49 * SIZE
    assert abs((right[0] - left[0]) - SIZE / 4) <= 2.0


@needs_dlib
def test_astronaut_mission_patch_is_not_chosen(aligner, detector):
    photo = astronaut_photo()
    faces = detector.detect(photo)
    # the detector does fire low on the suit (the mission patch), so the choice matters
    assert any(face.rect[1] > 300 for face in faces)
    chosen = aligner(photo, "astronaut").face
    assert chosen.score == max(face.score for face in faces)
    left, top, right, bottom = chosen.rect
    assert 150 < (left + right) / 2 < 290 and 50 < (top + bottom) / 2 < 200  # the head, not the patch


@needs_dlib
def test_same_input_gives_byte_identical_output(detector):
    photo = astronaut_photo()
    first = Aligner(SIZE, "dlib")(photo, "astronaut").image
    second = Aligner(SIZE, "dlib")(photo.copy(), "astronaut").image
    assert hashlib.sha256(first.tobytes()).hexdigest() == hashlib.sha256(second.tobytes()).hexdigest()


@needs_dlib
def test_grace_hopper_aligns(aligner, detector):
    result = aligner(grace_hopper_photo(), "grace_hopper")
    assert result.method == "ffhq" and result.image.shape == (SIZE, SIZE, 3)
    _check_ffhq_geometry(result, detector, tol=4.0)


@needs_dlib
def test_face_near_the_border_is_padded_not_cut(aligner, detector):
    photo = np.ascontiguousarray(astronaut_photo()[60:, 110:])  # the FFHQ square now leaves the photo
    result = aligner(photo, "astronaut-cropped")
    assert result.quad[:, 1].min() < 0 or result.quad[:, 0].min() < 0
    _check_ffhq_geometry(result, detector, tol=2.0)
    assert result.image[:8].std() > 1.0  # reflected + blurred content, not a flat border


@needs_dlib
def test_builtin_quads_match_dlib(aligner):
    """builtin.py stores the quads so the built-in photos need no dlib: re-measure them."""
    for photo, stored in ((astronaut_photo(), ASTRONAUT_QUAD), (grace_hopper_photo(), GRACE_HOPPER_QUAD)):
        np.testing.assert_allclose(aligner(photo).quad, np.array(stored), atol=0.02)


@needs_dlib
def test_no_face_photo_gives_one_line_error(tmp_path):
    path = str(tmp_path / "wall.png")
    save_image_atomic(path, np.full((120, 160, 3), 128, np.uint8))
    with pytest.raises(NoFaceError) as err:
        load_photo(path, 64, align="dlib")
    assert str(err.value) == f"{path}: no face found"
    kept = load_photo(path, 64, align="dlib", no_face="center")  # opt-in fallback
    assert kept.shape == (3, 64, 64) and np.allclose(kept, 128 / 127.5 - 1, atol=1e-6)
    with pytest.raises(ImageReadError, match="not an image file"):
        bad = tmp_path / "x.jpg"
        bad.write_bytes(b"text" * 20)
        load_photo(str(bad), 64)


def test_single_photo_without_alignment(tmp_path):
    path = str(tmp_path / "wide.png")
    img = np.zeros((60, 100, 3), np.uint8)
    img[:, 20:80] = 255  # the central square is white
    save_image_atomic(path, img)
    out = load_photo(path, 32, align="none")
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0)


def test_without_dlib_auto_falls_back_and_dlib_mode_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(align_mod, "find_landmark_model", lambda: None)
    notices = []
    auto = Aligner(32, "auto", notice=notices.append)
    assert len(notices) == 1 and "pip install .[align]" in notices[0] and "\n" not in notices[0]
    result = auto(np.zeros((50, 40, 3), np.uint8))
    assert result.method == "center" and result.image.shape == (32, 32, 3)
    with pytest.raises(AlignUnavailableError, match=r"pip install \.\[align\]"):
        Aligner(32, "dlib")
    with pytest.raises(ValueError, match="align mode must be one of"):
        Aligner(32, "mtcnn")
    align_mod._NOTICES_SHOWN.clear()
    Aligner(32, "auto")
    Aligner(32, "auto")  # the default notice is printed once per process, not per photo
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_landmark_model_is_found_without_importing_its_package():
    code = ("import sys; from modify_ms.data.align import find_landmark_model; p = find_landmark_model(); "
            "print(p is not None and p.endswith('shape_predictor_68_face_landmarks.dat'), "
            "'face_recognition_models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    expected = "True False" if find_landmark_model() else "False False"
    assert out.stdout.strip() == expected, out.stderr


@needs_dlib
def test_align_faces_tool_on_a_folder(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    save_image_atomic(str(src / "astronaut.jpg"), astronaut_photo())
    save_image_atomic(str(src / "sub" / "wall.png"), np.full((120, 160, 3), 90, np.uint8))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(REPO, "tools", "align_faces.py"), str(src), str(out),
           "--size", "64", "--workers", "1", "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "1 aligned (ffhq), 0 already done, 2 skipped of 3" in run.stdout
    assert f"skipped {src / 'sub' / 'wall.png'}: no face found" in run.stdout
    assert f"skipped {src / 'broken.jpg'}: " in run.stdout
    assert "1 files without an image extension ignored" in run.stdout
    aligned = read_image(str(out / "astronaut.png"))
    assert aligned.shape == (64, 64, 3)
    report = (out / "align_skipped.tsv").read_text().splitlines()
    assert report[0] == "input\treason" and len(report) == 3
    assert sorted(os.listdir(out)) == ["align_skipped.tsv", "astronaut.png"]  # no temp files left
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "0 aligned (ffhq), 1 already done" in rerun.stdout
