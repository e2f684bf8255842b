"""Calibration report: a table, warnings, a residual histogram and per-camera coverage maps,
written next to the calibration so that a calibration that "looks fine" can be checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jaxpose.io.atomic import atomic_path, atomic_write_text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_residual_histogram(result, path: Path) -> Path:
    """Histogram of per-corner reprojection errors, one line per camera."""
    plt = _pyplot()
    err = np.linalg.norm(result.adjustment.residuals, axis=-1)
    cams = result.adjustment.observation_camera
    hi = max(float(np.percentile(err, 99.5)), 1e-3)
    bins = np.linspace(0, hi, 50)
    fig, ax = plt.subplots(figsize=(7, 4))
    for c, name in enumerate(result.report.names):
        e = err[cams == c]
        if e.size:
            ax.hist(
                e,
                bins=bins,
                histtype="step",
                linewidth=1.5,
                label=f"{name} (mean {e.mean():.2f}, p95 {np.percentile(e, 95):.2f})",
            )
    ax.set_xlabel("reprojection error (px)")
    ax.set_ylabel("corners")
    ax.set_title("Bundle adjustment residuals")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def plot_coverage(result, image_sizes: np.ndarray, path: Path) -> Path:
    """Where in each camera's image the board's corners were seen, coloured by error."""
    plt = _pyplot()
    names = result.report.names
    n = len(names)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    ba = result.adjustment
    err = np.linalg.norm(ba.residuals, axis=-1)
    corners = result.corners
    seen = np.all(np.isfinite(corners), -1)
    vmax = max(float(np.percentile(err, 99)), 1e-3)
    for c, name in enumerate(names):
        ax = axes[c // cols][c % cols]
        w, h = image_sizes[c]
        pts = corners[:, c][seen[:, c]]
        if pts.size:  # everything detected (including frames not used), in grey
            ax.scatter(pts[:, 0], pts[:, 1], s=2, c="0.8")
        sel = ba.observation_camera == c
        sc = None
        if sel.any():
            uv = corners[ba.observation_frame[sel], c, ba.observation_corner[sel]]
            sc = ax.scatter(uv[:, 0], uv[:, 1], s=3, c=err[sel], cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_aspect("equal")
        ax.set_title(f"{name}: {100 * result.report.coverage[c]:.0f}% of image", fontsize=9)
        ax.tick_params(labelsize=7)
        if sc is not None:
            fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label="px")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("Board corner coverage per camera (colour: reprojection error)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def write_report(result, out: Path, image_sizes: np.ndarray) -> dict[str, Path]:
    """report.md + residuals.png + coverage.png + report.json in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hist = plot_residual_histogram(result, out / "residuals.png")
    cover = plot_coverage(result, np.asarray(image_sizes), out / "coverage.png")
    table = result.report.table(result.adjustment.standard_errors)
    warnings = "\n".join(f"- {w}" for w in result.report.warnings) or "- none"
    meta = result.calibration.metadata
    md = f"""# Calibration report

World frame: {meta.get("world")}; units: {meta.get("units")}; {meta.get("iterations")} bundle
adjustment iterations (converged: {meta.get("converged")}); mean reprojection error
{meta.get("error", float("nan")):.3f} px.

```
{table}
```

(se f, se c: standard errors of focal length and principal point from the normal equations.)

## Warnings

{warnings}

![residuals](residuals.png)

![coverage](coverage.png)
"""
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.json", json.dumps(meta, indent=2, default=float))
    return {"markdown": out / "report.md", "residuals": hist, "coverage": cover}
