"""Seeded synthetic multi-camera studies: rigs, an animated mouse, noisy 2D detections, boards.

Everything is float64 NumPy drawn from `numpy.random.default_rng(seed)`: the same seed gives
bit-identical output, so synthetic ground truth is exact and tests are reproducible.

    >>> from jaxpose.synth import make_study
    >>> study = make_study(num_cameras=6, num_frames=300, noise_px=1.0, seed=0)
    >>> study.points_2d.shape          # (frame, cam, kpt, 2)
    (300, 6, 20, 2)
"""

from jaxpose.synth.board import (
    CHARUCO,
    CHECKERBOARD,
    Board,
    board_observations,
    board_points,
    board_trajectory,
)
from jaxpose.synth.rig import (
    MAX_CAMERAS,
    MIN_CAMERAS,
    camera_centers,
    in_view,
    look_at_rotation,
    make_rig,
    max_valid_radius,
    project_points,
)
from jaxpose.synth.skeleton import MOUSE_KEYPOINTS, Skeleton, animate, mouse_skeleton
from jaxpose.synth.study import SyntheticStudy, make_study

__all__ = [
    "CHARUCO",
    "CHECKERBOARD",
    "MAX_CAMERAS",
    "MIN_CAMERAS",
    "MOUSE_KEYPOINTS",
    "Board",
    "Skeleton",
    "SyntheticStudy",
    "animate",
    "board_observations",
    "board_points",
    "board_trajectory",
    "camera_centers",
    "in_view",
    "look_at_rotation",
    "make_rig",
    "make_study",
    "max_valid_radius",
    "mouse_skeleton",
    "project_points",
]

# Board images through synthetic cameras (jaxpose.synth.render).
from jaxpose.synth.render import (  # noqa: E402
    board_texture,
    iter_board_images,
    render_board,
    render_board_sequence,
    scale_camera,
    write_board_images,
    write_board_videos,
)

__all__ += [
    "board_texture",
    "iter_board_images",
    "render_board",
    "render_board_sequence",
    "scale_camera",
    "write_board_images",
    "write_board_videos",
]

# The mouse rendered through the rig, with exact ground truth (jaxpose.synth.animal).
from jaxpose.synth.animal import (  # noqa: E402
    AnimalStyle,
    ArenaView,
    MouseBody,
    RenderedStudy,
    animal_coverage,
    arena_view,
    keypoint_visibility,
    light_at,
    mouse_body,
    render_animal,
    render_montage,
    render_study_videos,
    write_labelled_frames,
)

__all__ += [
    "AnimalStyle",
    "ArenaView",
    "MouseBody",
    "RenderedStudy",
    "animal_coverage",
    "arena_view",
    "keypoint_visibility",
    "light_at",
    "mouse_body",
    "render_animal",
    "render_montage",
    "render_study_videos",
    "write_labelled_frames",
]
