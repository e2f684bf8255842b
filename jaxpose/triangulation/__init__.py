"""Triangulation: confidence-weighted DLT, robust view selection, nonlinear refinement."""

from jaxpose.triangulation.api import METHODS, Triangulator, triangulate, triangulate_frames
from jaxpose.triangulation.core import (
    Triangulation,
    point_covariance,
    reprojection_errors,
    select_views,
    triangulate_dlt,
    triangulate_point,
)

__all__ = [
    "METHODS",
    "Triangulator",
    "Triangulation",
    "point_covariance",
    "reprojection_errors",
    "select_views",
    "triangulate",
    "triangulate_dlt",
    "triangulate_frames",
    "triangulate_point",
]
