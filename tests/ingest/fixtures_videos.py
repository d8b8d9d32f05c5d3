"""Videos made on the fly with the bundled ffmpeg (imageio-ffmpeg, a dev dependency) from the shared
media: H.264 with B-frames, an open-GOP stream, a variable-frame-rate Matroska file with gaps, a
rotated copy and a truncated one, each a few seconds to encode."""

from __future__ import annotations

import subprocess
from pathlib import Path

from media_frames import MEDIA


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def h264(dest: Path, seconds: float, *, size: str = "320:240", gop: int = 30, extra: tuple[str, ...] = (),
         filters: str = "", container_args: tuple[str, ...] = ()) -> Path:
    """The shared street clip looped to ``seconds``, 30 fps, x264 with 3 B-frames and a keyframe every
    ``gop`` frames (so a part of a few seconds has keyframes to start from)."""
    ffmpeg("-stream_loop", "-1", "-i", str(MEDIA / "cityCC0.mpg"), "-t", f"{seconds:g}", "-an", "-vf",
           f"scale={size},fps=30{filters},format=yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-bf", "3",
           "-g", str(gop), *extra, *container_args, str(dest))
    return dest


def split_test_videos(root: Path) -> dict[str, Path]:
    """The awkward cases for splitting a video into time ranges, in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    out = {
        "bframes": h264(root / "bframes.mp4", 16),
        "opengop": h264(root / "opengop.mp4", 12, extra=("-x264-params", "open-gop=1:scenecut=60")),
        # 20 frames shown, 25 dropped, timestamps kept: 0.83 s gaps, so one frame answers several 5 fps targets
        "vfr": h264(root / "vfr.mkv", 18, gop=40, filters=",select='lt(mod(n\\,45)\\,20)'",
                    extra=("-fps_mode", "vfr")),
    }
    rotated = root / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(out["bframes"]), "-c", "copy", str(rotated))
    out["rotated"] = rotated
    whole = h264(root / "faststart.tmp.mp4", 12, container_args=("-movflags", "+faststart"))
    data = whole.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) * 3 // 5])  # the index promises packets past the end
    whole.unlink()
    out["truncated"] = root / "truncated.mp4"
    return out


def two_streams(media_dir: Path, root: Path) -> Path:
    """Six inputs in two streams under ``root`` (``child_a/``, ``child_b/``): symlinks to the shared media, so
    distinct paths (distinct inputs) at no disk cost."""
    for child in ("child_a", "child_b"):
        (root / child).mkdir()
        for f in sorted(media_dir.iterdir()):
            (root / child / f.name).symlink_to(f)
    return root
