"""The DALI pipeline definition (STYLE.md practice 5: the augmentation lives in one function,
:func:`headcam.pipelines.dali.ops.view`, that the pipeline def calls once per view).

One ``@pipeline_def`` serves every recipe family because the spec, not the def, picks the ops:
``simclr``/``mocov2``/``babyvision_tc`` (random resized crops, foveation on CPU or GPU,
magnification on GPU) and ``eval`` (centre crop of ``resize_ratio`` of the short side, resized).

It reads the shards with ``fn.readers.webdataset`` (the ``.idx`` beside each tar, int64 labels
from the ``lbl`` member, the ``json`` member as bytes, DALI's own ``shard_id``/``num_shards``
split by rank), named ``"Reader"``. On CPU each JPEG is decoded once and every view resizes its
own region of it; on GPU each view decodes only its region (nvJPEG ROI decoding).

Views are the shared :func:`~headcam.pipelines.params.view_plans`: ``n_views`` global views at ``size``,
then the spec's local crops at their own side (each view its own crop scale and probabilities).
Outputs (:func:`output_names`): ``view0 .. view{n-1}`` (every view), ``label``, ``json`` (KEY.json bytes),
``source`` (DALI's ``source_info``: ``shard.tar:offset:KEY.jpg``), then, only when ``record``,
each view's parameters (:data:`ops.PARAMS`) and fixations.
"""

from __future__ import annotations

import nvidia.dali.fn as fn
import nvidia.dali.types as types
from nvidia.dali import pipeline_def

from headcam.pipelines.dali import ops
from headcam.pipelines.params import ViewPlan, view_plans
from headcam.pipelines.spec import AugmentSpec


def read(paths: list[str], index_paths: list[str], shard_id: int, num_shards: int, shuffle_buffer: int,
         train: bool) -> tuple:
    jpegs, labels, meta = fn.readers.webdataset(
        paths=paths, index_paths=index_paths, ext=["jpg", "lbl", "json"],
        dtypes=[types.UINT8, types.INT64, types.UINT8], missing_component_behavior="error", shard_id=shard_id,
        num_shards=num_shards, random_shuffle=train and shuffle_buffer > 1, initial_fill=max(shuffle_buffer, 1),
        pad_last_batch=not train, name="Reader")
    return jpegs, fn.reshape(labels, shape=[]), meta


def recorded_names(spec: AugmentSpec) -> list[str]:
    """The per-view outputs of a recording pipeline: the parameters, then the fixations if the recipe has them."""
    return list(ops.PARAMS) + (["fixations"] if spec.needs_fixation else [])


def output_names(plans: list[ViewPlan], record: bool) -> list[str]:
    names = [f"view{i}" for i in range(len(plans))] + ["label", "json", "source"]
    if record:
        names += [f"{name}{i}" for i, plan in enumerate(plans) for name in recorded_names(plan.spec)]
    return names


@pipeline_def(enable_conditionals=True)
def views_pipeline(paths, index_paths, spec, size, n_views, shard_id, num_shards, shuffle_buffer, train, gpu, record):
    """Every recipe family: the spec selects the ops (random resized crop or centre crop; blur or
    foveation; solarisation; magnification replacing the crop; local crops), exactly as the torch backend
    reads it."""
    jpegs, labels, meta = read(paths, index_paths, shard_id, num_shards, shuffle_buffer, train)
    source_info = fn.get_property(jpegs, key="source_info")
    shape = fn.peek_image_shape(jpegs)
    source = jpegs if gpu else fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
    views, records = [], []
    for plan in view_plans(spec, size, n_views):
        p = ops.draw(plan.spec, shape)
        view, fixations = ops.view(source, p, plan.spec, plan.size, gpu)
        views.append(view)
        if record:
            records += [p[name] for name in ops.PARAMS] + ([fixations] if fixations is not None else [])
    return (*views, labels.gpu() if gpu else labels, meta, source_info, *records)
