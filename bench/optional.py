"""Optional packages that make bench faster where they are installed and never change a number."""

from __future__ import annotations

_CV2: list = []


def opencv():
    """cv2 where it is installed and loads (lvis and mmcv bring it), else None."""
    if not _CV2:
        try:
            import cv2
        except Exception:  # not installed, or an OpenCV build that cannot load here
            cv2 = None
        _CV2.append(cv2)
    return _CV2[0]
