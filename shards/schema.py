"""Names and types of the shard contract, in one place.

Members of a sample (all share the dot-free key):

- ``KEY.jpg``     the frame or image, JPEG.
- ``KEY.sal.png`` optional 8-bit single-channel saliency density, long side 64, max-normalised.
- ``KEY.cls``     the label as ASCII decimal (webdataset convention; -1 = unlabelled).
- ``KEY.lbl``     the same label as 8 bytes of little-endian int64, so DALI's
                  ``readers.webdataset(ext=[..., "lbl"], dtypes=[..., types.INT64])`` delivers it
                  as int64 with no Python per sample.
- ``KEY.json``    provenance: source, video index, pts, stream time, segment, clip id, ...
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

MEMBER_IMAGE = "jpg"
MEMBER_SALIENCY = "sal.png"
MEMBER_CLASS = "cls"
MEMBER_LABEL_INT64 = "lbl"
MEMBER_META = "json"

DATASET_JSON = "dataset.json"
MANIFEST = "manifest.parquet"
FAILURES = "failures.parquet"
JOURNAL = "journal.jsonl"

#: Columns every manifest has. ``label`` is the temporal segment for video datasets and the
#: class index for image datasets (-1: unlabelled). Image datasets may add columns (e.g.
#: ``split_iid``, ``split_exemplar``, ``category``, ``object``); readers ignore unknown ones.
MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # sample key, dot-free, unique
        ("split", pa.string()),  # "train" | "val" | "test" | "unlabeled" ...
        ("shard", pa.string()),  # shard file name, relative to the dataset directory
        ("label", pa.int64()),  # segment (video) or class (images); -1 unlabelled
        ("source", pa.string()),  # path of the input file the sample came from
        ("stream", pa.string()),  # video datasets: stream (child) name; images: ""
        ("video_index", pa.int32()),  # index of the source within its stream (-1 images)
        ("frame_index", pa.int32()),  # sampled-frame index within the source
        ("pts", pa.float64()),  # presentation time in the source, seconds (NaN images)
        ("stream_time", pa.float64()),  # time on the stream's axis, seconds (NaN images)
        ("clip", pa.int64()),  # global clip id (video); -1 images
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("has_saliency", pa.bool_()),
    ]
)

FAILURES_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("stage", pa.string()),  # probe | decode | encode | saliency | read | write
        ("error_type", pa.string()),
        ("message", pa.string()),
    ]
)


def shard_name(split: str, index: int) -> str:
    """``train-000000.tar``: the one naming rule for shards."""
    return f"{split}-{index:06d}.tar"
