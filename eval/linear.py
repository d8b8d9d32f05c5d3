"""A linear probe of one model under one protocol, trained the way a preset of :mod:`~headcam.eval.linear_presets`
says: the loop ``headcam-eval linear`` runs once per ``--model``.

Per model, the preset decides the ViT features (DINO's by size), the trunk's precision, and where the
training features come from: the cached eval-view features (``headcam``, ``baby-vision``) or, every epoch,
random views of every training sample through the frozen trunk (``dino``, ``eminorhan``:
:func:`~headcam.eval.features.view_features`). The test features are the eval view's, extracted once (cached),
since the trunk is frozen and the view fixed; the head is scored on them after every epoch where the
reference reports its best epoch, and always after the last.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from headcam.eval.decode import DecodeOptions, DecodeResult, result_row, source_features
from headcam.eval.features import Features, view_features, with_precision
from headcam.eval.linear_presets import LinearPreset
from headcam.eval.models import EvalModel
from headcam.eval.probes import linear_probe
from headcam.eval.protocols import Plan, Source


@dataclass(frozen=True)
class ProbeRun:
    """What one run of a preset resolved to, besides the preset: the values the command line may change."""

    epochs: int
    lr: float  # before the preset's batch scaling
    batch_size: int

    def effective_lr(self, preset: LinearPreset) -> float:
        return preset.effective_lr(self.lr, self.batch_size)


def with_vit_features(model: EvalModel, features: str) -> EvalModel:
    """A ViT ``model`` (loaded with its plain CLS feature) reading ``features`` instead, named in its identity
    as :func:`headcam.eval.models.load_model` names them, so cached features are shared with ``--vit-features``."""
    from headcam.train.backbones import VITS, VitProbeFeatures, parse_vit_features

    if model.arch not in VITS or features == "cls":
        return model
    trunk = VitProbeFeatures(model.trunk, *parse_vit_features(features))
    return dataclasses.replace(model, trunk=trunk, feat_dim=trunk.dim,
                               identity=f"{model.identity}:vit-features={features}")


def trained_by(model: EvalModel) -> str | None:
    """The method that trained the trunk: a headcam checkpoint's ``method``, a published file's layout."""
    return model.source.get("method") or model.source.get("format")


def prepare_model(model: EvalModel, preset: LinearPreset, asked_vit_features: str) -> tuple[EvalModel, str]:
    """``model`` as ``preset`` reads it (ViT features, precision), and the ViT features it reads."""
    features = preset.vit_features_for(model.arch, asked_vit_features)
    if features != asked_vit_features:  # the model was loaded with the asked (plain CLS) features
        model = with_vit_features(model, features)
    return with_precision(model, preset.precision), features


def _epoch_views(model: EvalModel, src: Source, preset: LinearPreset, opts: DecodeOptions):
    """``epoch -> (features, labels)`` of the training samples' random views, and epoch 0's :class:`Features`."""
    from headcam.pipelines.spec import resolve_spec

    spec = resolve_spec(preset.views[0], list(preset.views[1]))

    def epoch_features(epoch: int) -> Features:
        got = view_features(model, src.dataset, src.splits, src.keys, spec=spec, epoch=epoch, size=opts.size,
                            batch_size=opts.batch_size, workers=opts.workers, device=opts.device, seed=opts.seed)
        if src.label_map is not None:
            got.labels = src.label_map[got.labels]
        return got

    first = epoch_features(0)

    def train_epoch(epoch: int) -> tuple[np.ndarray, np.ndarray]:
        got = first if epoch == 0 else epoch_features(epoch)
        return got.feats, got.labels

    return train_epoch, first


def linear_decode(model: EvalModel, plan: Plan, opts: DecodeOptions, preset: LinearPreset, run: ProbeRun
                  ) -> DecodeResult:
    """Train ``preset``'s probe on ``model`` (already prepared by :func:`prepare_model`) over ``plan``; the eval
    view (test side, and the train side without ``views``) resizes with the preset's ``test_interpolation``."""
    opts = dataclasses.replace(opts, interpolation=preset.test_interpolation)
    t0 = time.perf_counter()
    test = source_features(model, plan.test, opts)
    if preset.views is None:
        train, train_epoch = source_features(model, plan.train, opts), None
    else:
        train_epoch, train = _epoch_views(model, plan.train, preset, opts)
    t_feat = time.perf_counter() - t0
    res = linear_probe(train.feats if train_epoch is None else None, train.labels, test.feats, test.labels,
                       plan.n_classes, preset, epochs=run.epochs, lr=run.effective_lr(preset),
                       batch_size=run.batch_size, seed=opts.seed, device=opts.device, train_epoch=train_epoch)
    row = result_row(model, plan, preset.probe_label or preset.name, res, train, test, feature_seconds=t_feat,
                     probe_seconds=time.perf_counter() - t0 - t_feat)
    row.update(recipe=preset.name, epochs=run.epochs, lr=run.effective_lr(preset))
    best = res.best()
    if best is not None:
        row.update(best_epoch=best[0] + 1, best_top1=round(best[1], 2), best_top5=round(best[2], 2),
                   top1_per_epoch=[round(t1, 2) for t1, _ in res.per_epoch])
    return DecodeResult(row=row, probe=res, y_test=test.labels, stats=row["loader_stats"])


__all__ = ["ProbeRun", "linear_decode", "prepare_model", "trained_by", "with_vit_features"]
