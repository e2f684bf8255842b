"""Images of the synthetic mouse in its arena, seen through every (distorted) camera of a rig.

The mouse is a small set of analytic primitives placed on the skeleton every frame: ellipsoids
(torso, head, ears, eyes, nose, haunches, paws) and capsules (legs, tail), about 100 mm from snout
to tail base. Each pixel is ray cast against them in the camera frame. The rays are the
undistorted normalised coordinates of the pixel centres (computed once per camera by `undistort`,
the cache `jaxpose.synth.render` keeps for board images), so lens distortion is exact and no
image is ever warped. The nearest hit wins, so the mouse occludes itself correctly, and a
keypoint is visible only when the body surface over it is what the camera sees.

What a frame goes through, in order:

    arena      a static scene, built once per camera at 2-3x resolution and box-filtered: a light
               grey arena floor (mottled, with a faint 50 mm grid) inside a low white wall, on a
               wooden table (top at world z = 0) in a dim room, all ray traced, so every camera
               sees the same floor. Stored as albedo and normals, so only the lighting is redone
               per frame.
    lighting   Lambert + ambient under one distant light whose direction turns slowly (and whose
               intensity breathes by a few per cent) with the frame index.
    shadow     a soft cast shadow of every primitive on the floor along the light, plus a soft
               contact shadow straight down.
    mouse      ray cast only inside the projected bounding box of each primitive, at
               `supersample` x the resolution, box-filtered into the frame (anti-aliased edges).
               Agouti fur with a paler belly and mild mottling; pink ears, nose, paws and a
               ringed tail; black shiny eyes, so keypoints have something to be recognised by.
    sensor     mild vignetting, Gaussian noise, rounding to uint8 RGB.

Speed on the 2-core CPU (shared, best of 3): a 320x256 frame with its ground truth takes 8-10 ms
(100-130 frames/s per camera), 640x512 18-25 ms, 1280x1024 55-125 ms; building a camera's
arena costs 0.25 s at 320x256 (3.4 s at 1280x1024) once.

    >>> from jaxpose.synth import make_study
    >>> from jaxpose.synth.animal import render_study_videos, write_labelled_frames
    >>> study = make_study(num_cameras=4, num_frames=200, seed=0)
    >>> out = render_study_videos(study, "session", scale=0.25)    # 320x256 videos + truth
    >>> write_labelled_frames(study, "labels", frames=range(0, 200, 10), scale=0.25)

Images are RGB (convert to BGR for `cv2.imwrite` / `cv2.VideoWriter`, as the writers here do).
Pixel coordinates follow `jaxpose.geometry`: the centre of the top-left pixel is (0, 0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy.spatial.transform import Rotation
from tqdm.auto import tqdm

from jaxpose.geometry.camera import Camera, stack_cameras
from jaxpose.io.atomic import atomic_path, atomic_write_text
from jaxpose.io.calibration import Calibration, save_calibration
from jaxpose.io.dlc import Keypoints2D, write_dlc
from jaxpose.io.pose3d import write_pose3d_csv
from jaxpose.synth.render import _image_shape, _ray_grid, scale_camera
from jaxpose.synth.rig import _camera_to_pixels, in_view
from jaxpose.synth.skeleton import MOUSE_KEYPOINTS, Skeleton, mouse_skeleton
from jaxpose.synth.study import SyntheticStudy

_MAX_CACHED_VIEWS = 16
_INF = np.float32(np.inf)


# --- style ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AnimalStyle:
    """How the scene looks. Colours are RGB in [0, 255] under unit light.

    Attributes:
        seed: seed of everything random in the look: floor and wood texture, per-part tints,
            the lighting's phase, sensor noise (with the frame index and the camera).
        fur_rgb, belly_rgb, ear_rgb, nose_rgb, paw_rgb, tail_rgb, eye_rgb: the mouse.
        floor_rgb, wall_rgb, wood_rgb: the arena floor, its wall and the table around it.
        room_rgb: the dim room around the table (its floor; the void beyond is darker).
        arena_radius_mm: radius of the arena floor (the animation's `arena_radius_mm`); the wall
            stands `wall_gap_mm` outside it.
        wall_height_mm: height of the arena wall (0 for none).
        wall_gap_mm: gap between the arena radius and the wall, so the body never touches it.
        table_half_mm: the table is a square of this half-width centred on the arena.
        table_height_mm: height of the table top above the room's floor.
        ambient: light reaching every surface.
        diffuse: light from the moving lamp at normal incidence.
        light_zenith_deg: (low, high) angle of the light from vertical, swept over time.
        light_period_frames: frames for the light to turn once round the vertical.
        light_flicker: relative amplitude of the slow intensity change.
        shadow: darkness of the cast shadow (0 for none).
        supersample: the mouse is ray cast at this many samples per pixel side (1-4).
        noise_std: Gaussian sensor noise, grey levels.
        vignetting: darkening at the image corner farthest from the principal point, [0, 1).
        occlusion_tolerance_mm: a keypoint is still visible when the first surface on its ray
            lies at most this much (plus the keypoint's depth under its own skin) in front of it.
    """

    seed: int = 0
    fur_rgb: tuple[float, float, float] = (122.0, 98.0, 76.0)
    belly_rgb: tuple[float, float, float] = (200.0, 184.0, 160.0)
    ear_rgb: tuple[float, float, float] = (214.0, 146.0, 140.0)
    nose_rgb: tuple[float, float, float] = (236.0, 136.0, 150.0)
    paw_rgb: tuple[float, float, float] = (240.0, 186.0, 176.0)
    tail_rgb: tuple[float, float, float] = (178.0, 140.0, 132.0)
    eye_rgb: tuple[float, float, float] = (14.0, 10.0, 12.0)
    floor_rgb: tuple[float, float, float] = (196.0, 200.0, 204.0)
    wall_rgb: tuple[float, float, float] = (232.0, 234.0, 238.0)
    wood_rgb: tuple[float, float, float] = (150.0, 108.0, 70.0)
    room_rgb: tuple[float, float, float] = (52.0, 52.0, 56.0)
    arena_radius_mm: float = 200.0
    wall_height_mm: float = 40.0
    wall_gap_mm: float = 8.0
    table_half_mm: float = 650.0
    table_height_mm: float = 750.0
    ambient: float = 0.42
    diffuse: float = 0.72
    light_zenith_deg: tuple[float, float] = (25.0, 50.0)
    light_period_frames: float = 900.0
    light_flicker: float = 0.06
    shadow: float = 0.5
    supersample: int = 2
    noise_std: float = 2.0
    vignetting: float = 0.15
    occlusion_tolerance_mm: float = 3.0

    def __post_init__(self):
        if isinstance(self.supersample, bool) or self.supersample not in (1, 2, 3, 4):
            raise ValueError(f"supersample must be 1, 2, 3 or 4, got {self.supersample!r}")
        nonnegative = ("noise_std", "wall_height_mm", "wall_gap_mm", "table_height_mm")
        for name in nonnegative + ("ambient", "diffuse"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"AnimalStyle.{name} must be >= 0, got {getattr(self, name)}")
        if not self.arena_radius_mm > 0:
            raise ValueError(f"arena_radius_mm must be positive, got {self.arena_radius_mm}")
        if not self.table_half_mm > self.wall_radius_mm:
            raise ValueError(
                f"table_half_mm ({self.table_half_mm}) must exceed the wall's radius "
                f"({self.wall_radius_mm} mm): the arena stands on the table"
            )
        if not 0 <= self.vignetting < 1:
            raise ValueError(f"vignetting must be in [0, 1), got {self.vignetting}")
        if not 0 <= self.shadow <= 1:
            raise ValueError(f"shadow must be in [0, 1], got {self.shadow}")
        lo, hi = self.light_zenith_deg
        if not 0 <= lo <= hi < 85:
            raise ValueError(
                f"light_zenith_deg must be (low, high) with 0 <= low <= high < 85, "
                f"got {self.light_zenith_deg}"
            )
        if not self.light_period_frames > 0:
            raise ValueError(
                f"light_period_frames must be positive, got {self.light_period_frames}"
            )

    @property
    def wall_radius_mm(self) -> float:
        return self.arena_radius_mm + self.wall_gap_mm


def light_at(frame_index: int, style: AnimalStyle) -> tuple[np.ndarray, float]:
    """The light at a frame: unit direction towards it (3,) in the world frame, and its gain.

    The azimuth turns once every `light_period_frames`; the zenith angle sweeps
    `light_zenith_deg` at an incommensurate rate, so the lighting never quite repeats.
    """
    rng = np.random.default_rng(np.random.SeedSequence(style.seed, spawn_key=(3,)))
    phase_az, phase_zen, phase_gain = rng.uniform(0.0, 2 * np.pi, 3)
    s = 2 * np.pi * float(frame_index) / style.light_period_frames
    lo, hi = np.deg2rad(style.light_zenith_deg)
    zenith = lo + (hi - lo) * 0.5 * (1.0 + np.sin(0.61 * s + phase_zen))
    azimuth = phase_az + s
    direction = np.array(
        [np.cos(azimuth) * np.sin(zenith), np.sin(azimuth) * np.sin(zenith), np.cos(zenith)]
    )
    gain = 1.0 + style.light_flicker * np.sin(2.3 * s + phase_gain)
    return direction, float(gain)


# --- the body: primitives placed on the skeleton ----------------------------------------------

# Local frames the primitives ride on: origin keypoint, forward (from, to), side (from, to), the
# side ones averaged. Each group of keypoints that moves rigidly has its own frame.
# fmt: off
_FRAMES = {
    "head":  ("head",    ("neck",),      ("snout",),   ("ear_r",),              ("ear_l",)),
    "front": ("spine_1", ("spine_1",),   ("neck",),    ("shoulder_r",),         ("shoulder_l",)),
    "mid":   ("spine_2", ("spine_3",),   ("spine_1",), ("shoulder_r", "hip_r"), ("shoulder_l", "hip_l")),
    "hind":  ("spine_3", ("tail_base",), ("spine_3",), ("hip_r",),              ("hip_l",)),
}

# Ellipsoids in the rest pose of `mouse_skeleton` (x forward, y left, z up, mm): frame, anchor
# keypoint (the centre keeps its offset from it in that frame), centre, first axis direction,
# radii along (first axis, side, third), material.
_ELLIPSOIDS = (
    ("torso_front", "front", "spine_1",   (11.0, 0.0, 23.5),   (1.0, 0.0, -0.05), (22.0, 13.0, 11.5), "fur"),
    ("torso_mid",   "mid",   "spine_2",   (-9.0, 0.0, 23.5),   (1.0, 0.0, 0.0),   (23.0, 14.5, 12.0), "fur"),
    ("torso_hind",  "hind",  "spine_3",   (-29.0, 0.0, 22.5),  (1.0, 0.0, 0.08),  (21.0, 15.0, 11.5), "fur"),
    ("neck",        "front", "neck",      (24.0, 0.0, 25.0),   (1.0, 0.0, 0.3),   (11.0, 10.0, 9.5),  "fur"),
    ("head",        "head",  "head",      (38.5, 0.0, 27.5),   (30.0, 0.0, -8.0), (16.0, 9.5, 9.0),   "head"),
    ("nose",        "head",  "snout",     (52.0, 0.0, 22.0),   (1.0, 0.0, 0.0),   (2.4, 2.4, 2.4),    "nose"),
    ("eye_l",       "head",  "head",      (43.6, 7.8, 28.6),   (1.0, 0.0, 0.0),   (2.0, 2.0, 2.0),    "eye"),
    ("eye_r",       "head",  "head",      (43.6, -7.8, 28.6),  (1.0, 0.0, 0.0),   (2.0, 2.0, 2.0),    "eye"),
    ("ear_l",       "head",  "ear_l",     (30.0, 9.5, 36.5),   (0.8, 0.5, 0.2),   (1.3, 6.0, 6.8),    "ear"),
    ("ear_r",       "head",  "ear_r",     (30.0, -9.5, 36.5),  (0.8, -0.5, 0.2),  (1.3, 6.0, 6.8),    "ear"),
    ("haunch_l",    "hind",  "hip_l",     (-29.0, 12.0, 18.0), (1.0, 0.0, -0.4),  (10.0, 5.5, 8.0),   "haunch"),
    ("haunch_r",    "hind",  "hip_r",     (-29.0, -12.0, 18.0), (1.0, 0.0, -0.4), (10.0, 5.5, 8.0),   "haunch"),
    ("forepaw_l",   "front", "forepaw_l", (21.5, 12.0, 2.8),   (1.0, 0.0, 0.0),   (4.0, 2.6, 1.9),    "paw"),
    ("forepaw_r",   "front", "forepaw_r", (21.5, -12.0, 2.8),  (1.0, 0.0, 0.0),   (4.0, 2.6, 1.9),    "paw"),
    ("hindpaw_l",   "hind",  "hindpaw_l", (-27.5, 15.0, 2.6),  (1.0, 0.0, 0.0),   (6.5, 2.8, 2.0),    "paw"),
    ("hindpaw_r",   "hind",  "hindpaw_r", (-27.5, -15.0, 2.6), (1.0, 0.0, 0.0),   (6.5, 2.8, 2.0),    "paw"),
)

# Capsules: from keypoint a to keypoint b, the stretch (alpha0, alpha1) of that bone, radius (mm).
_CAPSULES = (
    ("foreleg_l", "shoulder_l", "forepaw_l", 0.0, 0.85, 2.6, "limb"),
    ("foreleg_r", "shoulder_r", "forepaw_r", 0.0, 0.85, 2.6, "limb"),
    ("hindleg_l", "hip_l",      "hindpaw_l", 0.0, 0.85, 3.0, "limb"),
    ("hindleg_r", "hip_r",      "hindpaw_r", 0.0, 0.85, 3.0, "limb"),
    ("tail_1",    "tail_base",  "tail_mid",  0.0, 0.5,  3.3, "tail"),
    ("tail_2",    "tail_base",  "tail_mid",  0.5, 1.0,  2.7, "tail"),
    ("tail_3",    "tail_mid",   "tail_tip",  0.0, 0.5,  2.2, "tail"),
    ("tail_4",    "tail_mid",   "tail_tip",  0.5, 1.0,  1.6, "tail"),
)
# fmt: on

# Materials: (colour attribute of AnimalStyle, colour factor, paler belly, mottling, specular
# strength, specular exponent, rings along the axis, smooth: blended into one surface with the
# other smooth parts).
_MATERIALS = {
    "fur": ("fur_rgb", 1.0, True, 0.07, 0.0, 1.0, False, True),
    "head": ("fur_rgb", 0.9, True, 0.05, 0.0, 1.0, False, True),
    "haunch": ("fur_rgb", 0.94, True, 0.06, 0.0, 1.0, False, True),
    "limb": ("fur_rgb", 0.86, False, 0.05, 0.0, 1.0, False, False),
    "ear": ("ear_rgb", 1.0, False, 0.04, 0.0, 1.0, False, False),
    "nose": ("nose_rgb", 1.0, False, 0.0, 0.35, 20.0, False, False),
    "eye": ("eye_rgb", 1.0, False, 0.0, 1.0, 60.0, False, False),
    "paw": ("paw_rgb", 1.0, False, 0.03, 0.05, 8.0, False, False),
    "tail": ("tail_rgb", 1.0, False, 0.03, 0.08, 8.0, True, False),
}


def _frame_matrices(points: np.ndarray, spec: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Origin (*, 3) and rotation (*, 3, 3) (columns forward, left, up) of a local frame."""
    origin, fwd_from, fwd_to, side_from, side_to = spec
    mean = lambda idx: points[..., list(idx), :].mean(-2)  # noqa: E731
    forward = mean(fwd_to) - mean(fwd_from)
    side = mean(side_to) - mean(side_from)
    e1 = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    e2 = side - np.sum(side * e1, -1, keepdims=True) * e1
    e2 = e2 / np.linalg.norm(e2, axis=-1, keepdims=True)
    e3 = np.cross(e1, e2)
    return points[..., origin, :], np.stack([e1, e2, e3], -1)


@dataclasses.dataclass(frozen=True)
class PlacedBody:
    """The body's primitives at one pose, in one coordinate frame (world or a camera's).

    Attributes:
        centres: (ell, 3) ellipsoid centres.
        axes: (ell, 3, 3) ellipsoid axes as columns (unit, right-handed).
        radii: (ell, 3) semi-axis lengths along those columns, mm.
        cap_a, cap_b: (cap, 3) capsule end points.
        cap_r: (cap,) capsule radii, mm.
    """

    centres: np.ndarray
    axes: np.ndarray
    radii: np.ndarray
    cap_a: np.ndarray
    cap_b: np.ndarray
    cap_r: np.ndarray

    def transformed(self, rotation: np.ndarray, translation: np.ndarray) -> PlacedBody:
        """The same body in the frame X' = rotation X + translation."""
        return PlacedBody(
            centres=self.centres @ rotation.T + translation,
            axes=np.einsum("ij,ejk->eik", rotation, self.axes),
            radii=self.radii,
            cap_a=self.cap_a @ rotation.T + translation,
            cap_b=self.cap_b @ rotation.T + translation,
            cap_r=self.cap_r,
        )

    def ellipsoid_maps(self) -> np.ndarray:
        """(ell, 3, 3) A with |A (X - centre)| = 1 on each ellipsoid's surface."""
        return np.swapaxes(self.axes, -1, -2) / self.radii[..., None]

    def bounding_spheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (prim, 3) and radii (prim,) of spheres bounding every primitive, ellipsoids
        first."""
        mid = 0.5 * (self.cap_a + self.cap_b)
        half = 0.5 * np.linalg.norm(self.cap_b - self.cap_a, axis=-1)
        return (
            np.concatenate([self.centres, mid]),
            np.concatenate([self.radii.max(-1), half + self.cap_r]),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class MouseBody:
    """Shaded primitives along the mouse skeleton, sized for its rest pose.

    Build it with `mouse_body()`. The primitive tables are written for `mouse_skeleton()`'s
    rest pose; a skeleton with the same keypoint names but another size gets every primitive
    scaled by the ratio of snout-to-tail-base lengths.

    Attributes:
        skeleton: the skeleton the body rides on.
        names: primitive names, ellipsoids then capsules.
        materials: (prim,) material name of each primitive.
        inner_depth_mm: (kpt,) how deep each keypoint lies under the body surface in the rest
            pose (0 outside the body): the slack the visibility test allows it.
    """

    skeleton: Skeleton
    names: tuple[str, ...]
    materials: tuple[str, ...]
    inner_depth_mm: np.ndarray
    _frames: tuple
    _ell_frame: np.ndarray
    _ell_anchor: np.ndarray
    _ell_offset: np.ndarray
    _ell_axes: np.ndarray
    _ell_radii: np.ndarray
    _cap_a: np.ndarray
    _cap_b: np.ndarray
    _cap_r: np.ndarray

    @property
    def num_ellipsoids(self) -> int:
        return len(self._ell_anchor)

    def place(self, pose_3d: np.ndarray) -> PlacedBody:
        """The primitives at a pose (kpt, 3), in the pose's (world) frame."""
        pose = np.asarray(pose_3d, np.float64)
        k = self.skeleton.num_keypoints
        if pose.shape != (k, 3):
            raise ValueError(f"pose_3d must have shape (kpt, 3) = ({k}, 3), got {pose.shape}")
        if not np.all(np.isfinite(pose)):
            raise ValueError("pose_3d holds NaN or inf; the mouse needs every keypoint")
        origins, rotations = zip(*(_frame_matrices(pose, f) for f in self._frames), strict=True)
        rot = np.stack(rotations)[self._ell_frame]  # (ell, 3, 3)
        centres = pose[self._ell_anchor] + np.einsum("eij,ej->ei", rot, self._ell_offset)
        axes = rot @ self._ell_axes
        return PlacedBody(
            centres=centres,
            axes=axes,
            radii=self._ell_radii,
            cap_a=self._cap_a @ pose,
            cap_b=self._cap_b @ pose,
            cap_r=self._cap_r,
        )


def _orthonormal(first: np.ndarray) -> np.ndarray:
    """Axes (3, 3) as columns: `first` normalised, then the rest-pose left (+y) made
    orthogonal to it, then their cross product."""
    e1 = np.asarray(first, np.float64) / np.linalg.norm(first)
    left = np.array([0.0, 1.0, 0.0])
    if abs(e1 @ left) > 0.9:  # a sideways first axis: use up as the reference instead
        left = np.array([0.0, 0.0, 1.0])
    e2 = left - (left @ e1) * e1
    e2 /= np.linalg.norm(e2)
    return np.stack([e1, e2, np.cross(e1, e2)], -1)


@functools.cache
def _default_body() -> MouseBody:
    return _build_body(mouse_skeleton())


def mouse_body(skeleton: Skeleton | None = None) -> MouseBody:
    """The mouse's primitives for a skeleton with `MOUSE_KEYPOINTS` (default `mouse_skeleton()`).

    Bodies are cached: `mouse_skeleton()` (or any skeleton equal to it) always gets the same
    body, and so does the same skeleton object.

    Raises:
        ValueError: the skeleton lacks one of the mouse keypoints.
    """
    if skeleton is None:
        return _default_body()
    default = mouse_skeleton()
    if (
        skeleton.names == default.names
        and skeleton.edges == default.edges
        and np.array_equal(skeleton.rest_pose, default.rest_pose)
    ):
        return _default_body()
    return _cached_body(skeleton)


@functools.lru_cache(maxsize=8)
def _cached_body(skeleton: Skeleton) -> MouseBody:
    return _build_body(skeleton)


def _build_body(skeleton: Skeleton) -> MouseBody:
    missing = [n for n in MOUSE_KEYPOINTS if n not in skeleton.names]
    if missing:
        raise ValueError(f"the mouse body needs the mouse keypoints; the skeleton lacks {missing}")
    idx = skeleton.index
    rest = skeleton.rest_pose
    # The tables give rest positions of mouse_skeleton(); re-express them about this skeleton's
    # keypoints, scaled by the ratio of snout-to-tail-base lengths.
    reference = dict(zip(MOUSE_KEYPOINTS, mouse_skeleton().rest_pose, strict=True))
    length = lambda p: float(np.linalg.norm(p["snout"] - p["tail_base"]))  # noqa: E731
    scale = length({n: rest[idx(n)] for n in ("snout", "tail_base")}) / length(reference)
    frame_names = list(_FRAMES)
    frames = tuple(
        (idx(o), tuple(map(idx, a)), tuple(map(idx, b)), tuple(map(idx, c)), tuple(map(idx, d)))
        for o, a, b, c, d in _FRAMES.values()
    )
    rest_frames = [_frame_matrices(rest, f) for f in frames]
    ell_frame, ell_anchor, ell_offset, ell_axes, ell_radii = [], [], [], [], []
    for _, frame, anchor, centre, first, radii, _ in _ELLIPSOIDS:
        f = frame_names.index(frame)
        _, rot = rest_frames[f]
        offset = scale * (np.asarray(centre) - reference[anchor])
        ell_frame.append(f)
        ell_anchor.append(idx(anchor))
        ell_offset.append(rot.T @ offset)  # rest offset in the frame's coordinates
        ell_axes.append(rot.T @ _orthonormal(first))
        ell_radii.append(scale * np.asarray(radii, np.float64))
    k = skeleton.num_keypoints
    cap_a, cap_b = np.zeros((len(_CAPSULES), k)), np.zeros((len(_CAPSULES), k))
    for i, (_, a, b, alpha0, alpha1, _, _) in enumerate(_CAPSULES):
        cap_a[i, idx(a)], cap_a[i, idx(b)] = 1.0 - alpha0, alpha0
        cap_b[i, idx(a)], cap_b[i, idx(b)] = 1.0 - alpha1, alpha1
    body = MouseBody(
        skeleton=skeleton,
        names=tuple(e[0] for e in _ELLIPSOIDS) + tuple(c[0] for c in _CAPSULES),
        materials=tuple(e[-1] for e in _ELLIPSOIDS) + tuple(c[-1] for c in _CAPSULES),
        inner_depth_mm=np.zeros(k),
        _frames=frames,
        _ell_frame=np.asarray(ell_frame),
        _ell_anchor=np.asarray(ell_anchor),
        _ell_offset=np.asarray(ell_offset),
        _ell_axes=np.asarray(ell_axes),
        _ell_radii=np.asarray(ell_radii),
        _cap_a=cap_a,
        _cap_b=cap_b,
        _cap_r=scale * np.array([c[5] for c in _CAPSULES]),
    )
    depth = _inner_depths(body.place(rest), rest)
    depth.setflags(write=False)
    object.__setattr__(body, "inner_depth_mm", depth)
    return body


def _inside(placed: PlacedBody, points: np.ndarray) -> np.ndarray:
    """(*pts,) bool: the points lie inside some primitive."""
    a = placed.ellipsoid_maps()
    s = np.einsum("eij,...ej->...ei", a, points[..., None, :] - placed.centres)
    inside = np.any(np.sum(s * s, -1) < 1.0, -1)
    ba = placed.cap_b - placed.cap_a
    w = points[..., None, :] - placed.cap_a
    h = np.clip(np.sum(w * ba, -1) / np.sum(ba * ba, -1), 0.0, 1.0)
    dist = np.linalg.norm(w - h[..., None] * ba, axis=-1)
    return inside | np.any(dist < placed.cap_r, -1)


def _inner_depths(placed: PlacedBody, points: np.ndarray) -> np.ndarray:
    """(kpt,) distance from each point to the outside of the body, marched along 162 directions
    in 0.25 mm steps (0 for points outside)."""
    # Directions: vertices of a twice-subdivided icosahedron-like Fibonacci sphere.
    n = 162
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)
    steps = np.arange(0.0, 40.0, 0.25)
    out = np.zeros(len(points))
    for k, p in enumerate(points):
        samples = p + steps[:, None, None] * dirs  # (step, dir, 3)
        inside = _inside(placed, samples)
        # First step outside along each direction (40 mm if it never leaves the body).
        first_out = np.where(inside.all(0), len(steps) - 1, np.argmax(~inside, axis=0))
        out[k] = steps[first_out].min()
    return out


# --- ray casting ------------------------------------------------------------------------------
# Rays leave the origin along d = (dx, dy, dz); t is the ray parameter, so with dz = 1 (pixel
# rays in the camera frame) t is the depth along the optical axis.


def _ellipsoid_hits(a_map, m, dx, dy, dz):
    """Ray parameters of the hits with one ellipsoid (inf where missed), and its unit-sphere
    direction images q = A d (3 arrays).

    a_map: (3, 3) A of `PlacedBody.ellipsoid_maps`; m: (3,) A c for the centre c.
    """
    q = [a_map[i, 0] * dx + a_map[i, 1] * dy + a_map[i, 2] * dz for i in range(3)]
    a = q[0] * q[0] + q[1] * q[1] + q[2] * q[2]
    b = q[0] * m[0] + q[1] * m[1] + q[2] * m[2]
    c = float(m @ m) - 1.0
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (b - root) / a
    return np.where(disc > 0, t, np.inf), q


def _capsule_hits(pa, pb, r, dx, dy, dz):
    """Nearest hits with one capsule (segment pa-pb, radius r).

    Returns the ray parameter (inf where missed), the hit's position along the axis in [0, 1],
    whether it is on the cylindrical side, and the centre (3 arrays) of the end sphere a ray
    off the side hits.
    """
    ba = pb - pa
    baba = float(ba @ ba)
    bard = ba[0] * dx + ba[1] * dy + ba[2] * dz
    baoa = -float(ba @ pa)
    rdoa = -(pa[0] * dx + pa[1] * dy + pa[2] * dz)
    oaoa = float(pa @ pa)
    dd = dx * dx + dy * dy + dz * dz
    # Points X = t d at distance r from the axis: a t^2 + 2 b t + c = 0 (times |ba|^2).
    a = baba * dd - bard * bard
    b = baba * rdoa - baoa * bard
    c = baba * oaoa - baoa * baoa - r * r * baba
    h = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(h, 0.0))) / a
        along = (baoa + t_side * bard) / baba
    side = (h > 0) & (along > 0) & (along < 1)
    # Otherwise the first hit, if any, is on the cap sphere at the end the side hit overshot.
    use_b = ~(along <= 0)
    cx = np.where(use_b, pb[0], pa[0])
    cy = np.where(use_b, pb[1], pa[1])
    cz = np.where(use_b, pb[2], pa[2])
    bb = dx * cx + dy * cy + dz * cz
    cc = cx * cx + cy * cy + cz * cz - r * r
    h2 = bb * bb - dd * cc
    t_cap = (bb - np.sqrt(np.maximum(h2, 0.0))) / dd
    t = np.where(side, t_side, np.where((h > 0) & (h2 > 0), t_cap, np.inf))
    along = np.where(side, along, np.where(use_b, 1.0, 0.0))
    return t, along, side, (cx, cy, cz)


def _first_hits(placed: PlacedBody, dirs: np.ndarray) -> np.ndarray:
    """(n,) ray parameter of the first hit of rays from the origin along `dirs` (n, 3) with any
    primitive (inf where none); hits behind the origin do not count."""
    dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    best = np.full(len(dirs), np.inf)
    a_maps = placed.ellipsoid_maps()
    for a_map, centre in zip(a_maps, placed.centres, strict=True):
        t, _ = _ellipsoid_hits(a_map, a_map @ centre, dx, dy, dz)
        best = np.minimum(best, np.where(t > 0, t, np.inf))
    for pa, pb, r in zip(placed.cap_a, placed.cap_b, placed.cap_r, strict=True):
        t, *_ = _capsule_hits(pa, pb, r, dx, dy, dz)
        best = np.minimum(best, np.where(t > 0, t, np.inf))
    return best


def _scene_hits(centre_w, dx, dy, dz, style: AnimalStyle):
    """The static scene along world rays from `centre_w` with directions (dx, dy, dz).

    Returns:
        t: ray parameter of the first hit (inf where none).
        kind: 0 nothing (the dark room), 1 table top (the arena floor inside the wall),
            2 wall inside face, 3 wall outside face, 4 the room's floor below the table.
        x, y, z: the world hit point (NaN where nothing is hit).
    """
    cx, cy, cz = (float(v) for v in centre_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = np.where(dz < 0, -cz / dz, np.inf)
        t_room = np.where(dz < 0, (-style.table_height_mm - cz) / dz, np.inf)
        reach = np.maximum(np.abs(cx + t_table * dx), np.abs(cy + t_table * dy))
    on_table = np.isfinite(t_table) & (reach < style.table_half_mm)
    t = np.where(on_table, t_table, t_room)
    kind = np.where(on_table, 1, np.where(np.isfinite(t_room), 4, 0)).astype(np.int8)
    height = style.wall_height_mm
    if height > 0:
        radius = style.wall_radius_mm
        a = dx * dx + dy * dy
        b = cx * dx + cy * dy
        c = cx * cx + cy * cy - radius * radius
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            for sign, code in ((-1.0, 3), (1.0, 2)):  # entering (outside face), leaving (inside)
                tw = (-b + sign * root) / a
                zw = cz + tw * dz
                ok = (disc > 0) & (tw > 0) & (zw >= 0) & (zw <= height) & (tw < t)
                t = np.where(ok, tw, t)
                kind = np.where(ok, np.int8(code), kind)
    with np.errstate(invalid="ignore"):
        return t, kind, cx + t * dx, cy + t * dy, cz + t * dz


# --- the static arena ---------------------------------------------------------------------------


class _Noise:
    """Smooth value noise in [-1, 1] on the plane: a random lattice, smoothstep interpolated."""

    def __init__(self, seed: int, octave: int):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(5, octave)))
        self.table = rng.uniform(-1.0, 1.0, (256, 256)).astype(np.float32)

    def __call__(self, x: np.ndarray, y: np.ndarray, cell_x: float, cell_y: float) -> np.ndarray:
        u, v = x / cell_x, y / cell_y
        iu, iv = np.floor(u), np.floor(v)
        fu, fv = (u - iu).astype(np.float32), (v - iv).astype(np.float32)
        fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
        i0, j0 = iu.astype(np.int64) & 255, iv.astype(np.int64) & 255
        i1, j1 = (i0 + 1) & 255, (j0 + 1) & 255
        t = self.table
        top = t[j0, i0] + fu * (t[j0, i1] - t[j0, i0])
        bottom = t[j1, i0] + fu * (t[j1, i1] - t[j1, i0])
        return top + fv * (bottom - top)


def _grid_lines(coord: np.ndarray, spacing: float, width: float) -> np.ndarray:
    """Soft lines of `width` mm every `spacing` mm along one coordinate: 1 on a line, 0 off."""
    dist = np.abs((coord / spacing + 0.5) % 1.0 - 0.5) * spacing
    return np.exp(-((dist / width) ** 2)).astype(np.float32)


def _scene_albedo(kind, x, y, z, style: AnimalStyle) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (n, 3) and world normal (n, 3) of scene hits (floats, 0 where nothing is hit)."""
    noise = [_Noise(style.seed, i) for i in range(4)]
    n = len(kind)
    albedo = np.zeros((n, 3), np.float32)
    normal = np.zeros((n, 3), np.float32)
    floor = kind == 1
    if floor.any():
        fx, fy = x[floor], y[floor]
        inside = np.hypot(fx, fy) < style.wall_radius_mm
        # Arena floor: mottled light grey with a faint 50 mm grid.
        mottle = (
            0.5 * noise[0](fx, fy, 30.0, 30.0)
            + 0.3 * noise[1](fx, fy, 9.0, 9.0)
            + 0.2 * noise[2](fx, fy, 3.0, 3.0)
        )
        lines = np.maximum(_grid_lines(fx, 50.0, 0.7), _grid_lines(fy, 50.0, 0.7))
        arena = (1.0 + 0.07 * mottle) * (1.0 - 0.16 * lines)
        arena = arena[:, None] * np.asarray(style.floor_rgb, np.float32)
        # Table: 70 mm planks along x, each its own shade, with grain, seams and end joints.
        plank_w = 70.0
        k = np.floor(fy / plank_w).astype(np.int64)
        shade = noise[3].table[k & 255, 7]
        joint_at = 400.0 * (0.5 + 0.5 * noise[3].table[k & 255, 11])
        grain = noise[0](fx + 997.0 * k, fy, 60.0, 1.6) + 0.5 * noise[1](fx, fy, 15.0, 0.8)
        seam = np.maximum(_grid_lines(fy, plank_w, 0.9), _grid_lines(fx + joint_at, 600.0, 0.9))
        wood = (1.0 + 0.12 * shade) * (1.0 + 0.10 * grain) * (1.0 - 0.55 * seam)
        wood = wood[:, None] * np.asarray(style.wood_rgb, np.float32)
        albedo[floor] = np.where(inside[:, None], arena, wood)
        normal[floor] = (0.0, 0.0, 1.0)
    room = kind == 4
    if room.any():
        rx, ry = x[room], y[room]
        tone = 1.0 + 0.15 * noise[1](rx, ry, 300.0, 300.0) + 0.05 * noise[2](rx, ry, 40.0, 40.0)
        albedo[room] = tone[:, None] * np.asarray(style.room_rgb, np.float32)
        normal[room] = (0.0, 0.0, 1.0)
    void = kind == 0
    albedo[void] = 0.6 * np.asarray(style.room_rgb, np.float32)
    normal[void] = (0.0, 0.0, 1.0)
    wall = (kind == 2) | (kind == 3)
    if wall.any():
        wx, wy, wz = x[wall], y[wall], z[wall]
        rim = wz > style.wall_height_mm - 2.5  # a darker top edge outlines the arena
        tone = (1.0 - 0.35 * rim) * (1.0 + 0.03 * noise[2](wx + wy, wz, 8.0, 8.0))
        tone *= np.where(kind[wall] == 3, 0.93, 1.0)
        albedo[wall] = tone[:, None] * np.asarray(style.wall_rgb, np.float32)
        outward = np.stack([wx, wy, np.zeros_like(wx)], -1) / style.wall_radius_mm
        normal[wall] = np.where((kind[wall] == 3)[:, None], outward, -outward)
    return albedo, normal


def _subpixel_rays(grid, rows: slice, cols: slice, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted normalised coordinates of the ss x ss sample centres of every pixel in
    grid[rows, cols], bilinear in the per-pixel rays (float32 (ss*h', ss*w') each).

    The rays are exact at pixel centres; between them the undistortion is smooth on the scale
    of a pixel, so the interpolation error is far below a pixel.
    """
    h, w = grid.x.shape
    offs = (np.arange(ss) + 0.5) / ss - 0.5

    def coords(start, stop, size):
        c = (np.arange(start, stop)[:, None] + offs).ravel()
        i0 = np.clip(np.floor(c).astype(np.int64), 0, max(size - 2, 0))
        f = (c - i0).astype(np.float32)  # outside [0, 1] at the border: linear extrapolation
        return i0, np.minimum(i0 + 1, size - 1), f

    r0, r1, fr = coords(rows.start, rows.stop, h)
    c0, c1, fc = coords(cols.start, cols.stop, w)
    out = []
    for g in (grid.x, grid.y):
        top = g[r0][:, c0] + fc * (g[r0][:, c1] - g[r0][:, c0])
        bottom = g[r1][:, c0] + fc * (g[r1][:, c1] - g[r1][:, c0])
        out.append(top + fr[:, None] * (bottom - top))
    return out[0], out[1]


@dataclasses.dataclass(frozen=True, eq=False)
class ArenaView:
    """The static scene seen by one camera, computed once and lit anew each frame.

    Attributes:
        camera: the camera (NumPy float64).
        style: the style it was built for.
        floor_albedo: (h, w, 3) float32 floor albedo times the floor's pixel coverage.
        wall_albedo: (h, w, 3) float32 wall albedo times the wall's pixel coverage.
        wall_normal: (h, w, 3) float32 mean world normal of the wall within each pixel.
        floor_xy: (h, w, 2) float32 world (x, y) of the floor at each pixel centre, NaN where
            the pixel centre does not see the floor.
        vignette: (h, w, 1) float32 gain of the lens falloff.
        valid: (h, w) bool: the pixel's ray is defined (the lens model has an inverse there).
    """

    camera: Camera
    style: AnimalStyle
    floor_albedo: np.ndarray
    wall_albedo: np.ndarray
    wall_normal: np.ndarray
    floor_xy: np.ndarray
    vignette: np.ndarray
    valid: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape


def _camera_pose(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera rotation (3, 3) and the camera centre in the world (3,)."""
    rot = Rotation.from_rotvec(cam.rotation).as_matrix()
    return rot, -rot.T @ cam.translation


def _camera_key(cam: Camera) -> tuple:
    return (cam.model,) + tuple(
        np.asarray(getattr(cam, f), np.float64).tobytes()
        for f in ("rotation", "translation", "focal", "principal_point", "skew", "distortion")
        + ("image_size",)
    )


_VIEWS: OrderedDict[tuple, ArenaView] = OrderedDict()


def arena_view(camera: Camera, *, style: AnimalStyle | None = None) -> ArenaView:
    """The arena as one camera sees it (cached: later calls with the same camera are free).

    The scene is ray traced at 3 x 3 samples per pixel (2 x 2 above 0.4 megapixels) and box
    filtered, so the floor texture does not alias. Costs about 0.2 s at 320x256, plus the
    one-off undistortion of the pixel grid.
    """
    style = style or AnimalStyle()
    cam = scale_camera(camera, 1.0)
    key = (_camera_key(cam), style)
    view = _VIEWS.get(key)
    if view is not None:
        _VIEWS.move_to_end(key)
        return view
    h, w = _image_shape(cam)
    grid = _ray_grid(cam)
    rot, centre = _camera_pose(cam)
    ss = 3 if h * w <= 400_000 else 2
    floor_albedo = np.zeros((h, w, 3), np.float32)
    wall_albedo = np.zeros((h, w, 3), np.float32)
    wall_normal = np.zeros((h, w, 3), np.float32)
    valid = np.ones(h * w, bool)
    valid[grid.invalid] = False
    valid = valid.reshape(h, w)
    rows_per_chunk = max(1, 65536 // (w * ss * ss))
    for r0 in range(0, h, rows_per_chunk):
        rows = slice(r0, min(h, r0 + rows_per_chunk))
        x, y = _subpixel_rays(grid, rows, slice(0, w), ss)
        d = np.stack([x.ravel(), y.ravel(), np.ones(x.size, np.float32)], -1) @ rot.astype(
            np.float32
        )  # world directions, rows of R^T d
        _, kind, hx, hy, hz = _scene_hits(centre, d[:, 0], d[:, 1], d[:, 2], style)
        albedo, normal = _scene_albedo(kind, hx, hy, hz, style)
        n_rows = rows.stop - rows.start
        # Everything but the wall is lit as a floor (the dark void beyond too: it is just dim).
        is_wall = ((kind == 2) | (kind == 3))[:, None]
        is_floor = ~is_wall

        def box(a, n_rows=n_rows):
            # Mean over each pixel's ss x ss samples.
            a = a.reshape(n_rows, ss, w, ss, -1)
            return a.mean(axis=(1, 3))

        floor_albedo[rows] = box(albedo * is_floor)
        wall_albedo[rows] = box(albedo * is_wall)
        wall_normal[rows] = box(normal * is_wall)
    # The floor under each pixel centre, for cast shadows.
    d = np.stack([grid.x.ravel(), grid.y.ravel(), np.ones(h * w, np.float32)], -1) @ rot
    _, kind, hx, hy, _ = _scene_hits(centre, d[:, 0], d[:, 1], d[:, 2], style)
    floor_xy = np.stack([hx, hy], -1).astype(np.float32)
    floor_xy[(kind != 1) | ~valid.ravel()] = np.nan
    floor_albedo[~valid] = 0.0
    wall_albedo[~valid] = 0.0
    cx, cy = (float(c) for c in cam.principal_point)
    u = np.arange(w, dtype=np.float32) - np.float32(cx)
    v = np.arange(h, dtype=np.float32) - np.float32(cy)
    far = max(cx + 0.5, w - 0.5 - cx) ** 2 + max(cy + 0.5, h - 0.5 - cy) ** 2
    rho2 = (u[None, :] ** 2 + v[:, None] ** 2) / np.float32(far)
    vignette = (1.0 - np.float32(style.vignetting) * rho2)[..., None]
    arrays = (floor_albedo, wall_albedo, wall_normal, floor_xy.reshape(h, w, 2), vignette, valid)
    for a in arrays:
        a.setflags(write=False)
    view = ArenaView(cam, style, *arrays)
    _VIEWS[key] = view
    while len(_VIEWS) > _MAX_CACHED_VIEWS:
        _VIEWS.popitem(last=False)
    return view


# --- rendering ------------------------------------------------------------------------------


def _pixel_boxes(cam: Camera, centres: np.ndarray, radii: np.ndarray, shape) -> np.ndarray:
    """(n, 4) pixel boxes [row0, row1, col0, col1) (clipped, possibly empty) that contain the
    image of each camera-frame sphere (centre (n, 3), radius (n,)).

    The sphere's x/z and y/z lie within bounds taken at its nearest and farthest depth; the
    lens maps that rectangle of the normalised plane one-to-one, so the pixel box of its
    (densely sampled) outline contains the image of the sphere.
    """
    h, w = shape
    z_near = centres[:, 2] - radii
    out = np.zeros((len(centres), 4), np.int64)
    ok = z_near > 1.0
    out[~ok] = (0, h, 0, w)  # too close to bound: the whole image
    if not ok.any():
        return out
    c, r = centres[ok], radii[ok]
    depths = np.stack([c[:, 2] - r, c[:, 2] + r], -1)
    lo = [np.min((c[:, i, None] - r[:, None]) / depths, -1) for i in (0, 1)]
    hi = [np.max((c[:, i, None] + r[:, None]) / depths, -1) for i in (0, 1)]
    s = np.linspace(0.0, 1.0, 7)
    # Outline of each rectangle: (n, 4 edges * 7, 2).
    xs = np.concatenate(
        [lo[0][:, None] + s * (hi[0] - lo[0])[:, None]] * 2
        + [lo[0][:, None] * np.ones(7), hi[0][:, None] * np.ones(7)],
        -1,
    )
    ys = np.concatenate(
        [lo[1][:, None] * np.ones(7), hi[1][:, None] * np.ones(7)]
        + [lo[1][:, None] + s * (hi[1] - lo[1])[:, None]] * 2,
        -1,
    )
    pts = np.stack([xs, ys, np.ones_like(xs)], -1).reshape(1, -1, 3)
    uv = _camera_to_pixels(stack_cameras([cam]), pts)[0].reshape(len(c), -1, 2)
    col0 = np.floor(uv[..., 0].min(-1) - 1.0)
    col1 = np.ceil(uv[..., 0].max(-1) + 2.0)
    row0 = np.floor(uv[..., 1].min(-1) - 1.0)
    row1 = np.ceil(uv[..., 1].max(-1) + 2.0)
    box = np.stack([row0, row1, col0, col1], -1)
    box = np.clip(box, 0, [h, h, w, w]).astype(np.int64)
    out[ok] = box
    return out


@dataclasses.dataclass(frozen=True)
class _Look:
    """Per-primitive shading inputs (prim = ellipsoids then capsules)."""

    colour: np.ndarray  # (prim, 3) float32 base colour
    belly: np.ndarray  # (prim,) bool: paler underneath
    mottle: np.ndarray  # (prim,) float32 amplitude of the fur mottling
    spec: np.ndarray  # (prim,) float32 specular strength
    power: np.ndarray  # (prim,) float32 specular exponent
    rings: np.ndarray  # (prim,) bool: rings along the axis (tail scales)
    smooth: np.ndarray  # (prim,) bool: blended with the other smooth parts
    waves: np.ndarray  # (prim, 3, 3) float32 wave vectors of the mottling, rad/mm
    phases: np.ndarray  # (prim, 4) float32


@functools.lru_cache(maxsize=32)
def _look(body: MouseBody, style: AnimalStyle) -> _Look:
    """The shading inputs of each primitive, with a seeded tint per material (one per
    material, not per part, so the body does not look patched together)."""
    rng = np.random.default_rng(np.random.SeedSequence(style.seed, spawn_key=(4,)))
    tint = 1.0 + 0.025 * rng.standard_normal((len(_MATERIALS), 3))
    tint = dict(zip(_MATERIALS, tint, strict=True))
    n = len(body.names)
    directions = rng.standard_normal((n, 3, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    waves = directions * rng.uniform(0.5, 1.4, (n, 3, 1))
    phases = rng.uniform(0.0, 2 * np.pi, (n, 4))
    rows = [_MATERIALS[m] for m in body.materials]
    colour = [
        np.asarray(getattr(style, r[0])) * r[1] * tint[m]
        for r, m in zip(rows, body.materials, strict=True)
    ]
    col = lambda i, dtype: np.array([r[i] for r in rows], dtype)  # noqa: E731
    smooth = col(7, bool) & (np.arange(n) < body.num_ellipsoids)  # blending is for ellipsoids
    return _Look(
        np.asarray(colour, np.float32),
        col(2, bool),
        col(3, np.float32),
        col(4, np.float32),
        col(5, np.float32),
        col(6, bool),
        smooth,
        waves.astype(np.float32),
        phases.astype(np.float32),
    )


def _mottling(look: _Look, p: int, local: np.ndarray) -> np.ndarray:
    """(n,) gain of the fur's mottling at part-local points (n, 3) mm."""
    k, ph = look.waves[p], look.phases[p]
    waves = np.sin(local @ k.T + ph[:3])  # (n, 3)
    return 1.0 + look.mottle[p] * (
        0.5 * waves[:, 0] + 0.3 * waves[:, 1] * waves[:, 2] + 0.2 * waves[:, 2]
    )


def _belly_mix(colour: np.ndarray, belly_rgb: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Paler underneath: mix towards the belly colour below the part's equator (up = the
    unit-sphere height, -1 bottom to 1 top)."""
    w = np.clip((up + 0.35) / 0.6, 0.0, 1.0)
    w = w * w * (3 - 2 * w)
    return belly_rgb + w[:, None] * (colour - belly_rgb)


# Smooth parts blend their normals and colours over about this distance (mm), so the body reads
# as one surface rather than a string of beads.
_BLEND_MM = 3.0


def _blend_smooth(placed_c: PlacedBody, look: _Look, pts: np.ndarray, belly_rgb: np.ndarray):
    """Blended unit normal (n, 3) and albedo (n, 3) at surface points (n, 3) of smooth parts.

    Each smooth ellipsoid i contributes its own normal, colour and mottling with weight
    exp(-(d_i / blend)^2), d_i the (approximate) distance of the point outside it, so where two
    parts meet both count equally and the crease between them is shaded away.
    """
    idx = np.flatnonzero(look.smooth)
    a_maps = placed_c.ellipsoid_maps()[idx].astype(np.float32)
    centres = placed_c.centres[idx].astype(np.float32)
    radii = placed_c.radii[idx].astype(np.float32)
    normal = np.zeros_like(pts)
    albedo = np.zeros_like(pts)
    total = np.zeros(len(pts), np.float32)
    for j, p in enumerate(idx):
        s = (pts - centres[j]) @ a_maps[j].T  # unit-sphere coordinates
        r = np.linalg.norm(s, axis=-1)
        dist = np.maximum(r - 1.0, 0.0) * radii[j].min()
        w = np.exp(-((dist / _BLEND_MM) ** 2))
        if not np.any(w > 1e-3):
            continue
        n = s @ a_maps[j]
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        colour = np.broadcast_to(look.colour[p], pts.shape)
        if look.belly[p]:
            colour = _belly_mix(colour, belly_rgb, s[:, 2] / np.maximum(r, 1e-6))
        colour = colour * _mottling(look, p, s * radii[j])[:, None]
        normal += w[:, None] * n
        albedo += w[:, None] * colour
        total += w
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return normal, albedo / total[:, None]


def _cast_body(
    placed_c: PlacedBody,
    look: _Look,
    x: np.ndarray,
    y: np.ndarray,
    depth: np.ndarray,
    boxes: np.ndarray,
    belly_rgb: np.ndarray,
):
    """Z-buffer the primitives over a block of rays (x, y, 1) in the camera frame.

    `depth` starts as the scene's depth (so the arena wall can hide the mouse) and is updated in
    place. `boxes` (prim, 4) are each primitive's sample rows/cols in the block.

    Returns the hit mask and, per sample, albedo (3), unit normal (3) and specular strength and
    exponent (each (hs, ws[, 3]) float32).
    """
    hs, ws = x.shape
    part = np.full((hs, ws), -1, np.int16)
    albedo = np.zeros((hs, ws, 3), np.float32)
    normal = np.zeros((hs, ws, 3), np.float32)
    a_maps = placed_c.ellipsoid_maps().astype(np.float32)
    n_ell = len(a_maps)
    for p, (r0, r1, c0, c1) in enumerate(boxes):
        if r1 <= r0 or c1 <= c0:
            continue
        bx, by = x[r0:r1, c0:c1], y[r0:r1, c0:c1]
        bdepth = depth[r0:r1, c0:c1]
        if p < n_ell:
            a_map = a_maps[p]
            m = a_map @ placed_c.centres[p].astype(np.float32)
            t, q = _ellipsoid_hits(a_map, m, bx, by, 1.0)
            win = (t > 0) & (t < bdepth)
            if not win.any():
                continue
            tw = t[win]
            bdepth[win] = tw
            part[r0:r1, c0:c1][win] = p
            if look.smooth[p]:
                continue  # shaded after the loop, blended with its neighbours
            s = np.stack([tw * qi[win] - mi for qi, mi in zip(q, m, strict=True)], -1)
            n = s @ a_map  # A^T s, the gradient direction
            local = s * placed_c.radii[p].astype(np.float32)  # mm in the part's own axes
            up = s[:, 2]
        else:
            k = p - n_ell
            pa = placed_c.cap_a[k].astype(np.float32)
            pb = placed_c.cap_b[k].astype(np.float32)
            r = float(placed_c.cap_r[k])
            t, along, side, cen = _capsule_hits(pa, pb, r, bx, by, np.float32(1.0))
            win = (t > 0) & (t < bdepth)
            if not win.any():
                continue
            tw = t[win]
            bdepth[win] = tw
            part[r0:r1, c0:c1][win] = p
            pts = np.stack([tw * bx[win], tw * by[win], tw], -1)
            axis_pt = pa + along[win, None] * (pb - pa)
            centre = np.stack([c[win] for c in cen], -1)
            n = pts - np.where(side[win, None], axis_pt, centre)
            length = float(np.linalg.norm(pb - pa))
            local = np.concatenate([along[win, None] * length, n[:, :2]], -1)
            up = None
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        colour = np.broadcast_to(look.colour[p], (len(tw), 3))
        if look.belly[p] and up is not None:
            colour = _belly_mix(colour, belly_rgb, up)
        gain = _mottling(look, p, local) if look.mottle[p] else np.ones(len(tw), np.float32)
        if look.rings[p]:
            gain *= 1.0 - 0.12 * np.sin(np.pi * local[:, 0] / 1.5 + look.phases[p, 3]) ** 2
        albedo[r0:r1, c0:c1][win] = colour * gain[:, None]
        normal[r0:r1, c0:c1][win] = n
    hit = part >= 0
    smooth = hit & look.smooth[np.maximum(part, 0)]
    if smooth.any():
        t = depth[smooth]
        pts = np.stack([t * x[smooth], t * y[smooth], t], -1)
        normal[smooth], albedo[smooth] = _blend_smooth(placed_c, look, pts, belly_rgb)
    where = np.maximum(part, 0)
    spec = np.where(hit, look.spec[where], 0.0).astype(np.float32)
    power = look.power[where]
    return hit, albedo, normal, spec, power


def _shadow_gain(view: ArenaView, placed_w: PlacedBody, light: np.ndarray, strength: float):
    """(row0, row1, col0, col1) and the floor's gain (1 - shadow) there, or None without any
    shadow in view. Soft shadows along the light, plus a contact shadow straight down."""
    if strength <= 0:
        return None
    centres, radii = placed_w.bounding_spheres()
    lz = max(float(light[2]), 0.2)
    feet = centres - light * (centres[:, 2:3] / lz)  # where each part's shadow falls
    reach = radii / lz + 10.0
    pts = np.concatenate(
        [
            feet[:, :2] - reach[:, None],
            feet[:, :2] + reach[:, None],
            centres[:, :2] - radii[:, None] - 10.0,
            centres[:, :2] + radii[:, None] + 10.0,
        ]
    )
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    s = np.linspace(0.0, 1.0, 9)
    outline = np.concatenate(
        [
            np.stack([x0 + s * (x1 - x0), np.full(9, y0)], -1),
            np.stack([x0 + s * (x1 - x0), np.full(9, y1)], -1),
            np.stack([np.full(9, x0), y0 + s * (y1 - y0)], -1),
            np.stack([np.full(9, x1), y0 + s * (y1 - y0)], -1),
        ]
    )
    rot, _ = _camera_pose(view.camera)
    pts_c = np.concatenate([outline, np.zeros((len(outline), 1))], -1) @ rot.T
    pts_c += view.camera.translation
    h, w = view.shape
    if np.any(pts_c[:, 2] < 1.0):
        r0, r1, c0, c1 = 0, h, 0, w
    else:
        uv = _camera_to_pixels(stack_cameras([view.camera]), pts_c[None])[0]
        c0, r0 = np.floor(uv.min(0) - 1).astype(int)
        c1, r1 = np.ceil(uv.max(0) + 2).astype(int)
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if r1 <= r0 or c1 <= c0:
        return None
    # The shadow is soft: evaluate it on every other pixel and interpolate.
    step = 2 if min(r1 - r0, c1 - c0) > 16 else 1
    fxy = view.floor_xy[r0:r1:step, c0:c1:step]
    on_floor = np.isfinite(fxy[..., 0])
    if not on_floor.any():
        return None
    coarse = np.zeros(on_floor.shape, np.float32)
    coarse[on_floor] = _shadow_darkness(placed_w, fxy[on_floor], light)
    if step > 1:
        coarse = cv2.resize(coarse, (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
    return (r0, r1, c0, c1), 1.0 - np.float32(strength) * coarse


def _shadow_darkness(placed_w: PlacedBody, xy: np.ndarray, light: np.ndarray) -> np.ndarray:
    """(n,) darkness in [0, 1] of floor points (n, 2): the body's soft shadow along the light,
    and a fainter, softer contact shadow straight down (light from the whole sky)."""
    p = np.concatenate([xy, np.zeros((len(xy), 1), np.float32)], -1).astype(np.float32)
    a_maps = placed_w.ellipsoid_maps().astype(np.float32)
    u = np.einsum("eij,enj->eni", a_maps, p[None] - placed_w.centres[:, None].astype(np.float32))
    uu = np.sum(u * u, -1)
    pa = placed_w.cap_a.astype(np.float32)
    ba = (placed_w.cap_b - placed_w.cap_a).astype(np.float32)
    w0 = p[None] - pa[:, None]  # (cap, n, 3)
    darkness = np.zeros(len(p), np.float32)
    for direction, weight, soft in ((light, 1.0, 0.55), ((0.0, 0.0, 1.0), 0.45, 1.1)):
        direction = np.asarray(direction, np.float32)
        # How far off each primitive's shadow axis the point lies, in units of its size (1 on
        # the sharp shadow's edge); the penumbra spreads over +-`soft` around it.
        v = a_maps @ direction
        d2 = uu - (u @ v[:, :, None])[..., 0] ** 2 / np.sum(v * v, -1)[:, None]
        off = [np.sqrt(np.maximum(d2, 0.0))]
        w = w0 - (w0 @ direction)[..., None] * direction
        b = ba - (ba @ direction)[:, None] * direction
        h = np.clip(np.sum(w * b[:, None], -1) / np.maximum(np.sum(b * b, -1), 1e-9)[:, None], 0, 1)
        dist = np.linalg.norm(w - h[..., None] * b[:, None], axis=-1)
        off.append(dist / placed_w.cap_r[:, None].astype(np.float32))
        cover = np.clip((1.0 + soft - np.concatenate(off).min(0)) / (2 * soft), 0.0, 1.0)
        darkness = np.maximum(darkness, weight * cover * cover * (3 - 2 * cover))
    return darkness


def _lit_background(view: ArenaView, light: np.ndarray, gain: float, style: AnimalStyle):
    """(h, w, 3) float32 scene under the light, and the floor's shade (for its shadows)."""
    floor_shade = np.float32(gain * (style.ambient + style.diffuse * max(float(light[2]), 0.0)))
    wall_shade = np.float32(gain) * (
        np.float32(style.ambient)
        + np.float32(style.diffuse) * np.maximum(view.wall_normal @ light.astype(np.float32), 0.0)
    )
    return view.floor_albedo * floor_shade + view.wall_albedo * wall_shade[..., None], floor_shade


def _check_poses(pose_3d, body: MouseBody) -> np.ndarray:
    poses = np.asarray(pose_3d, np.float64)
    k = body.skeleton.num_keypoints
    if poses.ndim == 2:
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[1:] != (k, 3) or len(poses) == 0:
        raise ValueError(
            f"pose_3d must have shape (kpt, 3) = ({k}, 3), or (samples, {k}, 3) for motion blur; "
            f"got {np.shape(pose_3d)}"
        )
    return poses


def _render_float(
    cam: Camera,
    poses: np.ndarray,
    frame_index: int,
    style: AnimalStyle,
    view: ArenaView | None,
    flat: np.ndarray | None,
    body: MouseBody,
):
    """(h, w, 3) float32 image before sensor effects, and the mouse's coverage (h, w)."""
    h, w = _image_shape(cam)
    light, gain = light_at(frame_index, style)
    rot, centre = _camera_pose(cam)
    if view is not None:
        image, floor_shade = _lit_background(view, light, gain, style)
    else:
        image = np.broadcast_to(flat.astype(np.float32), (h, w, 3)).copy()
    look = _look(body, style)
    belly = np.asarray(style.belly_rgb, np.float32)
    light_c = (rot @ light).astype(np.float32)
    ss = style.supersample
    grid = _ray_grid(cam)
    layers = []
    placed_all = [body.place(p) for p in poses]
    if view is not None and style.shadow > 0:
        # One shadow per frame, from the middle sample of a motion-blurred pose.
        shadow = _shadow_gain(view, placed_all[len(poses) // 2], light, style.shadow)
        if shadow is not None:
            (r0, r1, c0, c1), g = shadow
            image[r0:r1, c0:c1] -= (
                (1.0 - g)[..., None] * view.floor_albedo[r0:r1, c0:c1] * floor_shade
            )
    for placed_w in placed_all:
        placed_c = placed_w.transformed(rot, cam.translation)
        centres, radii = placed_c.bounding_spheres()
        boxes = _pixel_boxes(cam, centres, radii, (h, w))
        nonempty = (boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])
        if not nonempty.any():
            continue
        r0, c0 = boxes[nonempty, 0].min(), boxes[nonempty, 2].min()
        r1, c1 = boxes[nonempty, 1].max(), boxes[nonempty, 3].max()
        x, y = _subpixel_rays(grid, slice(r0, r1), slice(c0, c1), ss)
        if view is not None:
            rw = rot.T.astype(np.float32)
            dwx = rw[0, 0] * x + rw[0, 1] * y + rw[0, 2]
            dwy = rw[1, 0] * x + rw[1, 1] * y + rw[1, 2]
            dwz = rw[2, 0] * x + rw[2, 1] * y + rw[2, 2]
            depth = _scene_hits(centre, dwx, dwy, dwz, style)[0].astype(np.float32)
            invalid = ~np.repeat(np.repeat(view.valid[r0:r1, c0:c1], ss, 0), ss, 1)
            depth[invalid] = -_INF
        else:
            depth = np.full(x.shape, _INF)
        sub = (boxes - [r0, r0, c0, c0]) * ss
        hit, albedo, normal, spec, power = _cast_body(placed_c, look, x, y, depth, sub, belly)
        # Lambert with a little wrap-around (fur scatters light past the terminator) + ambient.
        ndotl = normal @ light_c
        shade = style.ambient + style.diffuse * np.clip((ndotl + 0.15) / 1.15, 0.0, None)
        rgb = albedo * (gain * shade)[..., None]
        shiny = spec > 0
        if shiny.any():
            # Blinn-Phong highlight (eyes, nose): only where a shiny part was hit.
            view_dir = -np.stack([x[shiny], y[shiny], np.ones(int(shiny.sum()), np.float32)], -1)
            half = view_dir / np.linalg.norm(view_dir, axis=-1, keepdims=True) + light_c
            half /= np.linalg.norm(half, axis=-1, keepdims=True)
            highlight = np.clip(np.sum(normal[shiny] * half, -1), 0.0, 1.0) ** power[shiny]
            rgb[shiny] += (255.0 * gain * spec[shiny] * highlight)[:, None]
        rgb *= hit[..., None]
        cov = hit.astype(np.float32)
        if ss > 1:
            size = (c1 - c0, r1 - r0)
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            cov = cv2.resize(cov, size, interpolation=cv2.INTER_AREA)
        layers.append(((r0, r1, c0, c1), rgb, cov))
    coverage = np.zeros((h, w), np.float32)
    if not layers:
        return image, coverage
    # Composite (premultiplied, averaged over the motion-blur samples) inside the union of the
    # layers' boxes only.
    r0, c0 = min(b[0][0] for b in layers), min(b[0][2] for b in layers)
    r1, c1 = max(b[0][1] for b in layers), max(b[0][3] for b in layers)
    premult = np.zeros((r1 - r0, c1 - c0, 3), np.float32)
    for (a0, a1, b0, b1), rgb, cov in layers:
        premult[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] += rgb
        coverage[a0:a1, b0:b1] += cov
    premult /= len(poses)
    coverage /= len(poses)
    cov = coverage[r0:r1, c0:c1, None]
    image[r0:r1, c0:c1] = premult + (1.0 - cov) * image[r0:r1, c0:c1]
    return image, coverage


def _noise_seed(style: AnimalStyle, frame_index: int, cam: Camera) -> np.random.Generator:
    tag = zlib.crc32(b"".join(_camera_key(cam)[1:]))
    return np.random.default_rng(
        np.random.SeedSequence(style.seed, spawn_key=(6, frame_index, tag))
    )


@functools.lru_cache(maxsize=8)
def _noise_bank(size: int, seed: int) -> np.ndarray:
    """2 * size standard normal float32 values: a frame's sensor noise is a random window of
    them (drawing fresh normals for every pixel would cost as much as the rendering)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    bank = rng.standard_normal(2 * size, np.float32)
    bank.setflags(write=False)
    return bank


def render_animal(
    camera: Camera,
    pose_3d: np.ndarray,
    *,
    frame_index: int = 0,
    style: AnimalStyle | None = None,
    background: ArenaView | Sequence[float] | None = None,
    body: MouseBody | None = None,
) -> np.ndarray:
    """One RGB image of the mouse at a pose, in its arena, seen through one camera.

    Deterministic: the same arguments give the same image. The first call for a camera builds
    its `arena_view` (~0.25 s at 320x256, with the pixel grid's undistortion); after that a
    320x256 frame takes about 8 ms on a 2-core CPU.

    Args:
        camera: a single `Camera` (NumPy or JAX fields), Brown-Conrady or fisheye.
        pose_3d: (kpt, 3) world keypoints (mm) of `body.skeleton`; or (samples, kpt, 3) poses
            over the exposure, averaged into one motion-blurred image.
        frame_index: drives the light's slow motion and seeds the sensor noise.
        style: the look; default `AnimalStyle()`.
        background: None for the textured arena (`arena_view(camera, style=style)`, cached),
            an `ArenaView`, or an RGB triple for a flat backdrop (no floor, wall or shadow).
        body: the primitives; default `mouse_body()`.

    Returns:
        (h, w, 3) uint8 RGB image.
    """
    style = style or AnimalStyle()
    body = body or mouse_body()
    cam = scale_camera(camera, 1.0)
    poses = _check_poses(pose_3d, body)
    view, flat = _background(background, cam, style)
    image, _ = _render_float(cam, poses, int(frame_index), style, view, flat, body)
    return _finish(image, view, style, _noise_seed(style, int(frame_index), cam))


def _background(background, cam: Camera, style: AnimalStyle):
    if background is None:
        return arena_view(cam, style=style), None
    if isinstance(background, ArenaView):
        if background.shape != _image_shape(cam):
            raise ValueError(
                f"background was built for a {background.shape[1]}x{background.shape[0]} "
                f"image, the camera is {_image_shape(cam)[1]}x{_image_shape(cam)[0]}; "
                "use arena_view(camera) of this camera"
            )
        return background, None
    flat = np.asarray(background, np.float32)
    if flat.shape != (3,):
        raise ValueError(
            f"background must be None, an ArenaView or an RGB triple, got shape {flat.shape}"
        )
    return None, flat


def _finish(image: np.ndarray, view: ArenaView | None, style: AnimalStyle, rng) -> np.ndarray:
    if view is not None and style.vignetting:
        image *= view.vignette
    if style.noise_std > 0:
        bank = _noise_bank(image.size, style.seed)
        start = int(rng.integers(image.size))
        image += np.float32(style.noise_std) * bank[start : start + image.size].reshape(image.shape)
    image += 0.5
    np.clip(image, 0.0, 255.0, out=image)
    return image.astype(np.uint8)


def animal_coverage(
    camera: Camera,
    pose_3d: np.ndarray,
    *,
    style: AnimalStyle | None = None,
    body: MouseBody | None = None,
) -> np.ndarray:
    """(h, w) float32 fraction of each pixel the mouse covers (its anti-aliased silhouette),
    ignoring the arena wall; a segmentation mask for the frame."""
    style = style or AnimalStyle()
    body = body or mouse_body()
    cam = scale_camera(camera, 1.0)
    poses = _check_poses(pose_3d, body)
    _, coverage = _render_float(cam, poses, 0, style, None, np.zeros(3), body)
    return coverage


# --- ground truth ---------------------------------------------------------------------------


def keypoint_visibility(
    camera: Camera,
    pose_3d: np.ndarray,
    *,
    style: AnimalStyle | None = None,
    body: MouseBody | None = None,
    margin_px: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact 2D keypoints and which of them the camera really sees.

    A keypoint is in the image when it is in front of the camera and projects inside the image
    (with `margin_px` to spare, as `in_view`). It is visible when, besides, nothing hides it:
    along the ray from the camera to it, the first surface of the mouse lies no more than
    `inner_depth_mm` (how deep the keypoint sits under its own skin) + the style's
    `occlusion_tolerance_mm` in front of it, and the arena wall does not come first.

    Args:
        camera: a single camera.
        pose_3d: (kpt, 3) world keypoints, mm.
        style: gives the arena wall and the tolerance.
        body: the primitives; default `mouse_body()`.
        margin_px: keep this far from the image border.

    Returns:
        uv: (kpt, 2) float64 pixel coordinates (as `project`; NaN behind the camera).
        visible: (kpt,) bool.
        in_image: (kpt,) bool.
    """
    style = style or AnimalStyle()
    body = body or mouse_body()
    cam = scale_camera(camera, 1.0)
    pose = _check_poses(pose_3d, body)[0]
    uv, in_image = in_view(stack_cameras([cam]), pose, margin_px=margin_px)
    uv, in_image = uv[0], in_image[0]
    rot, centre = _camera_pose(cam)
    xc = pose @ rot.T + cam.translation
    front = xc[:, 2] > 1e-9
    uv = np.where(front[:, None], uv, np.nan)
    rays = xc / np.where(front, xc[:, 2], 1.0)[:, None]  # t = 1 at the keypoint's depth ...
    placed_c = body.place(pose).transformed(rot, cam.translation)
    t_body = _first_hits(placed_c, rays)  # ... so t is depth along the optical axis
    gap_mm = (xc[:, 2] - t_body) * np.linalg.norm(rays, axis=-1)
    hidden = gap_mm > body.inner_depth_mm + style.occlusion_tolerance_mm
    dirs_w = rays @ rot  # R^T d
    t_scene = _scene_hits(centre, dirs_w[:, 0], dirs_w[:, 1], dirs_w[:, 2], style)[0]
    hidden |= t_scene < xc[:, 2] - style.occlusion_tolerance_mm
    return uv, in_image & front & ~hidden, in_image & front


# --- studies: videos, ground truth, labelled frames --------------------------------------------


def _select_cameras(study: SyntheticStudy, cameras) -> list[int]:
    names = study.calibration.names
    if cameras is None:
        return list(range(len(names)))
    out = []
    for c in cameras:
        if isinstance(c, str) and c in names:
            out.append(names.index(c))
        elif isinstance(c, (int, np.integer)) and 0 <= c < len(names):
            out.append(int(c))
        else:
            raise ValueError(f"camera {c!r} is neither a name in {list(names)} nor an index")
    if len(set(out)) != len(out):
        raise ValueError(f"cameras are repeated in {list(cameras)}")
    return out


def _study_style(study: SyntheticStudy, style: AnimalStyle | None) -> AnimalStyle:
    if style is not None:
        return style
    radius = study.calibration.metadata.get("arena_radius_mm", AnimalStyle.arena_radius_mm)
    return AnimalStyle(seed=study.seed, arena_radius_mm=float(radius))


def _motion_samples(points: np.ndarray, frame: int, samples: int) -> np.ndarray:
    """Poses over the exposure of `frame` (the half frame before it), for motion blur."""
    if samples <= 1:
        return points[frame]
    prev = points[max(frame - 1, 0)]
    s = np.linspace(0.5, 1.0, samples)[:, None, None]
    return prev + s * (points[frame] - prev)


@dataclasses.dataclass(frozen=True)
class RenderedStudy:
    """What `render_study_videos` wrote, with the ground truth in memory.

    Attributes:
        calibration: path of the rig at the rendered resolution (Anipose calibration.toml).
        videos: camera name -> mp4 path.
        keypoints_h5, keypoints_csv: camera name -> DeepLabCut 2D ground truth.
        pose_3d: Anipose pose-3d CSV of the 3D ground truth.
        points_2d: (frame, cam, kpt, 2) exact keypoints in the rendered images (NaN behind).
        visible: (frame, cam, kpt) bool visibility (in the image and not occluded).
        in_image: (frame, cam, kpt) bool.
        camera_names: names of the rendered cameras, in `cam` order.
    """

    calibration: Path
    videos: dict[str, Path]
    keypoints_h5: dict[str, Path]
    keypoints_csv: dict[str, Path]
    pose_3d: Path
    points_2d: np.ndarray
    visible: np.ndarray
    in_image: np.ndarray
    camera_names: tuple[str, ...]


def render_study_videos(
    study: SyntheticStudy,
    out_dir: str | os.PathLike,
    *,
    cameras: Sequence[str | int] | None = None,
    scale: float = 0.25,
    fps: float | None = None,
    num_frames: int | None = None,
    style: AnimalStyle | None = None,
    motion_blur_samples: int = 1,
    fourcc: str = "mp4v",
    progress: bool = True,
) -> RenderedStudy:
    """Render a study's mouse through its cameras as videos, with exact ground truth.

    Layout written (every file atomically):

        out_dir/calibration.toml          the rig at the rendered resolution
        out_dir/videos/<cam>.mp4          RGB frames (written as BGR) at `fps`
        out_dir/ground_truth/<cam>.h5     DeepLabCut 2D ground truth (and <cam>.csv): x, y exact
                                          where the keypoint projects into the image (NaN
                                          elsewhere), likelihood 1 visible, 0 occluded, NaN out
                                          of the image; rows are video frame numbers
        out_dir/ground_truth/pose_3d.csv  Anipose pose-3d CSV of study.points_3d (error 0,
                                          ncams = cameras that see the keypoint, score 1)

    Args:
        study: the study (its rig, skeleton and 3D keypoints).
        out_dir: output folder.
        cameras: names or indices of the cameras to render; default all.
        scale: image size relative to the rig's (0.25: 1280x1024 -> 320x256).
        fps: frame rate written in the videos; default the study's.
        num_frames: render the first this many frames; default all.
        style: the look; default `AnimalStyle(seed=study.seed)` with the rig's arena radius.
        motion_blur_samples: poses averaged over each exposure (1 = no motion blur).
        fourcc: video codec; `mp4v` is the one OpenCV's wheels both write and read.
        progress: show a tqdm bar.

    Returns:
        A `RenderedStudy`.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if isinstance(motion_blur_samples, bool) or int(motion_blur_samples) < 1:
        raise ValueError(f"motion_blur_samples must be >= 1, got {motion_blur_samples!r}")
    n = study.num_frames if num_frames is None else int(num_frames)
    if not 1 <= n <= study.num_frames:
        raise ValueError(f"num_frames must be in [1, {study.num_frames}], got {num_frames}")
    fps = float(study.fps if fps is None else fps)
    style = _study_style(study, style)
    body = mouse_body(study.skeleton)
    idx = _select_cameras(study, cameras)
    names = tuple(study.calibration.names[i] for i in idx)
    cams = [scale_camera(study.calibration.rig[i], scale) for i in idx]
    out_dir = Path(out_dir)
    points = study.points_3d

    rig = Calibration(
        stack_cameras(cams),
        names,
        {**dict(study.calibration.metadata), "image_scale": float(scale)},
    )
    calibration_path = save_calibration(rig, out_dir / "calibration.toml")
    videos = {name: out_dir / "videos" / f"{name}.mp4" for name in names}
    uv = np.full((n, len(cams), body.skeleton.num_keypoints, 2), np.nan)
    visible = np.zeros(uv.shape[:-1], bool)
    in_image = np.zeros(uv.shape[:-1], bool)
    writers: list[cv2.VideoWriter] = []
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(videos[name])) for name in names]
        try:
            for name, cam, tmp in zip(names, cams, tmps, strict=True):
                h, w = _image_shape(cam)
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
                writers.append(writer)
                if not writer.isOpened():
                    raise OSError(
                        f"cannot open a {fourcc!r} video writer for {videos[name]} "
                        f"({w}x{h} at {fps} fps)"
                    )
            views = [arena_view(cam, style=style) for cam in cams]
            with tqdm(
                total=n * len(cams), disable=not progress, desc="render mouse", unit="img"
            ) as bar:
                for f in range(n):
                    poses = _motion_samples(points, f, int(motion_blur_samples))
                    for c, cam in enumerate(cams):
                        uv[f, c], visible[f, c], in_image[f, c] = keypoint_visibility(
                            cam, points[f], style=style, body=body
                        )
                        image = render_animal(
                            cam, poses, frame_index=f, style=style, background=views[c], body=body
                        )
                        writers[c].write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                        bar.update()
        finally:
            for writer in writers:
                writer.release()

    truth = out_dir / "ground_truth"
    h5, csv = {}, {}
    for c, name in enumerate(names):
        xy = np.where(in_image[:, c, :, None], uv[:, c], np.nan)
        likelihood = np.where(in_image[:, c], visible[:, c].astype(np.float64), np.nan)
        kp = Keypoints2D(
            xy=xy, likelihood=likelihood, bodyparts=body.skeleton.names, scorer="ground_truth"
        )
        h5[name] = write_dlc(truth / f"{name}.h5", kp)
        csv[name] = write_dlc(truth / f"{name}.csv", kp)
    k = body.skeleton.num_keypoints
    pose_path = write_pose3d_csv(
        truth / "pose_3d.csv",
        points[:n],
        bodyparts=body.skeleton.names,
        error=np.zeros((n, k)),
        ncams=visible.sum(1),
        score=np.ones((n, k)),
    )
    return RenderedStudy(
        calibration=calibration_path,
        videos=videos,
        keypoints_h5=h5,
        keypoints_csv=csv,
        pose_3d=pose_path,
        points_2d=uv,
        visible=visible,
        in_image=in_image,
        camera_names=names,
    )


def write_labelled_frames(
    study: SyntheticStudy,
    out_dir: str | os.PathLike,
    *,
    frames: Iterable[int],
    cameras: Sequence[str | int] | None = None,
    scale: float = 0.25,
    style: AnimalStyle | None = None,
    scorer: str = "synthetic",
    progress: bool = True,
) -> Path:
    """Write chosen frames as a DeepLabCut project of labelled images, one folder per camera.

    The images are exactly the frames `render_study_videos` puts in the videos (same style,
    frame index and camera), before video compression. Only visible keypoints are labelled
    (NaN otherwise), as a human labeller would.

        out_dir/config.yaml                                   bodyparts, skeleton, video_sets
        out_dir/labeled-data/<cam>/img<frame:04d>.png         the frames
        out_dir/labeled-data/<cam>/CollectedData_<scorer>.h5 (and .csv), rows indexed by
                                                              labeled-data/<cam>/img....png

    Args:
        study: the study.
        out_dir: the project folder.
        frames: study frame indices to label.
        cameras: names or indices; default all.
        scale: image size relative to the rig's.
        style: the look; default as `render_study_videos`.
        scorer: the labeller's name (DeepLabCut's `scorer`).
        progress: show a tqdm bar.

    Returns:
        Path of config.yaml.
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    frames = [int(f) for f in frames]
    bad = [f for f in frames if not 0 <= f < study.num_frames]
    if bad:
        raise ValueError(f"frames {bad[:5]} are outside the study's [0, {study.num_frames})")
    if not frames:
        raise ValueError("frames is empty; choose at least one frame to label")
    if len(set(frames)) != len(frames):
        raise ValueError("frames are repeated; each frame can be labelled once per camera")
    style = _study_style(study, style)
    body = mouse_body(study.skeleton)
    idx = _select_cameras(study, cameras)
    out_dir = Path(out_dir)
    names = body.skeleton.names
    sizes = {}
    with tqdm(
        total=len(frames) * len(idx), disable=not progress, desc="label frames", unit="img"
    ) as bar:
        for i in idx:
            cam_name = study.calibration.names[i]
            cam = scale_camera(study.calibration.rig[i], scale)
            h, w = _image_shape(cam)
            sizes[cam_name] = (w, h)
            view = arena_view(cam, style=style)
            folder = out_dir / "labeled-data" / cam_name
            xy = np.full((len(frames), len(names), 2), np.nan)
            index = []
            for j, f in enumerate(frames):
                uv, vis, _ = keypoint_visibility(cam, study.points_3d[f], style=style, body=body)
                xy[j] = np.where(vis[:, None], uv, np.nan)
                image = render_animal(
                    cam, study.points_3d[f], frame_index=f, style=style, background=view, body=body
                )
                name = f"img{f:04d}.png"
                with atomic_path(folder / name) as tmp:
                    if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                        raise OSError(f"could not write {folder / name}")
                index.append(f"labeled-data/{cam_name}/{name}")
                bar.update()
            kp = Keypoints2D(xy=xy, likelihood=None, bodyparts=names, scorer=scorer, index=index)
            write_dlc(folder / f"CollectedData_{scorer}.h5", kp)
            write_dlc(folder / f"CollectedData_{scorer}.csv", kp)
    config = {
        "Task": "synthetic",
        "scorer": scorer,
        "date": "synthetic",
        "multianimalproject": False,
        "identity": None,
        "project_path": str(out_dir.resolve()),
        "engine": "pytorch",
        # DeepLabCut ties labeled-data/<name> to a video named <name>; these are where
        # render_study_videos(out_dir=...) puts them.
        "video_sets": {
            str((out_dir / "videos" / f"{n}.mp4").resolve()): {"crop": f"0, {w}, 0, {h}"}
            for n, (w, h) in sizes.items()
        },
        "bodyparts": list(names),
        "start": 0,
        "stop": 1,
        "numframes2pick": len(frames),
        "skeleton": [[names[a], names[b]] for a, b in body.skeleton.edges],
        "skeleton_color": "black",
        "pcutoff": 0.6,
        "dotsize": 4,
        "alphavalue": 0.7,
        "colormap": "rainbow",
        "TrainingFraction": [0.95],
        "iteration": 0,
        "default_net_type": "resnet_50",
        "default_augmenter": "default",
        "snapshotindex": -1,
        "batch_size": 8,
        "cropping": False,
    }
    path = out_dir / "config.yaml"
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    return path


def render_montage(
    study: SyntheticStudy,
    frame_index: int,
    *,
    cameras: Sequence[str | int] | None = None,
    scale: float = 0.25,
    style: AnimalStyle | None = None,
    columns: int | None = None,
    draw_keypoints: bool = False,
) -> np.ndarray:
    """One frame from every camera tiled into one RGB image (cameras row-major), optionally
    with the ground truth drawn: filled dots visible, rings occluded."""
    style = _study_style(study, style)
    body = mouse_body(study.skeleton)
    idx = _select_cameras(study, cameras)
    tiles = []
    for i in idx:
        cam = scale_camera(study.calibration.rig[i], scale)
        pose = study.points_3d[frame_index]
        image = render_animal(cam, pose, frame_index=frame_index, style=style, body=body)
        if draw_keypoints:
            uv, vis, inside = keypoint_visibility(cam, pose, style=style, body=body)
            colours = cv2.applyColorMap(
                np.linspace(0, 255, len(uv)).astype(np.uint8)[:, None], cv2.COLORMAP_JET
            )[:, 0, ::-1]
            for (u, v), seen, ok, colour in zip(uv, vis, inside, colours, strict=True):
                if ok:
                    centre = (int(round(u * 4)), int(round(v * 4)))
                    cv2.circle(
                        image,
                        centre,
                        8,
                        tuple(int(c) for c in colour),
                        -1 if seen else 1,
                        lineType=cv2.LINE_AA,
                        shift=2,
                    )
        tiles.append(image)
    columns = columns or int(np.ceil(np.sqrt(len(tiles))))
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = int(np.ceil(len(tiles) / columns))
    out = np.zeros((rows * h, columns * w, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        out[r * h : r * h + tile.shape[0], c * w : c * w + tile.shape[1]] = tile
    return out
