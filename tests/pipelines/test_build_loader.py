"""build_loader (torch backend): the Batch contract, ranks, seeds, resume, temporal pairs, bad input."""

from __future__ import annotations

import dataclasses
import io
import shutil

import numpy as np
import pytest
import torch
from loader_configs import config
from PIL import Image

from headcam.console import UsageError
from headcam.pipelines.loader import Batch, LoaderConfig, build_loader
from headcam.pipelines.spec import recipe_spec, resolve_spec
from headcam.shards.dataset import open_dataset
from headcam.shards.writer import Sample, write_shard

SIZE = 32


def _epoch(loader) -> list[Batch]:
    return list(loader)


@pytest.mark.parametrize("n_views", [1, 2, 3])
def test_batch_contract(tiny_dataset, n_views):
    loader = build_loader(tiny_dataset, "train", config("simclr", batch_size=4, n_views=n_views, size=SIZE))
    batches = _epoch(loader)
    assert len(batches) == len(loader) > 0
    b = batches[0]
    assert len(b.views) == n_views
    for v in b.views:
        assert v.shape == (4, 3, SIZE, SIZE) and v.dtype == torch.float32
        assert v.min() < -1 and v.max() > 1  # normalised (ImageNet mean/std), not [0, 1]
    assert b.label.dtype == torch.int64 and b.label.shape == (4,)
    assert len(b.keys) == 4 and len(set(b.keys)) == 4
    assert b.meta.backend == "torch" and len(b.meta.samples) == 4 and b.meta.partner_keys is None
    assert b.meta.views is None  # recorded only when asked (record_views=True)
    if n_views > 1:
        assert not torch.equal(b.views[0], b.views[1])  # views are augmented independently


def test_same_seed_same_batches_other_seed_differs(tiny_dataset):
    def run(seed):
        return _epoch(build_loader(tiny_dataset, "train", config("mocov2", batch_size=4, n_views=2, size=SIZE,
                                                                 seed=seed)))

    a, b, c = run(1), run(1), run(2)
    assert [x.keys for x in a] == [x.keys for x in b]
    assert all(torch.equal(x.views[1], y.views[1]) for x, y in zip(a, b, strict=True))
    assert [x.keys for x in a] != [x.keys for x in c]


def test_two_ranks_equal_steps_disjoint_samples(tiny_dataset):
    loaders = [build_loader(tiny_dataset, "train", config("simclr", batch_size=2, size=SIZE, rank=r, world=2))
               for r in (0, 1)]
    assert len(loaders[0]) == len(loaders[1]) > 0
    keys = [{k for b in _epoch(ld) for k in b.keys} for ld in loaders]
    assert len(_epoch(loaders[0])) == len(loaders[0])
    assert not keys[0] & keys[1]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_resume_with_skip_batches_repeats_the_tail(tiny_dataset, workers):
    loader = build_loader(tiny_dataset, "train", config("simclr", batch_size=2, size=SIZE, workers=workers, seed=3))
    loader.set_epoch(1)
    full = _epoch(loader)
    assert [b.meta.step for b in full] == list(range(len(full)))
    for skip in (3, 4):  # 2 workers: the resumed DataLoader's worker 0 plays slot 1, then slot 0
        loader.set_epoch(1, skip_batches=skip)
        tail = _epoch(loader)
        assert [b.keys for b in tail] == [b.keys for b in full[skip:]]
        assert all(torch.equal(x.views[0], y.views[0]) for x, y in zip(tail, full[skip:], strict=True))
        assert [b.meta.step for b in tail] == list(range(skip, len(full)))


def test_views_finished_in_the_main_process_are_the_same(tiny_dataset):
    """The CUDA path without a GPU: uint8 crops cross to the main process and are finished there."""
    def run(in_worker: bool) -> list[Batch]:
        loader = build_loader(tiny_dataset, "train", config("simclr", {"foveation": {"enabled": True}}, batch_size=4,
                                                            n_views=2, size=SIZE, workers=1, record_views=True))
        loader.batches.finish_in_worker = in_worker
        return _epoch(loader)

    for a, b in zip(run(True), run(False), strict=True):
        assert a.keys == b.keys and a.meta.step == b.meta.step
        assert all(torch.equal(x, y) for x, y in zip(a.views, b.views, strict=True))
        for x, y in zip(a.meta.views, b.meta.views, strict=True):
            assert x.fixations.shape == (4, 2) and torch.equal(x.fixations, y.fixations)
            assert x.params.keys() == y.params.keys() and torch.equal(x.params["box"], y.params["box"])


def test_eval_every_sample_once_in_fixed_order(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    loader = build_loader(ds, "train", config("eval", batch_size=4, size=SIZE, train=False, workers=2))
    first, second = _epoch(loader), _epoch(loader)
    keys = [k for b in first for k in b.keys]
    assert sorted(keys) == _split_keys(ds, "train")
    assert len(first) == len(loader) and first[-1].label.shape[0] == len(keys) - 4 * (len(first) - 1)
    one_worker = build_loader(ds, "train", config("eval", batch_size=4, size=SIZE, train=False, workers=0))
    assert [k for b in one_worker for k in b.keys] == keys  # the order does not depend on the worker count
    assert keys == [k for b in second for k in b.keys]
    assert torch.equal(first[0].views[0], second[0].views[0])


def _split_keys(ds, split):
    return sorted(k for k, s in zip(ds.manifest["key"].to_pylist(), ds.manifest["split"].to_pylist(), strict=True)
                  if s == split)


def test_temporal_pairs_come_from_the_same_clip_within_window(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    frame = dict(zip(ds.manifest["key"].to_pylist(), ds.manifest["frame_index"].to_pylist(), strict=True))
    loader = build_loader(ds, "train", config("mocov2", batch_size=3, n_views=2, size=SIZE, temporal_window=1))
    seen = 0
    for b in loader:
        assert len(b.views) == 2
        for q, p, qm, pm in zip(b.keys, b.meta.partner_keys, b.meta.samples, b.meta.partner_samples, strict=True):
            assert qm["clip"] == pm["clip"] and q != p
            # tiny_dataset clips hold every 4th frame's split-mates: positions within ±1 are <= 3 frames apart
            assert abs(frame[q] - frame[p]) <= 3
            seen += 1
    assert seen == 3 * len(loader) > 0


def test_unknown_recipe_and_backend_list_the_valid_ones(tiny_dataset):
    with pytest.raises(UsageError, match="unknown recipe 'simclrr'; valid recipes: simclr, mocov2, .*eval"):
        config("simclrr", batch_size=2)
    with pytest.raises(UsageError, match="valid backends: torch, dali"):
        config("simclr", batch_size=2, backend="jax")
    with pytest.raises(UsageError, match="unknown config key 'jitter.strenght'"):
        config("simclr", ["jitter.strenght=1"], batch_size=2)
    with pytest.raises(UsageError, match="no shards for split"):
        build_loader(tiny_dataset, "nosuch", config("simclr", batch_size=2))


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(size=4), dict(n_views=0), dict(workers=-1),
                                 dict(rank=2, world=2), dict(temporal_window=0, n_views=2), dict(keys=[]),
                                 dict(device="tpu")])
def test_impossible_settings_are_one_line_usage_errors(bad):
    with pytest.raises(UsageError) as e:
        config("simclr", **{"batch_size": 2, **bad})
    assert "\n" not in str(e.value)


def test_loader_config_is_frozen_and_the_recipe_is_its_augment_spec(tiny_dataset):
    spec = resolve_spec("simclr", {"blur": {"p": 0.0}})
    cfg = LoaderConfig(spec, batch_size=4, size=SIZE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 8
    spec.blur.p = 1.0  # the caller's spec changes later: the config keeps what it was given
    assert cfg.augment.blur.p == 0.0 and cfg.augment.recipe == "simclr"
    # one source of truth: a recipe name cannot stand in for the spec, nor ride beside it
    with pytest.raises(TypeError, match="resolved AugmentSpec"):
        LoaderConfig("simclr", batch_size=4)
    with pytest.raises(TypeError, match="takes a LoaderConfig"):
        build_loader(tiny_dataset, "train", "simclr")
    with pytest.raises(TypeError):
        build_loader(tiny_dataset, "train", cfg, augment=spec)
    assert LoaderConfig.for_eval(size=SIZE, batch_size=3).augment == recipe_spec("eval")


@pytest.fixture
def corrupt_dataset(tiny_dataset, tmp_path):
    """tiny_dataset with two samples of train shard 0 replaced by garbage and a truncated JPEG."""
    root = tmp_path / "corrupt"
    shutil.copytree(tiny_dataset, root)
    ds = open_dataset(root)
    shard = ds.shards("train")[0]
    import webdataset as wds

    samples = []
    for i, raw in enumerate(wds.DataPipeline(wds.SimpleShardList([str(shard)]), wds.tarfile_to_samples())):
        jpg = raw["jpg"]
        if i == 0:
            jpg = b"not a jpeg at all"
        elif i == 1:
            jpg = jpg[: len(jpg) // 3]
        samples.append(Sample(key=raw["__key__"], jpg=jpg, label=int(raw["cls"]), saliency_png=raw.get("sal.png")))
    write_shard(shard, samples)
    return root


def test_corrupt_jpegs_are_skipped_and_counted(corrupt_dataset):
    loader = build_loader(corrupt_dataset, "train", config("eval", batch_size=4, size=SIZE, train=False))
    with pytest.warns(UserWarning, match="corrupt"):
        keys = [k for b in loader for k in b.keys]
    assert loader.stats["corrupt"] == 2
    assert len(keys) == open_dataset(corrupt_dataset).count("train") - 2
    train = build_loader(corrupt_dataset, "train", config("simclr", batch_size=4, size=SIZE))
    with pytest.warns(UserWarning, match="corrupt"):
        batches = _epoch(train)
    assert len(batches) == len(train)  # steps stay equal: the skipped samples are replaced
    assert all(b.views[0].shape[0] == 4 for b in batches)


def test_missing_saliency_is_counted(tmp_path, tiny_dataset):
    root = tmp_path / "nosal"
    shutil.copytree(tiny_dataset, root)
    ds = open_dataset(root)
    for shard in ds.shards("val"):
        import webdataset as wds

        raws = list(wds.DataPipeline(wds.SimpleShardList([str(shard)]), wds.tarfile_to_samples()))
        write_shard(shard, [Sample(key=r["__key__"], jpg=r["jpg"], label=int(r["cls"])) for r in raws])
    aug = {"foveation": {"enabled": True}, "fixation": {"mode": "saliency"}}
    loader = build_loader(root, "val", config("eval", batch_size=3, size=SIZE, train=False, augment=aug))
    with pytest.warns(UserWarning, match="no saliency map"):
        n = sum(len(b.keys) for b in loader)
    assert loader.stats["missing_saliency"] == n == ds.count("val")
    strict = build_loader(root, "val", config("eval", dict(aug, fixation={"mode": "saliency", "strict": True}),
                                              batch_size=3, size=SIZE, train=False))
    with pytest.raises(Exception, match="strict"):
        _epoch(strict)


def test_recorded_params_follow_the_recipe(tiny_dataset):
    loader = build_loader(tiny_dataset, "train", config("mocov2", batch_size=9, n_views=2, size=SIZE,
                                                        record_views=True))
    params = [v.params for b in loader for v in b.meta.views]
    area = np.concatenate([(p["box"][:, 2] * p["box"][:, 3]).numpy() for p in params])
    jitter = np.concatenate([p["jitter"].numpy() for p in params])
    assert jitter[:, :3].min() >= 0.6 and jitter[:, :3].max() <= 1.4 and np.abs(jitter[:, 3]).max() <= 0.1
    assert area.min() > 0 and len(area) == 9 * 2 * len(loader)


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


def test_dali_stops_on_a_corrupt_jpeg_with_a_clear_message(corrupt_dataset):
    pytest.importorskip("nvidia.dali")
    loader = build_loader(corrupt_dataset, "train", LoaderConfig.for_eval(size=SIZE, batch_size=4, backend="dali"))
    with pytest.raises(RuntimeError, match="corrupt JPEG stops DALI"):
        list(loader)


def test_key_filter_reads_exactly_its_keys_and_ranks_stay_in_step(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    keys = set(_split_keys(ds, "train")[1::3]) | set(_split_keys(ds, "val")[:2])  # 9 + 2, both splits
    ordered = build_loader(ds, ["train", "val"], LoaderConfig.for_eval(size=SIZE, batch_size=4, keys=keys))
    got = [k for b in ordered for k in b.keys]
    assert sorted(got) == sorted(keys) and len(ordered) == 3
    train = [build_loader(ds, ["train", "val"], config("simclr", batch_size=2, size=SIZE, keys=keys, rank=r, world=2))
             for r in (0, 1)]
    epochs = [_epoch(ld) for ld in train]
    assert len(train[0]) == len(train[1]) == len(epochs[0]) == len(epochs[1]) == 11 // 2 // 2
    seen = [{k for b in e for k in b.keys} for e in epochs]
    assert seen[0] | seen[1] <= keys and not seen[0] & seen[1]


def test_too_many_workers_for_the_shards_use_fewer_and_say_so_in_one_line(tiny_dataset, capsys):
    loader = build_loader(tiny_dataset, "train", config("simclr", batch_size=2, size=SIZE, workers=8, seed=3))
    err = capsys.readouterr().err
    assert err == "headcam: 3 shard(s) for 1 rank(s): using 3 DataLoader workers instead of 8\n"
    assert loader.workers == 3
    batches = _epoch(loader)
    assert len(batches) == len(loader) == 27 // 3 // 2 * 3 and all(b.views[0].shape[0] == 2 for b in batches)
    quiet = build_loader(tiny_dataset, "train", config("simclr", batch_size=2, size=SIZE, workers=3))
    assert quiet.workers == 3 and capsys.readouterr().err == ""
    with pytest.raises(UsageError, match="3 shard\\(s\\) for 4 rank\\(s\\): need at least 4"):
        build_loader(tiny_dataset, "train", config("simclr", batch_size=2, size=SIZE, rank=0, world=4))
