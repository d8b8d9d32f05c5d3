"""The shard contract: how a headcam dataset is written, indexed and streamed.

Everything downstream reads datasets through this package only; see DESIGN.md ("The shard
contract") and the README section of the same name.
"""

from headcam.shards.dataset import Dataset, DatasetError, open_dataset
from headcam.shards.stream import SampleStream, decode_label, plan_epoch
from headcam.shards.writer import ShardWriter

__all__ = ["Dataset", "DatasetError", "open_dataset", "SampleStream", "ShardWriter", "decode_label",
           "plan_epoch"]
