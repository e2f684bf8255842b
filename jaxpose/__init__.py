"""jaxpose: differentiable 3D markerless pose estimation in JAX."""

__version__ = "0.1.0"
