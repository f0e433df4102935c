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

import cv2
import numpy as np
import pytest

from modify_ms.data import align as align_mod
from modify_ms.data.align import (AlignError, Aligner, AlignUnavailableError, Face, FaceDetector, NoFaceError,
                                  dlib_available, find_landmark_model, parse_face_choice, rank_faces, resize_image,
                                  select_faces)
from modify_ms.data.builtin import (ASTRONAUT_QUAD, GRACE_HOPPER_QUAD, astronaut_photo, grace_hopper_photo,
                                    lfw_faces)
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
    faces = detector.find_faces(photo)
    # the detector fires above its threshold on the suit (the mission patch, about as large
    # as the head), so the choice matters
    patch = [face for face in faces if face.rect[1] > 300]
    assert patch and abs(patch[0].side - faces[0].side) < 0.2 * faces[0].side
    result = aligner(photo, "astronaut")
    left, top, right, bottom = result.face.rect
    assert 150 < (left + right) / 2 < 290 and 50 < (top + bottom) / 2 < 200  # the head, not the patch
    assert result.rank == 0 and result.faces_found == len(faces) >= 2


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


# ----------------------------------------------------------------------------- which face

def _face(left, top, side, score):
    return Face((left, top, left + side, top + side), score)


def test_main_face_is_the_large_central_one_not_the_best_scored():
    """prominence() on hand-made detections (no dlib): size first, then centre, then score."""
    w, h = 640, 480
    big_off_centre = _face(20, 20, 200, 0.1)  # large subject standing left, weak detection
    small_sharp = _face(300, 220, 60, 2.5)  # small frontal face in the middle, strong detection
    assert rank_faces([small_sharp, big_off_centre], w, h)[0] is big_off_centre
    corner, central = _face(0, 0, 100, 1.0), _face(270, 190, 100, 1.0)  # same size: the central one
    assert rank_faces([corner, central], w, h)[0] is central
    weak, strong = _face(100, 190, 100, 0.2), _face(440, 190, 100, 0.9)  # mirror positions: the score decides
    assert rank_faces([weak, strong], w, h)[0] is strong
    ranked = rank_faces([small_sharp, big_off_centre], w, h)
    assert select_faces(ranked, "largest") == [big_off_centre]
    assert select_faces(ranked, "best") == [small_sharp]
    assert select_faces(ranked, "all") == [big_off_centre, small_sharp]
    assert select_faces(ranked, 1) == [small_sharp]
    with pytest.raises(AlignError, match=r"group.png: face 2 asked for, but only 2 face\(s\) found"):
        select_faces(ranked, 2, "group.png")
    assert [parse_face_choice(t) for t in ("largest", "BEST", "all", "0", "3")] == ["largest", "best", "all", 0, 3]
    for bad in ("biggest", "-1", "1.5", ""):
        with pytest.raises(ValueError, match="face choice must be one of"):
            parse_face_choice(bad)


def _group_photo():
    """The astronaut's head pasted large in the middle, Grace Hopper small in a corner, on
    a plain background. dlib scores the small face higher (checked in the test)."""
    canvas = np.full((420, 640, 3), 200, np.uint8)
    canvas[30:390, 130:490] = resize_image(astronaut_photo()[20:260, 100:340], 360, 360)
    canvas[20:120, 520:620] = resize_image(grace_hopper_photo()[60:460, 70:470], 100, 100)
    return canvas


BIG_REGION, SMALL_REGION = (130, 30, 490, 390), (520, 20, 620, 120)  # left, top, right, bottom


def _centre_in(face, region):
    cx, cy = (face.rect[0] + face.rect[2]) / 2, (face.rect[1] + face.rect[3]) / 2
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


def _closer_to(image, same, other):
    """The aligned crop resembles ``same`` (the photo it came from, aligned alone) more than ``other``."""
    def mse(a, b):
        return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))

    return mse(image, same) < 0.5 * mse(image, other)


@pytest.fixture(scope="module")
def alone():
    return {"astronaut": Aligner(SIZE, "dlib")(astronaut_photo()).image,
            "grace": Aligner(SIZE, "dlib")(grace_hopper_photo()).image}


@needs_dlib
def test_group_photo_keeps_the_larger_face(detector, alone):
    group = _group_photo()
    faces = detector.find_faces(group)
    assert len(faces) == 2
    big = next(f for f in faces if _centre_in(f, BIG_REGION))
    small = next(f for f in faces if _centre_in(f, SMALL_REGION))
    assert small.score > big.score and small.side < big.side / 2  # keeping the best score would be wrong
    main = Aligner(SIZE, "dlib")(group, "group")
    assert _centre_in(main.face, BIG_REGION) and main.rank == 0 and main.faces_found == 2
    assert _closer_to(main.image, alone["astronaut"], alone["grace"])
    best = Aligner(SIZE, "dlib", face="best")(group, "group")
    assert _centre_in(best.face, SMALL_REGION) and best.rank == 1
    assert _closer_to(best.image, alone["grace"], alone["astronaut"])
    assert _centre_in(Aligner(SIZE, "dlib", face=1)(group).face, SMALL_REGION)
    with pytest.raises(AlignError, match="face 2 asked for"):
        Aligner(SIZE, "dlib", face=2)(group, "group")


@needs_dlib
def test_face_all_writes_one_crop_per_face(tmp_path, alone):
    save_image_atomic(str(tmp_path / "in" / "group.png"), _group_photo())
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(REPO, "tools", "align_faces.py"), "in", "out", "--size", str(SIZE),
           "--workers", "1", "--quiet", "--face", "all"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == ["group_face0.png", "group_face1.png"]
    assert "1 aligned (ffhq) (2 face crops)" in run.stdout
    assert "in/group.png: 2 faces written: face0 " in run.stdout and "score" in run.stdout
    assert _closer_to(read_image(str(out / "group_face0.png")), alone["astronaut"], alone["grace"])
    assert _closer_to(read_image(str(out / "group_face1.png")), alone["grace"], alone["astronaut"])
    default = subprocess.run(cmd[:-2] + ["--overwrite"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": REPO})
    assert default.returncode == 0, default.stderr
    assert "in/group.png: kept face 0 of 2 (--face all or --face N for the others)" in default.stdout
    assert _closer_to(read_image(str(out / "group.png")), alone["astronaut"], alone["grace"])


# ----------------------------------------------------------------------------- retries

def _gray(image):
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _small_gray_print():
    """The astronaut as a 128 px grayscale print: her face is about 22 px."""
    return _gray(resize_image(astronaut_photo(), 128, 128))


def _lfw_face():
    """A real 25 x 25 LFW face (grayscale, skimage) with a 20 px border of its edge colours."""
    face = np.repeat(lfw_faces()[0][:, :, None], 3, axis=2)
    return np.pad(face, ((20, 20), (20, 20), (0, 0)), mode="edge")


def _faded_print():
    """Grace Hopper's large face (about 200 px) as a faded, soft grayscale print: contrast
    cut to 10 %, blurred, with a little grain (fixed seed)."""
    gray = cv2.cvtColor(grace_hopper_photo(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray = cv2.GaussianBlur(128 + (gray - 128) * 0.1, (0, 0), 3)
    gray += np.random.default_rng(0).normal(0, 4, gray.shape)
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@needs_dlib
@pytest.mark.parametrize("make, found_by, min_side", [
    (_small_gray_print, "after upsampling 4x", 15),
    (_lfw_face, "after upsampling 4x", 15),
    (_faded_print, "contrast equalisation", 150),
], ids=["small-gray-print", "lfw-25px", "faded-large-face"])
def test_faces_found_only_by_a_retry(make, found_by, min_side):
    photo = make()
    with pytest.raises(NoFaceError, match="no face found"):
        FaceDetector(retry=False).find_faces(photo, "old photo")  # the first pass alone misses it
    result = Aligner(64, "dlib")(photo, "old photo")
    assert result.method == "ffhq" and result.image.shape == (64, 64, 3)
    assert found_by in result.face.found_by and result.face.side >= min_side
    assert found_by in result.face.describe()
