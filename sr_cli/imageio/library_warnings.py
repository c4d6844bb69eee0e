"""Warnings that Pillow and OpenCV raise while decoding a user's file, turned into our one-line notes.

Python would print a raw warning with a site-packages path and line ("PIL/TiffImagePlugin.py:950: UserWarning:
Corrupt EXIF data") that does not even say which of the user's files it concerns. We catch them where the
library is called and hand them on as notes of that image. `warnings.catch_warnings` swaps process-wide
state, so the blocks are serialised by a lock, and a warning that did not come from the image libraries
(another thread's, in the same window) is passed on unchanged as if we had not been there.
"""
from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image as PILImage

_LOCK = threading.Lock()
_IMAGE_LIBRARIES = tuple(f"{os.sep}{name}{os.sep}" for name in ("PIL", "cv2", "imageio"))


@contextmanager
def warnings_as_notes(notes: list[str]) -> Iterator[None]:
    """Collect the image libraries' warnings raised inside the block into `notes` (one line each, no
    duplicates). Pillow's DecompressionBombWarning is dropped: sr's own pixel budget decides (`budget`)."""
    with _LOCK:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    for warning in caught:
        if not any(part in warning.filename for part in _IMAGE_LIBRARIES):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            continue
        if issubclass(warning.category, PILImage.DecompressionBombWarning):
            continue
        text = " ".join(str(warning.message).split()) or warning.category.__name__
        note = f"the decoder warned: {text}"
        if note not in notes:
            notes.append(note)
