"""Camera streams as lerobot videos: one MP4 per episode and camera, encoded with PyAV.

lerobot 0.6.1 stores ``dtype: "video"`` features as ``videos/<key>/chunk-CCC/file-FFF.mp4``
and finds an episode's frames through the ``videos/<key>/{chunk_index, file_index,
from_timestamp, to_timestamp}`` columns of ``meta/episodes``; it decodes with torchcodec
(which needs the system's ffmpeg libraries) or PyAV. Its own writer appends episodes to one
growing file; here every episode gets a file of its own (``from_timestamp`` 0), written once
and never reopened, so a video can be hard-linked between dataset versions like the Parquet
files and a killed recorder cannot damage an earlier episode's video.

The codec is lerobot's default (AV1 through SVT-AV1, CRF 30, a keyframe every 2 frames so a
random frame decodes fast, yuv420p) with one encoder thread: the other core stays with the
control loop, and SVT-AV1 with automatic threads was measured to crash (SIGFPE) on small
frames. Frames are ``(T, H, W, 3)`` uint8 RGB with H, W >= 4 (SVT-AV1 refuses smaller).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import av
import numpy as np
import pyarrow as pa

__all__ = [
    "MIN_VIDEO_SIDE",
    "camera_frames",
    "encode_episode_video",
    "video_encoder",
    "video_info",
]

MIN_VIDEO_SIDE = 4  # px: SVT-AV1 refuses smaller frames
_ENCODER_THREADS = 1
# SVT-AV1 prints a dozen lines of settings per file straight to stderr; errors stay on.
os.environ.setdefault("SVT_LOG", "1")


def video_encoder():
    """lerobot's RGB encoder settings (``RGBEncoderConfig``) this writer encodes with."""
    from lerobot.configs import RGBEncoderConfig

    return RGBEncoderConfig()


def encode_episode_video(path: Path, frames: np.ndarray, fps: int, encoder=None) -> None:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 into the MP4 file ``path`` at ``fps`` Hz.

    Frame ``i`` gets the presentation time ``i / fps`` s, the ``timestamp`` lerobot stores
    for it, so lerobot's decoders find every frame within their 0.1 ms tolerance.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"video frames must be (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}"
        )
    _, height, width, _ = frames.shape
    if min(height, width) < MIN_VIDEO_SIDE:
        raise ValueError(
            f"video frames of {width}x{height} px are too small for AV1: use at least "
            f"{MIN_VIDEO_SIDE}x{MIN_VIDEO_SIDE} px, or store the camera as PNG images"
        )
    encoder = encoder or video_encoder()
    options = encoder.get_codec_options(_ENCODER_THREADS, as_strings=True)
    logging.getLogger("libav").setLevel(logging.WARNING)  # SVT-AV1 prints its config per file
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder.vcodec, int(fps), options=options)
        stream.pix_fmt, stream.width, stream.height = encoder.pix_fmt, width, height
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())  # flush the frames the encoder still holds


def video_info(path: Path, encoder=None) -> dict:
    """The ``video.*`` block lerobot keeps in ``info.json`` for a video feature."""
    from lerobot.datasets.video_utils import get_video_info

    return get_video_info(path, video_encoder=encoder or video_encoder())


def camera_frames(ds, key: str, episode_index: int, rows: np.ndarray) -> np.ndarray:
    """Camera ``key``'s frames ``(T, H, W, 3)`` uint8 for episode ``episode_index`` of the
    ``LeRobotDataset`` ``ds``, whose rows of ``ds.hf_dataset`` are ``rows``: a video feature
    decoded in one call through lerobot's own decoder (torchcodec or PyAV), an image feature
    read from its PNG bytes (per-frame ``ds[i]`` would reopen the video for every frame)."""
    table = ds.hf_dataset.data
    if key not in ds.meta.video_keys:
        import PIL.Image

        cells = table.column(key).take(pa.array(rows)).to_pylist()
        return np.stack(
            [np.asarray(PIL.Image.open(io.BytesIO(c["bytes"])).convert("RGB")) for c in cells]
        )
    from lerobot.datasets.video_utils import decode_video_frames

    timestamps = table.column("timestamp").take(pa.array(rows)).to_numpy()
    start = float(ds.meta.episodes[episode_index][f"videos/{key}/from_timestamp"])
    frames = decode_video_frames(
        ds.root / ds.meta.get_video_file_path(episode_index, key),
        [start + float(t) for t in timestamps],
        ds.tolerance_s,
        getattr(ds, "_video_backend", None),
        return_uint8=True,
    )
    return frames.permute(0, 2, 3, 1).numpy()
