"""The shard contract: how a headcam dataset is written, indexed and streamed.

Everything downstream reads datasets through this package only; see DESIGN.md ("The shard
contract") and the README section of the same name.

The streaming names (``SampleStream``, ``decode_label``, ``plan_epoch``) import torch, which
takes seconds; they load on first use so writers (``headcam-ingest``) start fast.
"""

from headcam.shards.dataset import Dataset, DatasetError, open_dataset
from headcam.shards.writer import ShardWriter

__all__ = ["Dataset", "DatasetError", "open_dataset", "SampleStream", "ShardWriter", "decode_label",
           "plan_epoch"]

_STREAM_NAMES = ("SampleStream", "decode_label", "plan_epoch")


def __getattr__(name: str):
    if name in _STREAM_NAMES:
        from headcam.shards import stream

        return getattr(stream, name)
    raise AttributeError(f"module 'headcam.shards' has no attribute {name!r}")
