"""Faces and their 478 landmarks, and the person mask, from mediapipe's shipped models.

Detection runs in two stages so that small faces in large photos work: the
full-range face detector (``mediapipe.solutions.face_detection``, model 1, with
the short-range model as a fallback) finds face boxes, then the face mesh
(``mediapipe.solutions.face_mesh``, ``refine_landmarks=True``: 468 mesh points +
10 iris points) runs on a square crop around each box. If the detector finds
nothing, the mesh runs once on the whole image.

Landmark points are ``(478, 3)`` float32: pixel ``u`` (right), ``v`` (down),
pixel centres at integer + 0.5, and a relative depth in pixels, larger = closer
to the camera (mediapipe's ``z`` negated and scaled by the crop width; origin
near the centre of the head).

An optional backend, ``face-alignment`` (68 landmarks), is used only when that
package is installed AND its weights are already in the local torch-hub cache;
its 68 points are placed at their mediapipe indices (``IBUG68_TO_MEDIAPIPE``),
the other landmarks are NaN.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

NUM_LANDMARKS = 478
MIN_FACE_SIZE_PX = 80  # landmark bounding-box height below which a face is "too small"
_CROP_SCALE = 2.0  # crop side / detector box size
_CROP_SIZE = 512  # crops are resized to this for the mesh (a face ends up ~250 px)

# iBUG 68-point (300-W) landmark -> mediapipe face-mesh index. Jaw 0-16 follow the
# face oval at the same heights, brows 17-26 the upper brow line, nose 27-35,
# eyes 36-47 (corners and the points above/below the pupils at 1/3 and 2/3),
# mouth 48-67 (outer then inner lip). Subject's right = image left first, as in iBUG.
# The 51-point variant is points 17-67. The table is left/right symmetric (tested).
IBUG68_TO_MEDIAPIPE = np.array([
    234, 93, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 323, 454,  # jaw 0-16
    70, 63, 105, 66, 107,  # right brow 17-21
    336, 296, 334, 293, 300,  # left brow 22-26
    168, 197, 5, 1,  # nose bridge 27-30
    98, 97, 2, 326, 327,  # nose base 31-35
    33, 160, 158, 133, 153, 144,  # right eye 36-41
    362, 385, 387, 263, 373, 380,  # left eye 42-47
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,  # outer lip 48-59
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lip 60-67
], dtype=np.int64)
# iBUG index of each point's left/right mirror (used to check the table above).
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65], dtype=np.int64)


@dataclass
class FaceLandmarks:
    """One detected face.

    points : (478, 3) float32 pixel (u, v) and relative depth in pixels (larger = closer); NaN rows where a
        backend gives no point.
    bbox : (4,) float32 (u0, v0, u1, v1) pixel box of the mesh landmarks.
    score : detector confidence in [0, 1].
    backend : "mediapipe" or "face-alignment".
    """

    points: np.ndarray
    bbox: np.ndarray
    score: float
    backend: str = "mediapipe"

    @property
    def size_px(self) -> float:
        """Height of the landmark box in pixels (the quantity compared with ``MIN_FACE_SIZE_PX``)."""
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area_px(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence mediapipe's C++ log lines (TFLite/absl write straight to fd 2) so that a failing run
    prints only its one-line error; set PNRELIGHT_MEDIAPIPE_LOGS=1 to see them."""
    if os.environ.get("PNRELIGHT_MEDIAPIPE_LOGS"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _detect_boxes(rgb8: np.ndarray, min_confidence: float) -> list[tuple[np.ndarray, float]]:
    """Face boxes (u0, v0, u1, v1) in pixels and scores, full-range model first."""
    from mediapipe.python.solutions import face_detection

    h, w = rgb8.shape[:2]
    for model_selection in (1, 0):
        with _quiet_native_stderr(), face_detection.FaceDetection(min_detection_confidence=min_confidence,
                                                                  model_selection=model_selection) as det:
            res = det.process(rgb8)
        boxes = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h], dtype=np.float32)
            boxes.append((box, float(d.score[0]) if d.score else 0.0))
        if boxes:
            return boxes
    return []


def _mesh_on(rgb8: np.ndarray, max_faces: int) -> list[np.ndarray]:
    """(478, 3) landmark arrays of the face mesh on a whole image, in that image's pixels."""
    from mediapipe.python.solutions import face_mesh

    h, w = rgb8.shape[:2]
    with _quiet_native_stderr(), face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                                    refine_landmarks=True, min_detection_confidence=0.5) as mesh:
        res = mesh.process(rgb8)
    out = []
    for lm in res.multi_face_landmarks or []:
        a = np.array([(p.x, p.y, p.z) for p in lm.landmark], dtype=np.float64)
        pts = np.stack([a[:, 0] * w, a[:, 1] * h, -a[:, 2] * w], axis=1).astype(np.float32)
        out.append(pts)
    return out


def _mesh_in_box(rgb8: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Face mesh on a square crop around ``box`` (padded with edge pixels), mapped back to image pixels."""
    import cv2

    h, w = rgb8.shape[:2]
    cu, cv = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    side = _CROP_SCALE * max(box[2] - box[0], box[3] - box[1])
    u0, v0 = cu - side / 2, cv - side / 2
    scale = _CROP_SIZE / side
    # Affine map image -> crop in continuous coordinates (centres at +0.5), written for
    # OpenCV's integer-centred indices; pixels outside the image are replicated edges.
    shift = 0.5 * scale - 0.5
    M = np.array([[scale, 0.0, shift - u0 * scale], [0.0, scale, shift - v0 * scale]])
    crop = cv2.warpAffine(rgb8, M, (_CROP_SIZE, _CROP_SIZE), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    found = _mesh_on(crop, 1)
    if not found:
        return None
    pts = found[0].astype(np.float64)
    pts[:, 0] = pts[:, 0] / scale + u0
    pts[:, 1] = pts[:, 1] / scale + v0
    pts[:, 2] = pts[:, 2] / scale
    return pts.astype(np.float32)


def _box_of(points: np.ndarray) -> np.ndarray:
    p = points[:468]
    p = p[np.isfinite(p[:, 0])]
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()], dtype=np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect_faces(image: np.ndarray, *, max_faces: int = 5, min_confidence: float = 0.5,
                 min_size_px: float = MIN_FACE_SIZE_PX, backend: str = "mediapipe") -> list[FaceLandmarks]:
    """Detect faces and their 478 landmarks.

    Parameters
    ----------
    image : (H, W, 3) float in [0, 1] or uint8, sRGB.
    max_faces : at most this many faces (the largest detections).
    min_size_px : faces whose landmark box is less tall are dropped; if every face found is
        too small, an InputError names the limit.
    backend : "mediapipe" (default), "face-alignment" (only if installed with local weights,
        see :func:`face_alignment_available`) or "auto" (face-alignment when available).

    Returns
    -------
    faces : list of FaceLandmarks, largest first (may be empty: no face found).
    """
    if backend == "auto":
        backend = "face-alignment" if face_alignment_available() else "mediapipe"
    rgb8 = _to_uint8_rgb(image)
    if backend == "face-alignment":
        faces = _detect_face_alignment(rgb8)
    elif backend == "mediapipe":
        faces = []
        boxes = sorted(_detect_boxes(rgb8, min_confidence), key=lambda bs: -(bs[0][2] - bs[0][0]) * (bs[0][3] - bs[0][1]))
        for box, score in boxes[:max_faces]:
            pts = _mesh_in_box(rgb8, box)
            if pts is None:
                continue
            lb = _box_of(pts)
            if any(_iou(lb, f.bbox) > 0.5 for f in faces):
                continue
            faces.append(FaceLandmarks(points=pts, bbox=lb, score=score))
        if not faces and not boxes:
            faces = [FaceLandmarks(points=p, bbox=_box_of(p), score=0.0) for p in _mesh_on(rgb8, max_faces)]
        if not faces and boxes:  # the detector saw faces the mesh could not resolve: they were too small
            sizes = [float(b[3] - b[1]) for b, _ in boxes]
            if max(sizes) < 2 * min_size_px:
                raise InputError(f"face too small: about {max(sizes):.0f} px tall, at least {min_size_px:.0f} px needed "
                                 "(use a larger or closer photo)")
    else:
        raise ValueError(f"unknown landmark backend {backend!r}")
    faces.sort(key=lambda f: -f.area_px)
    big = [f for f in faces if f.size_px >= min_size_px]
    if faces and not big:
        raise InputError(f"face too small: {faces[0].size_px:.0f} px tall, at least {min_size_px:.0f} px needed "
                         "(use a larger or closer photo)")
    return big


def select_face(faces: list[FaceLandmarks], face_index: int | None = None, *, source: str = "photo") -> FaceLandmarks:
    """The face to build the avatar from: ``face_index`` (0 = largest) or the largest, warning when several."""
    if not faces:
        raise InputError(f"no face found in {source} (use a photo with a clearly visible, roughly frontal face)")
    if face_index is None:
        if len(faces) > 1:
            warnings.warn(f"{len(faces)} faces found in {source}; using the largest (choose another with --face-index N, "
                          f"0..{len(faces) - 1}, largest first)", stacklevel=2)
        return faces[0]
    if not 0 <= face_index < len(faces):
        raise InputError(f"--face-index {face_index} is out of range: {len(faces)} face(s) found in {source} "
                         f"(use 0..{len(faces) - 1})")
    return faces[face_index]


def person_mask(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: mediapipe selfie segmentation (general model) of the person."""
    from mediapipe.python.solutions import selfie_segmentation

    rgb8 = _to_uint8_rgb(image)
    with _quiet_native_stderr(), selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        res = seg.process(rgb8)
    mask = res.segmentation_mask
    if mask is None:
        return np.zeros(rgb8.shape[:2], np.float32)
    return np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)


# ----------------------------------------------------------------------------- optional face-alignment backend
def _torch_hub_checkpoints() -> Path:
    hub = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(hub) / "hub" / "checkpoints"


def face_alignment_available() -> bool:
    """True only if the ``face_alignment`` package is installed and its 2D-FAN and S3FD weights are cached locally.

    Checks files only (never imports the package unless both exist), so nothing is downloaded.
    """
    import importlib.util

    if importlib.util.find_spec("face_alignment") is None:
        return False
    ckpt = _torch_hub_checkpoints()
    if not ckpt.is_dir():
        return False
    names = [p.name.lower() for p in ckpt.iterdir()]
    return any(n.startswith("2dfan4") for n in names) and any(n.startswith("s3fd") for n in names)


def _detect_face_alignment(rgb8: np.ndarray) -> list[FaceLandmarks]:
    if not face_alignment_available():
        raise InputError("the face-alignment backend needs the face_alignment package and its weights in "
                         f"{_torch_hub_checkpoints()} (use the default mediapipe backend)")
    import face_alignment  # noqa: PLC0415 - optional, local weights only

    fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device="cpu", flip_input=False)
    preds = fa.get_landmarks_from_image(rgb8) or []
    faces = []
    for p68 in preds:
        pts = np.full((NUM_LANDMARKS, 3), np.nan, dtype=np.float32)
        # face-alignment uses pixel corners at integers; ours are centres at +0.5
        pts[IBUG68_TO_MEDIAPIPE, 0] = p68[:, 0] + 0.5
        pts[IBUG68_TO_MEDIAPIPE, 1] = p68[:, 1] + 0.5
        pts[IBUG68_TO_MEDIAPIPE, 2] = 0.0
        faces.append(FaceLandmarks(points=pts, bbox=_box_of(pts), score=1.0, backend="face-alignment"))
    return faces
