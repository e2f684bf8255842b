"""Hydra entry point of `jaxpose board` (config: conf/board_print.yaml): a printable board PNG."""

from __future__ import annotations

import os
import struct
import sys
import zlib

import numpy as np
from omegaconf import DictConfig

MM_PER_INCH = 25.4


def png_bytes(image: np.ndarray, *, dpi: float) -> bytes:
    """PNG-encode a uint8 image with its resolution in a pHYs chunk, so it prints to scale."""
    import cv2

    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("cannot encode the board image as PNG")
    data = data.tobytes()
    per_metre = round(dpi / (MM_PER_INCH / 1000.0))
    body = b"pHYs" + struct.pack(">IIB", per_metre, per_metre, 1)  # unit 1: metre
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    # The IHDR chunk is always first: 8-byte signature + 4 length + 4 type + 13 data + 4 CRC.
    end_of_ihdr = 8 + 4 + 4 + 13 + 4
    return data[:end_of_ihdr] + chunk + data[end_of_ihdr:]


def write_board_png(board, path: str | os.PathLike, *, dpi: float, margin_mm: float) -> dict:
    """Draw `board` at `dpi` and write it to `path` (atomically); returns the sizes written."""
    from jaxpose.io.atomic import atomic_write_bytes

    if not (np.isfinite(dpi) and dpi > 0):
        raise ValueError(f"dpi must be positive, got {dpi}")
    pixels_per_mm = dpi / MM_PER_INCH
    image = board.draw(pixels_per_mm=pixels_per_mm, margin_mm=margin_mm)
    atomic_write_bytes(path, png_bytes(image, dpi=dpi))
    height, width = image.shape
    return {
        "path": str(path),
        "pixels": (width, height),
        "size_mm": (width / pixels_per_mm, height / pixels_per_mm),
        "pattern_mm": board.size_mm,
    }


def main(cfg: DictConfig) -> int:
    from jaxpose.calibration.board import Board

    try:
        board = Board.from_config(cfg.board)
        info = write_board_png(board, cfg.out, dpi=float(cfg.dpi), margin_mm=float(cfg.margin_mm))
    except (ValueError, OSError) as e:
        print(f"jaxpose board: {e}", file=sys.stderr)
        return 1
    (w, h), (wmm, hmm), (pw, ph) = info["pixels"], info["size_mm"], info["pattern_mm"]
    print(board)
    print(
        f"wrote {info['path']}: {w} x {h} px at {cfg.dpi:g} dpi = {wmm:.1f} x {hmm:.1f} mm "
        f"(pattern {pw:g} x {ph:g} mm + {cfg.margin_mm:g} mm margin)"
    )
    what, size = (
        ("a marker", board.marker_mm)
        if board.kind == "aruco_grid"
        else ("a square", board.square_mm)
    )
    print(
        f"Print at 100 % (actual size, not 'fit to page') and measure {what}: it should be "
        f"{size:g} mm."
    )
    return 0
