"""Real frames from the shared media, for tests that build their own fixtures.

A module of its own (not ``conftest``) so every test folder can import it: each folder's
``conftest.py`` shadows the others under the name ``conftest``.
"""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MEDIA = SHARED / "media"
EDGE = SHARED / "edge"


def real_frames(n_per_video: int = 12, size: int = 64):
    """(video index, RGB uint8 array) pairs: real frames from the shared media, short side ``size``."""
    import av
    import numpy as np
    from PIL import Image

    out = []
    for vi, path in enumerate(sorted(MEDIA.iterdir())):
        with av.open(str(path)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i >= n_per_video * 3:
                    break
                if i % 3:
                    continue
                img = frame.to_image()
                w, h = img.size
                s = size / min(w, h)
                img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
                out.append((vi, np.asarray(img)))
    return out
