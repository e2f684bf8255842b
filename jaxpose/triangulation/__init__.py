"""Triangulation: confidence-weighted DLT, robust view selection, nonlinear refinement, and
spatiotemporal refinement of whole recordings."""

from jaxpose.triangulation.api import METHODS, Triangulator, triangulate, triangulate_frames
from jaxpose.triangulation.core import (
    Triangulation,
    point_covariance,
    reprojection_errors,
    select_views,
    triangulate_dlt,
    triangulate_point,
)
from jaxpose.triangulation.spatiotemporal import (
    SpatiotemporalConfig,
    SpatiotemporalResult,
    refine_spatiotemporal,
    spatiotemporal_cost,
)

__all__ = [
    "METHODS",
    "SpatiotemporalConfig",
    "SpatiotemporalResult",
    "Triangulator",
    "Triangulation",
    "point_covariance",
    "refine_spatiotemporal",
    "reprojection_errors",
    "select_views",
    "spatiotemporal_cost",
    "triangulate",
    "triangulate_dlt",
    "triangulate_frames",
    "triangulate_point",
]
