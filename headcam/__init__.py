"""headcam: from a child's-eye head-camera video to trained and evaluated vision models.

The sub-packages (ingest, shards, pipelines, train, eval) live in top-level folders of the
repository and install as ``headcam.<name>``; this package holds only what all of them share.
"""

__version__ = "0.1.0"
