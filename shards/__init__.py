"""The shard contract: how a headcam dataset is written, indexed and streamed.

Everything downstream reads datasets through this package only; see DESIGN.md ("The shard
contract") and the README section of the same name.

The names below load on first use: ``read`` and ``stream`` import torch and ``dataset`` pyarrow, which take
seconds, and worker processes that only write files (ingest) should not pay for them.
"""

from __future__ import annotations

import importlib

__all__ = ["Dataset", "DatasetError", "OrderedStream", "SampleStream", "ShardWriter", "decode_label", "open_dataset",
           "plan_epoch", "rank_world", "read_samples", "select"]

_HOME = {"Dataset": "dataset", "DatasetError": "dataset", "open_dataset": "dataset", "SampleStream": "stream",
         "plan_epoch": "stream", "ShardWriter": "writer", "OrderedStream": "read", "decode_label": "read",
         "rank_world": "read", "read_samples": "read", "select": "read"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"headcam.shards.{_HOME[name]}"), name)
    raise AttributeError(f"module 'headcam.shards' has no attribute {name!r}")
