"""The DALI pipeline definition (STYLE.md practice 5: the augmentation lives in one function,
:func:`headcam.pipelines.dali.ops.view`, that the pipeline def calls once per view).

One ``@pipeline_def`` serves every recipe family because the spec, not the def, picks the ops:
``simclr``/``mocov2``/``babyvision_tc`` (random resized crops, foveation on CPU or GPU,
magnification on GPU) and ``eval`` (centre crop of ``resize_ratio`` of the short side, resized).

Both read the shards with ``fn.readers.webdataset`` (the ``.idx`` beside each tar, int64 labels
from the ``lbl`` member, DALI's own ``shard_id``/``num_shards`` split by rank), named ``"Reader"``.
Outputs: views..., label, then each view's parameters in :func:`param_names` order.
"""

from __future__ import annotations

import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

from headcam.pipelines.dali import ops
from headcam.pipelines.spec import AugmentSpec


def read(paths: list[str], index_paths: list[str], shard_id: int, num_shards: int, shuffle_buffer: int,
         train: bool) -> tuple:
    jpegs, labels = fn.readers.webdataset(
        paths=paths, index_paths=index_paths, ext=["jpg", "lbl"], dtypes=[types.UINT8, types.INT64],
        missing_component_behavior="error", shard_id=shard_id, num_shards=num_shards,
        random_shuffle=train and shuffle_buffer > 1, initial_fill=max(shuffle_buffer, 1),
        pad_last_batch=not train, name="Reader")
    return jpegs, fn.reshape(labels, shape=[])


def param_names(spec: AugmentSpec) -> list[str]:
    names = ["window", "brightness", "contrast", "saturation", "hue", "gray", "jitter_on", "flip"]
    if spec.blur.p > 0 and not spec.foveation.enabled:
        names.append("blur_sigma")
    if spec.needs_fixation:
        names += ["fix_row", "fix_col"]
    if spec.foveation.enabled:
        names.append("fovea_area")
    if spec.magnification.enabled:
        names.append("cover_ratio")
    return names


def _views(jpegs, spec: AugmentSpec, size: int, n_views: int, gpu: bool) -> tuple[list, list]:
    views, params = [], []
    for _ in range(n_views):
        v, p = ops.view(jpegs, spec, size, gpu)
        views.append(v)
        params += [p[name] for name in param_names(spec)]
    return views, params


@pipeline_def(enable_conditionals=False)
def views_pipeline(paths, index_paths, spec, size, n_views, shard_id, num_shards, shuffle_buffer, train, gpu):
    """Every recipe family: the spec selects the ops (random resized crop or centre crop; blur or
    foveation; magnification replacing the crop), exactly as the torch backend reads it."""
    jpegs, labels = read(paths, index_paths, shard_id, num_shards, shuffle_buffer, train)
    views, params = _views(jpegs, spec, size, n_views, gpu)
    return (*views, labels.gpu() if gpu else labels, *params)
