"""The renderer: identity x motion x scene -> frames with exact ground truth.

Per frame: RGB (anti-aliased), the person mask (coverage >= 0.5), the face box (x0, y0, x1, y1, or
NaN when the face is not visible), COCO-17 keypoints (x, y, visibility: 2 visible, 1 occluded, 0
outside the frame) and 68 face landmarks in dlib's iBUG-68 layout (jaw 0-16, brows 17-26, nose
27-35, eyes 36-47, mouth 48-67; NaN unless the puppet faces the camera). All coordinates are pixels.

Parts are painted back to front onto the background itself, so anti-aliased edges blend with what
is behind them, and the same strokes are painted into a coverage map; the mask is coverage >= 0.5
(anti-aliasing tails fainter than 8/255 can reach 2 px beyond it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .identity import Identity
from .motion import Motion, Pose
from .scene import Scene

AA = cv2.LINE_AA
SHIFT = 4  # sub-pixel precision of OpenCV drawing: coordinates x 16
ONE = 1 << SHIFT
# The face counts as visible (face box, nose and eyes) while cos(facing) is above this.
FACE_VISIBLE = 0.3


@dataclass
class Clip:
    frames: np.ndarray          # (T, S, S, 3) uint8 RGB
    masks: np.ndarray           # (T, S, S) bool
    face_boxes: np.ndarray      # (T, 4) float32, NaN rows when no face is visible
    keypoints: np.ndarray       # (T, 17, 3) float32: x, y, visibility
    face_landmarks: np.ndarray  # (T, 68, 2) float32, NaN when not facing the camera
    fps: float


def _p(xy) -> tuple[int, int]:
    return int(round(xy[0] * ONE)), int(round(xy[1] * ONE))


def _rot(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


@dataclass
class _Skeleton:
    joints: np.ndarray    # (17, 2)
    head: np.ndarray      # (2,) head centre
    head_r: float
    neck: np.ndarray
    pelvis: np.ndarray
    sx: float             # signed horizontal factor from facing (+ front, - back)
    front: float          # cos(facing)
    arm_z: tuple[float, float]  # > 0 in front of the torso, as the camera sees it


def skeleton(identity: Identity, pose: Pose, scene: Scene, size: int) -> _Skeleton:
    h = scene.person_height * identity.height * size
    front = math.cos(pose.facing)
    side = math.sin(pose.facing)
    sx = math.copysign(max(abs(front), 0.35), front if front != 0 else 1.0)
    leg = 0.47 * h
    pelvis = np.array([scene.center_x * size + pose.root_dx * h, scene.ground_y * size - leg - pose.root_dy * h])
    neck = pelvis + _rot(np.array([0.0, -0.3 * h]), pose.lean)
    head_r = identity.head * h
    head = neck + _rot(np.array([0.0, -(0.03 * h + head_r)]), pose.lean + pose.tilt)
    j = np.zeros((17, 2))
    for k, s in ((0, 1.0), (1, -1.0)):  # person's left is +x when facing the camera
        sh = neck + np.array([s * sx * identity.shoulder * h / 2, 0.02 * h])
        a = pose.shoulder[k]
        el = sh + np.array([s * sx * math.sin(a), math.cos(a)]) * 0.17 * h
        a2 = a + pose.elbow[k]
        wr = el + np.array([s * sx * math.sin(a2), math.cos(a2)]) * 0.16 * h
        hp = pelvis + np.array([s * sx * identity.hip * h / 2, 0.0])
        b = pose.hip[k]
        kn = hp + np.array([s * sx * math.sin(b), math.cos(b)]) * 0.24 * h
        b2 = b - pose.knee[k] * 0.5
        an = kn + np.array([s * sx * math.sin(b2) * 0.5, math.cos(pose.knee[k])]) * 0.23 * h
        j[5 + k], j[7 + k], j[9 + k], j[11 + k], j[13 + k], j[15 + k] = sh, el, wr, hp, kn, an
    eye_dx, eye_y = 0.38 * head_r * abs(front), -0.1 * head_r
    shift = 0.45 * head_r * side
    j[0] = head + np.array([shift, 0.25 * head_r])
    j[1] = head + np.array([shift + eye_dx * np.sign(front or 1), eye_y])
    j[2] = head + np.array([shift - eye_dx * np.sign(front or 1), eye_y])
    j[3] = head + np.array([0.85 * head_r * sx, 0.05 * head_r])
    j[4] = head + np.array([-0.85 * head_r * sx, 0.05 * head_r])
    sign = 1.0 if front >= 0 else -1.0
    return _Skeleton(j, head, head_r, neck, pelvis, sx, front,
                     (pose.arm_depth[0] * sign, pose.arm_depth[1] * sign))


def face_landmarks(sk: _Skeleton, pose: Pose) -> np.ndarray:
    """(68, 2) iBUG-68 layout on the head, modulated by the expression."""
    r, c = sk.head_r, sk.head
    side = 0.45 * r * math.sqrt(max(0.0, 1 - sk.front**2)) * (1 if sk.joints[0, 0] >= c[0] else -1)
    pts = []
    for i in range(17):  # jaw: ear to ear through the chin
        phi = math.pi - i * math.pi / 16
        pts.append((0.95 * r * math.cos(phi), 0.95 * r * math.sin(phi) + 0.0))
    brow_y = -0.35 * r - 0.12 * r * pose.brows
    for cx in (-0.38, 0.38):  # the person's right brow first (viewer's left)
        for i in range(5):
            u = (i - 2) / 2
            pts.append(((cx + 0.14 * u) * r, brow_y + 0.05 * r * u * u))
    for i in range(4):  # nose bridge
        pts.append((0.0, (-0.2 + 0.12 * i) * r))
    for i in range(5):  # nostrils
        pts.append(((i - 2) * 0.07 * r, 0.3 * r))
    eye_h = 0.09 * r * (1 - 0.9 * pose.blink)
    for cx in (-0.38, 0.38):
        for ang in (180, 240, 300, 0, 60, 120):  # dlib order: corner, upper, upper, corner, lower, lower
            t = math.radians(ang)
            pts.append(((cx + 0.14 * math.cos(t)) * r, -0.1 * r - eye_h * math.sin(t) * (1 if ang in (240, 300) else 1)))
    open_ = 0.16 * r * pose.mouth_open
    corner_y = 0.55 * r - 0.12 * r * pose.smile
    mw = 0.3 * r * (1 + 0.2 * max(0.0, pose.smile))
    outer = []
    for i in range(12):  # outer lip, from the person's right corner, upper lip first
        t = 2 * math.pi * i / 12
        x = -mw * math.cos(t)
        y = 0.55 * r + (-(0.07 * r) if i < 6 else (0.07 * r + open_)) * abs(math.sin(t))
        if i in (0, 6):
            y = corner_y
        outer.append((x, y))
    pts += outer
    for i in range(8):  # inner lip
        t = 2 * math.pi * i / 8
        x = -0.7 * mw * math.cos(t)
        y = 0.55 * r + (-(0.02 * r) if i < 4 else (0.02 * r + open_)) * abs(math.sin(t))
        if i in (0, 4):
            y = corner_y
        pts.append((x, y))
    out = np.array(pts) * np.array([abs(sk.front) ** 0.5, 1.0]) + c + np.array([side, 0.0])
    return out


class _Painter:
    def __init__(self, canvas: np.ndarray, cover: np.ndarray):
        self.canvas, self.cover = canvas, cover

    def line(self, a, b, colour, width: float) -> None:
        w = max(2, int(round(width)))
        cv2.line(self.canvas, _p(a), _p(b), colour, w, AA, SHIFT)
        cv2.line(self.cover, _p(a), _p(b), 255, w, AA, SHIFT)

    def circle(self, c, r: float, colour) -> None:
        cv2.circle(self.canvas, _p(c), int(round(max(r, 1.0) * ONE)), colour, -1, AA, SHIFT)
        cv2.circle(self.cover, _p(c), int(round(max(r, 1.0) * ONE)), 255, -1, AA, SHIFT)

    def poly(self, pts, colour, person: bool = True) -> None:
        p = np.array([_p(x) for x in pts], np.int32)
        cv2.fillPoly(self.canvas, [p], colour, AA, SHIFT)
        if person:
            cv2.fillPoly(self.cover, [p], 255, AA, SHIFT)


def _pattern_tile(identity: Identity, h: float, size: int) -> np.ndarray:
    """(2S, 2S, 3) clothing texture in torso coordinates (high frequency by design)."""
    n = 2 * size
    period = max(3.0, identity.pattern_period * h)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    if identity.pattern == "stripes":
        m = (np.sin(2 * np.pi * yy / period) > 0)
    elif identity.pattern == "checks":
        m = ((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 0
    elif identity.pattern == "dots":
        m = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 3.2) ** 2
    else:
        m = np.zeros((n, n), bool)
    tile = np.empty((n, n, 3), np.uint8)
    tile[:] = identity.top
    tile[m] = identity.top2
    return tile


def render_frame(identity: Identity, pose: Pose, scene: Scene, size: int, background: np.ndarray,
                 tile: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One frame: (rgb, mask, face_box, keypoints, landmarks)."""
    sk = skeleton(identity, pose, scene, size)
    h = scene.person_height * identity.height * size
    canvas = background.copy()
    cover = np.zeros((size, size), np.uint8)
    pt = _Painter(canvas, cover)
    j = sk.joints
    limb = identity.limb * h
    # Back to front: legs, arms behind, torso, head, arms in front.
    for k in (0, 1):
        pt.line(j[11 + k], j[13 + k], identity.bottom, limb * 1.15)
        pt.line(j[13 + k], j[15 + k], identity.bottom, limb)
        pt.circle(j[15 + k], limb * 0.55, (40, 40, 40))
    pt.poly([j[5] + (j[5] - j[6]) * 0.08, j[6] + (j[6] - j[5]) * 0.08, j[12], j[11]], identity.bottom)

    def arm(k: int) -> None:
        pt.line(j[5 + k], j[7 + k], identity.top, limb)
        pt.line(j[7 + k], j[9 + k], identity.skin, limb * 0.85)
        pt.circle(j[9 + k], limb * 0.55, identity.skin)

    behind = [k for k in (0, 1) if sk.arm_z[k] < 0]
    for k in behind:
        arm(k)
    # Torso with its pattern: fill the polygon in the cover map of a scratch layer, copy the tile in.
    torso = [j[5] + (j[5] - j[6]) * 0.08, j[6] + (j[6] - j[5]) * 0.08,
             j[12] + (j[12] - j[11]) * 0.1, j[11] + (j[11] - j[12]) * 0.1]
    scratch = np.zeros((size, size), np.uint8)
    cv2.fillPoly(scratch, [np.array([_p(x) for x in torso], np.int32)], 255, AA, SHIFT)
    ys, xs = np.nonzero(scratch)
    if len(xs):
        # The texture is anchored at the neck, so it moves with the body; the tile is 2S wide.
        ox, oy = int(round(size - sk.neck[0])), int(round(size - sk.neck[1]))
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        tex = tile[max(0, y0 + oy): y1 + oy, max(0, x0 + ox): x1 + ox]
        if tex.shape[:2] == (y1 - y0, x1 - x0):
            a = scratch[y0:y1, x0:x1, None].astype(np.float32) / 255.0
            region = canvas[y0:y1, x0:x1]
            canvas[y0:y1, x0:x1] = (region * (1 - a) + tex * a + 0.5).astype(np.uint8)
        np.maximum(cover, scratch, out=cover)
    pt.line(sk.neck, sk.head, identity.skin, limb * 0.9)  # neck
    geometry = face_landmarks(sk, pose)
    _draw_head(pt, identity, pose, sk, geometry)
    for k in (0, 1):
        if k not in behind:
            arm(k)
    mask = cover >= 128
    # Ground truth.
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = j
    kp[:, 2] = 2
    if sk.front <= FACE_VISIBLE:
        kp[0:3, 2] = 1  # nose and eyes hidden behind the head
    torso_mask = scratch >= 128
    for k in behind:
        for jj in (7 + k, 9 + k):
            x, y = int(j[jj, 0]), int(j[jj, 1])
            if 0 <= x < size and 0 <= y < size and torso_mask[y, x]:
                kp[jj, 2] = 1
    outside = (j[:, 0] < 0) | (j[:, 1] < 0) | (j[:, 0] >= size) | (j[:, 1] >= size)
    kp[outside, 2] = 0
    if sk.front > FACE_VISIBLE:
        # The head's box, widened to hold the landmarks (they shift sideways as the head turns).
        c, r = sk.head, sk.head_r
        box = np.array([min(c[0] - r, geometry[:, 0].min()), min(c[1] - r, geometry[:, 1].min()),
                        max(c[0] + r, geometry[:, 0].max()), max(c[1] + r, geometry[:, 1].max())], np.float32)
    else:
        box = np.full(4, np.nan, np.float32)
    lm = geometry.astype(np.float32) if sk.front > 0.5 else np.full((68, 2), np.nan, np.float32)
    return canvas, mask, box, kp, lm


def _draw_head(pt: _Painter, identity: Identity, pose: Pose, sk: _Skeleton, lm: np.ndarray) -> None:
    c, r = sk.head, sk.head_r
    hair = identity.hair
    if identity.hair_style == "long":
        pt.poly([c + (-1.15 * r, -0.2 * r), c + (1.15 * r, -0.2 * r), c + (1.2 * r, 1.6 * r), c + (-1.2 * r, 1.6 * r)], hair)
    pt.circle(c, r, identity.skin)
    if sk.front <= FACE_VISIBLE:  # back view: the hair covers the head
        pt.circle(c, r * 0.98, hair)
        if identity.hair_style == "bun":
            pt.circle(c + (0, -r), 0.45 * r, hair)
        return
    if identity.hair_style != "bald":  # a fringe over the top of the head
        cv2.ellipse(pt.canvas, _p(c), (int(r * ONE), int(0.75 * r * ONE)), 0, 180, 360, hair, -1, AA, SHIFT)
    if identity.hair_style == "bun":
        pt.circle(c + (0, -1.05 * r), 0.4 * r, hair)
    if sk.front > 0.5:
        for sl in (slice(36, 42), slice(42, 48)):
            pt.poly(lm[sl], (250, 250, 250), person=False)
            centre = lm[sl].mean(0)
            if pose.blink < 0.5:
                pt.circle(centre, max(1.0, 0.06 * r), identity.eye)
        for sl in (slice(17, 22), slice(22, 27)):
            for a, b in zip(lm[sl][:-1], lm[sl][1:]):
                cv2.line(pt.canvas, _p(a), _p(b), hair, max(1, int(0.05 * r)), AA, SHIFT)
        pt.poly(lm[48:60], identity.mouth, person=False)
        if pose.mouth_open > 0.15:
            pt.poly(lm[60:68], (40, 10, 20), person=False)
    if identity.accessory == "hat":
        pt.poly([c + (-1.2 * r, -0.7 * r), c + (1.2 * r, -0.7 * r), c + (0.7 * r, -1.5 * r), c + (-0.7 * r, -1.5 * r)], (30, 30, 30))
    elif identity.accessory == "glasses" and sk.front > 0.5:
        for sl in (slice(36, 42), slice(42, 48)):
            e = lm[sl].mean(0)
            cv2.circle(pt.canvas, _p(e), int(0.2 * r * ONE), (20, 20, 20), max(1, int(0.05 * r)), AA, SHIFT)


def _degrade(frame: np.ndarray, scene: Scene, velocity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if scene.motion_blur > 0:
        length = float(np.linalg.norm(velocity)) * scene.motion_blur
        if length >= 1.5:
            k = int(min(31, round(length))) | 1
            kernel = np.zeros((k, k), np.float32)
            d = velocity / (np.linalg.norm(velocity) + 1e-9)
            for t in np.linspace(-0.5, 0.5, 2 * k):
                x, y = int(round(k // 2 + d[0] * t * (k - 1))), int(round(k // 2 + d[1] * t * (k - 1)))
                kernel[y, x] = 1
            frame = cv2.filter2D(frame, -1, kernel / kernel.sum())
    if scene.noise > 0:
        frame = np.clip(frame + rng.normal(0, scene.noise, frame.shape), 0, 255).astype(np.uint8)
    return frame


def render_clip(identity: Identity | int, motion: Motion | int, scene: Scene | int, num_frames: int,
                size: int, fps: float = 15.0, start: float = 0.0) -> Clip:
    """Render `num_frames` frames at `size` x `size` (64-512) from time `start` seconds."""
    if not 64 <= size <= 512:
        raise ValueError(f"puppet world renders 64 to 512 pixels, got {size}")
    identity = Identity.from_id(identity) if isinstance(identity, int) else identity
    motion = Motion.from_id(motion) if isinstance(motion, int) else motion
    scene = Scene.from_id(scene) if isinstance(scene, int) else scene
    background = scene.render_background(size)
    tile = _pattern_tile(identity, scene.person_height * identity.height * size, size)
    rng = np.random.default_rng([identity.id, motion.id, scene.id, size])
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    masks = np.empty((num_frames, size, size), bool)
    boxes = np.empty((num_frames, 4), np.float32)
    kps = np.empty((num_frames, 17, 3), np.float32)
    lms = np.empty((num_frames, 68, 2), np.float32)
    prev = None
    for i in range(num_frames):
        pose = motion.pose(start + i / fps)
        rgb, mask, box, kp, lm = render_frame(identity, pose, scene, size, background, tile)
        if scene.motion_blur > 0 or scene.noise > 0:
            vel = np.zeros(2) if prev is None else kp[:, :2].mean(0) - prev
            rgb = _degrade(rgb, scene, vel, rng)
        prev = kp[:, :2].mean(0)
        frames[i], masks[i], boxes[i], kps[i], lms[i] = rgb, mask, box, kp, lm
    return Clip(frames, masks, boxes, kps, lms, fps)
