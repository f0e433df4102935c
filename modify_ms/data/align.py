"""FFHQ-style face alignment (68 dlib landmarks -> eye/mouth quad -> crop, pad, resample).

The geometry is the FFHQ dataset recipe, written here from its mathematics:

* eye centres are the means of landmarks 36-41 and 42-47; the mouth centre is the
  mean of the outer mouth corners 48 and 54;
* ``x = eye_to_eye - rot90(eye_to_mouth)`` (the average of the eye line and the
  normal of the eye-mouth line), normalised and scaled to
  ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``; ``y = rot90(x)``; the centre is
  ``eye_avg + 0.1 eye_to_mouth``; the crop is the square ``c -+ x -+ y``.
* the photo is pre-shrunk by an integer factor when the quad is much larger than the
  output, cropped to the quad plus a border, padded by reflection with a blur and a
  median blend where the quad leaves the photo, then resampled to the output size.

For a face whose eye-mouth line is perpendicular to the eyes and 2|eye_to_eye| >=
1.8|eye_to_mouth| (most faces), the eyes land level at x = 3/8 and 5/8 of the width,
a quarter of the width apart, slightly above the centre row.

The last step differs from the FFHQ script in one way: instead of a 4096-pixel
bilinear QUAD transform followed by a downsample, the crop is area-resampled so the
quad matches the output size and then rotated with a bicubic affine warp (same
geometry, ~20x less work, deterministic).

Which face: detections reaching ``min_score`` are ranked main face first by
``prominence`` (size, then closeness to the centre, then score), because dlib's score
favours small frontal faces and a group photo's background face often outscores the
subject. ``Aligner(face=...)`` keeps the main face ('largest', default), the best score
('best'), face number N, or every face ('all'). When no face is found, detection is
retried with one more upsampling (small faces) and with the contrast equalised (faded
prints) before ``NoFaceError``.

dlib is optional (``pip install .[align]``): its 68-point model file is found
through ``importlib.util.find_spec('face_recognition_models')`` without importing
that package. Without dlib, ``mode='auto'`` falls back to a centre crop with a
one-line notice and ``mode='dlib'`` raises ``AlignUnavailableError``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import cv2
import numpy as np

from .imageio import InputError

LANDMARK_MODEL_NAME = "shape_predictor_68_face_landmarks.dat"
ALIGN_MODES = ("none", "auto", "dlib")
INSTALL_HINT = "install the alignment extra: pip install .[align]  (dlib-bin + face-recognition-models)"


class AlignError(InputError):
    """A photo that cannot be aligned (the message names the file and the reason)."""


class NoFaceError(AlignError):
    """No face above the detector's score threshold."""


class AlignUnavailableError(AlignError):
    """dlib or its landmark model is not installed."""


def find_landmark_model() -> Optional[str]:
    """Path of dlib's 68-point model inside face-recognition-models, or None."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "models", LANDMARK_MODEL_NAME)
    return path if os.path.isfile(path) else None


def _import_dlib():
    try:
        import dlib  # noqa: WPS433 (optional dependency)
    except ImportError:
        return None
    return dlib


def dlib_available() -> bool:
    return importlib.util.find_spec("dlib") is not None and find_landmark_model() is not None


# ----------------------------------------------------------------------------- geometry

def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area filter when shrinking (no aliasing), bicubic when enlarging."""
    if (image.shape[1], image.shape[0]) == (width, height):
        return image
    shrinking = width * height < image.shape[0] * image.shape[1]
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    if image.dtype == np.uint8:
        return out
    return out.astype(image.dtype)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The no-alignment path: central square of the photo, resized to size x size."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_image(np.ascontiguousarray(image[top:top + side, left:left + side]), size, size)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """68 (x, y) landmarks -> the FFHQ crop square as 4 corners (top-left, bottom-left,
    bottom-right, top-right) in the photo's pixel coordinates."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * np.array([-1.0, 1.0])
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * np.array([-1.0, 1.0])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _rescale_quad(quad: np.ndarray, old_wh: Tuple[int, int], new_wh: Tuple[int, int]) -> np.ndarray:
    """Pixel-index coordinates after a resize (pixel centres sit at index + 0.5)."""
    ratio = np.array([new_wh[0] / old_wh[0], new_wh[1] / old_wh[1]])
    return (quad + 0.5) * ratio - 0.5


def _reflect_pad_blend(image: np.ndarray, pad: Tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom) and fade the padding into a blurred, then
    median-coloured version so the mirrored content does not read as a second face."""
    left, top, right, bottom = pad
    img = np.pad(image.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    xs = np.arange(w, dtype=np.float32)[None, :, None]
    mask = np.maximum(1.0 - np.minimum(xs / max(left, 1), (w - 1 - xs) / max(right, 1)),
                      1.0 - np.minimum(ys / max(top, 1), (h - 1 - ys) / max(bottom, 1)))
    sigma = qsize * 0.02
    blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    img += (blurred - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img


def warp_quad(image: np.ndarray, quad: np.ndarray, size: int, enable_padding: bool = True) -> np.ndarray:
    """Resample the square ``quad`` of an RGB uint8 photo to a size x size uint8 image."""
    img = image
    quad = np.asarray(quad, dtype=np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    # Shrink: an integer pre-shrink when the quad is over twice the output size.
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        h, w = img.shape[:2]
        new_wh = (max(int(np.rint(w / shrink)), 1), max(int(np.rint(h / shrink)), 1))
        img = resize_image(img, *new_wh)
        quad = _rescale_quad(quad, (w, h), new_wh)
        qsize /= shrink

    # Crop to the quad plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    h, w = img.shape[:2]
    x0 = max(int(np.floor(quad[:, 0].min())) - border, 0)
    y0 = max(int(np.floor(quad[:, 1].min())) - border, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + border, w)
    y1 = min(int(np.ceil(quad[:, 1].max())) + border, h)
    img = img[y0:y1, x0:x1]
    quad -= (x0, y0)

    # Pad where the quad leaves the photo.
    h, w = img.shape[:2]
    pad = (max(-int(np.floor(quad[:, 0].min())) + border, 0), max(-int(np.floor(quad[:, 1].min())) + border, 0),
           max(int(np.ceil(quad[:, 0].max())) - w + border, 0), max(int(np.ceil(quad[:, 1].max())) - h + border, 0))
    work = img.astype(np.float32)
    if enable_padding and max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
        work = _reflect_pad_blend(img, pad, qsize)
        quad += pad[:2]

    # Area-resample so the quad is about the output size, then an exact bicubic affine warp.
    scale = qsize / size
    if scale > 1.0:
        h, w = work.shape[:2]
        new_wh = (max(int(np.rint(w / scale)), 1), max(int(np.rint(h / scale)), 1))
        work = cv2.resize(work, new_wh, interpolation=cv2.INTER_AREA)
        quad = _rescale_quad(quad, (w, h), new_wh)
    top_left, bottom_left, top_right = quad[0], quad[1], quad[3]
    ex = (top_right - top_left) / size  # source step per output column
    ey = (bottom_left - top_left) / size  # source step per output row
    origin = top_left + 0.5 * (ex + ey)  # output pixel (0, 0) samples its own centre
    matrix = np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]]], dtype=np.float64)
    out = cv2.warpAffine(work, matrix, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- detection

@dataclass
class Face:
    rect: Tuple[int, int, int, int]  # left, top, right, bottom in photo pixels
    score: float  # dlib HOG detector confidence (its default threshold is 0)
    landmarks: Optional[np.ndarray] = None  # (68, 2) float64, photo pixels
    found_by: str = ""  # the retry that found it ("" for the first detection pass)

    @property
    def side(self) -> int:
        return max(self.rect[2] - self.rect[0], self.rect[3] - self.rect[1])

    def describe(self) -> str:
        retry = f", found {self.found_by}" if self.found_by else ""
        return f"{self.side} px at ({(self.rect[0] + self.rect[2]) // 2}, {(self.rect[1] + self.rect[3]) // 2}), " \
               f"score {self.score:.2f}{retry}"


FACE_CHOICES = ("largest", "best", "all")


def parse_face_choice(text) -> Union[str, int]:
    """'largest' | 'best' | 'all' | a face number N >= 0 (faces are numbered main face first)."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    value = str(text).strip().lower()
    if value in FACE_CHOICES:
        return value
    if value.isdigit():
        return int(value)
    raise ValueError(f"face choice must be one of {', '.join(FACE_CHOICES)} or a face number >= 0, got {text!r}")


def prominence(face: Face, width: int, height: int) -> float:
    """How much a face looks like the photo's subject: its size, discounted by up to half
    for lying far from the centre and raised by up to half for a confident detection.

    Size dominates on purpose: a face three times larger than another always wins, so a
    small sharp face in the background cannot beat the large main subject (the detector's
    score prefers small frontal faces); centrality and score decide between faces of
    similar size (the astronaut's head over the similarly sized patch on her suit)."""
    cx, cy = (face.rect[0] + face.rect[2]) / 2.0, (face.rect[1] + face.rect[3]) / 2.0
    off_centre = np.hypot(cx - width / 2.0, cy - height / 2.0) / max(np.hypot(width, height) / 2.0, 1.0)
    centrality = 1.0 - 0.5 * min(off_centre, 1.0)
    confidence = 1.0 + 0.5 * float(np.clip(face.score, 0.0, 1.0))
    return face.side * centrality * confidence


def rank_faces(faces: List[Face], width: int, height: int) -> List[Face]:
    """Main face first (see ``prominence``); ties broken by position so the order is fixed."""
    return sorted(faces, key=lambda f: (-prominence(f, width, height), f.rect[1], f.rect[0]))


def select_faces(ranked: List[Face], choice: Union[str, int], name: str = "<image>") -> List[Face]:
    """The faces a ``--face`` choice keeps from ``rank_faces`` output (never empty)."""
    if choice == "all":
        return list(ranked)
    if choice == "best":  # the detector's favourite, whatever its size
        return [min(ranked, key=lambda f: (-f.score, f.rect[1], f.rect[0]))]
    if choice == "largest":
        return [ranked[0]]
    if isinstance(choice, int) and 0 <= choice < len(ranked):
        return [ranked[choice]]
    raise AlignError(name, f"face {choice} asked for, but only {len(ranked)} face(s) found (numbered from 0)")


def equalize_contrast(image: np.ndarray) -> np.ndarray:
    """Local contrast equalisation of the luminance (CLAHE), colours kept: faded and
    low-contrast prints (old photos) score far below dlib's threshold without it."""
    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


_MODELS = {}  # per-process cache: loading the 100 MB landmark model takes about a second
MAX_UPSAMPLED_SIDE = 4096  # a retry never runs HOG on a larger image (about 2 s at 4096 px)


class FaceDetector:
    """dlib HOG detector + 68-point shape predictor, loaded lazily once per process.

    Detection runs on a copy whose long side is at most ``detect_max_side`` (faster on
    large photos); landmarks are predicted on the full-resolution photo. When no face
    reaches ``min_score`` and ``retry`` is on, detection is tried again with one more
    upsampling (faces below ~40 px), then also with the contrast equalised (faded
    prints), before the photo is reported as having no face.
    """

    def __init__(self, min_score: float = 0.0, upsample: int = 1, detect_max_side: int = 1024,
                 model_path: Optional[str] = None, retry: bool = True):
        self.min_score = min_score
        self.upsample = upsample
        self.detect_max_side = detect_max_side
        self.model_path = model_path
        self.retry = retry

    def _models(self):
        dlib = _import_dlib()
        path = self.model_path or find_landmark_model()
        if dlib is None or path is None:
            missing = "dlib" if dlib is None else f"the landmark model {LANDMARK_MODEL_NAME}"
            raise AlignUnavailableError(f"face alignment needs {missing}: {INSTALL_HINT}")
        if path not in _MODELS:
            _MODELS[path] = (dlib.get_frontal_face_detector(), dlib.shape_predictor(path), dlib)
        return _MODELS[path]

    def _detection_copy(self, image: np.ndarray) -> Tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        scale = min(1.0, self.detect_max_side / max(h, w))
        if scale == 1.0:
            return np.ascontiguousarray(image), scale
        return resize_image(image, max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)), scale

    def detect(self, image: np.ndarray, upsample: Optional[int] = None, equalize: bool = False) -> List[Face]:
        """All candidate faces of one detection pass (including ones below ``min_score``),
        best score first."""
        detector, _, _ = self._models()
        small, scale = self._detection_copy(image)
        if equalize:
            small = equalize_contrast(small)
        upsample = self.upsample if upsample is None else upsample
        rects, scores, _ = detector.run(small, upsample, -1.0)
        faces = [Face((int(round(r.left() / scale)), int(round(r.top() / scale)),
                       int(round(r.right() / scale)), int(round(r.bottom() / scale))), float(s))
                 for r, s in zip(rects, scores)]
        faces.sort(key=lambda f: (-f.score, f.rect[1], f.rect[0]))  # deterministic tie-break
        return faces

    def _passes(self, image: np.ndarray):
        """(upsample, equalise, label) of each detection attempt, cheapest first."""
        yield self.upsample, False, ""
        if not self.retry:
            return
        long_side = max(self._detection_copy(image)[0].shape[:2])
        more = self.upsample + 1
        if long_side * 2 ** more <= MAX_UPSAMPLED_SIDE:
            yield more, False, f"after upsampling {2 ** more}x"
            yield more, True, f"after upsampling {2 ** more}x and contrast equalisation"
        else:  # too large to upsample again: equalise at the first scale instead
            yield self.upsample, True, "after contrast equalisation"

    def find_faces(self, image: np.ndarray, name: str = "<image>") -> List[Face]:
        """Every face reaching ``min_score``, main face first (``rank_faces``), without
        landmarks; NoFaceError when no detection pass finds one."""
        best = None
        for upsample, equalize, label in self._passes(image):
            candidates = self.detect(image, upsample, equalize)
            faces = [f for f in candidates if f.score >= self.min_score]
            if faces:
                for face in faces:
                    face.found_by = label
                return rank_faces(faces, image.shape[1], image.shape[0])
            if candidates and (best is None or candidates[0].score > best):
                best = candidates[0].score
        detail = f" (best candidate score {best:.2f} < {self.min_score:.2f})" if best is not None else ""
        raise NoFaceError(name, f"no face found{detail}")

    def landmarks(self, image: np.ndarray, rect: Tuple[int, int, int, int]) -> np.ndarray:
        _, predictor, dlib = self._models()
        shape = predictor(np.ascontiguousarray(image), dlib.rectangle(*rect))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def choose(self, image: np.ndarray, choice: Union[str, int] = "largest", name: str = "<image>"
               ) -> Tuple[List[Face], List[Face]]:
        """(the faces ``choice`` keeps, with landmarks; every face found, main face first)."""
        ranked = self.find_faces(image, name)
        chosen = select_faces(ranked, choice, name)
        for face in chosen:
            face.landmarks = self.landmarks(image, face.rect)
        return chosen, ranked

    def main_face(self, image: np.ndarray, name: str = "<image>") -> Face:
        """The photo's subject: the largest, most central face (see ``prominence``)."""
        return self.choose(image, "largest", name)[0][0]

    def best_face(self, image: np.ndarray, name: str = "<image>") -> Face:
        """The highest-scoring face, with its landmarks."""
        return self.choose(image, "best", name)[0][0]


# ----------------------------------------------------------------------------- aligner

@dataclass
class AlignResult:
    image: np.ndarray  # size x size x 3 uint8
    method: str  # "ffhq", "center" or "center-no-face"
    face: Optional[Face] = None
    quad: Optional[np.ndarray] = None
    faces_found: int = 0  # faces that reached min_score in the photo
    rank: int = 0  # this face's number in the main-face-first order


class Aligner:
    """``mode``: 'dlib' (FFHQ alignment, error without dlib), 'auto' (FFHQ alignment when
    dlib is installed, else centre crop with a one-line notice), 'none' (centre crop, for
    images that are already aligned).

    ``face``: which face of a photo with several: 'largest' (the main face: largest and
    most central), 'best' (highest detector score), 'all' (``align_all`` returns one
    result per face; calling the aligner returns the main face) or a number N (faces
    numbered main face first).

    ``no_face``: 'error' raises NoFaceError when no face reaches ``min_score``; 'center'
    centre-crops such photos instead (method 'center-no-face')."""

    def __init__(self, size: int, mode: str = "auto", min_score: float = 0.0, upsample: int = 1,
                 detect_max_side: int = 1024, enable_padding: bool = True, notice=None,
                 no_face: str = "error", face: Union[str, int] = "largest", retry: bool = True):
        if mode not in ALIGN_MODES:
            raise ValueError(f"align mode must be one of {ALIGN_MODES}, got {mode!r}")
        if no_face not in ("error", "center"):
            raise ValueError(f"no_face must be 'error' or 'center', got {no_face!r}")
        self.face_choice = parse_face_choice(face)
        self.no_face = no_face
        self.size = size
        self.enable_padding = enable_padding
        self.detector = FaceDetector(min_score=min_score, upsample=upsample, detect_max_side=detect_max_side,
                                     retry=retry)
        self.mode = mode
        if mode == "auto" and not dlib_available():
            (notice or _print_notice)(f"notice: dlib not installed, faces are centre-cropped, not aligned ({INSTALL_HINT})")
            self.mode = "none"
        elif mode == "dlib" and not dlib_available():
            raise AlignUnavailableError(f"align mode 'dlib' needs dlib and its landmark model: {INSTALL_HINT}")

    @property
    def uses_dlib(self) -> bool:
        return self.mode != "none"

    def align_all(self, image: np.ndarray, name: str = "<image>") -> List[AlignResult]:
        """One result per chosen face (several only for face='all')."""
        if not self.uses_dlib:
            return [AlignResult(center_crop(image, self.size), "center")]
        try:
            faces, ranked = self.detector.choose(image, self.face_choice, name)
        except NoFaceError:
            if self.no_face == "error":
                raise
            return [AlignResult(center_crop(image, self.size), "center-no-face")]
        results = []
        for face in faces:
            quad = ffhq_quad(face.landmarks)
            rank = next(i for i, other in enumerate(ranked) if other is face)
            results.append(AlignResult(warp_quad(image, quad, self.size, self.enable_padding), "ffhq", face, quad,
                                       faces_found=len(ranked), rank=rank))
        return results

    def __call__(self, image: np.ndarray, name: str = "<image>") -> AlignResult:
        return self.align_all(image, name)[0]


_NOTICES_SHOWN = set()


def _print_notice(text: str) -> None:
    """Default notice: printed once per process (load_photo builds an Aligner per photo)."""
    if text not in _NOTICES_SHOWN:
        _NOTICES_SHOWN.add(text)
        print(text, file=sys.stderr)
