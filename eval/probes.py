"""Readouts on frozen features: every probe returns class scores, so top-k is computed one way.

- ``adam``: the ``headcam`` linear probe (Linear layer, Adam lr 5e-4, 100 epochs, batch 1024,
  cross-entropy) on standardised features; :func:`linear_probe` trains every preset of
  :mod:`headcam.eval.linear_presets` (DINO's SGD + cosine, eminorhan's BatchNorm head, per-epoch views ...).
- ``logreg``: exact multinomial logistic regression (sklearn, lbfgs) on standardised features.
- ``svm``: linear SVM (sklearn LinearSVC), the classic readout for HOG features.
- ``knn``: weighted k-nearest neighbours as in InstDisc / DINO: cosine similarity, the k most
  similar training samples vote for their class with weight exp(sim / T).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from headcam.eval.linear_presets import LINEAR_PRESETS, LinearPreset
from headcam.train.knn import knn_votes

PROBES = ("adam", "logreg", "svm", "knn")


@dataclass
class ProbeResult:
    scores: np.ndarray  # n_test x n_classes, higher = more likely
    top1: float  # percent
    top5: float  # percent
    weight: np.ndarray | None = None  # n_classes x D readout on the raw (unstandardised) features
    bias: np.ndarray | None = None
    per_epoch: list[tuple[float, float]] | None = None  # (top1, top5) after each epoch, where the preset tests each

    def best(self) -> tuple[int, float, float] | None:
        """(epoch, top1, top5) of the best test epoch (the first of equals, as ``max`` over epochs keeps it),
        or None when the probe was tested only after its last epoch."""
        if not self.per_epoch:
            return None
        epoch = max(range(len(self.per_epoch)), key=lambda e: (self.per_epoch[e][0], -e))
        return epoch, *self.per_epoch[epoch]


@dataclass
class Standardiser:
    """Per-feature z-scoring fitted on the training features (constant features stay at 0).

    No absolute floor on the spread: a random-init MobileNetV2 in eval mode gives features of
    ~1e-9, which are still informative once rescaled.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0), std=np.where(std > 0, std, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)

    def to_raw(self, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A readout (w, b) on standardised features as one on raw features (for attention maps)."""
        w_raw = w / self.std
        return w_raw, b - w_raw @ self.mean


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percent of rows whose label is among the k highest scores (k capped at the class count)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(100.0 * np.mean(np.any(top == labels[:, None], axis=1)))


def _result(scores: np.ndarray, y_test: np.ndarray, weight=None, bias=None, per_epoch=None) -> ProbeResult:
    return ProbeResult(scores=scores, top1=topk_accuracy(scores, y_test, 1), top5=topk_accuracy(scores, y_test, 5),
                       weight=weight, bias=bias, per_epoch=per_epoch)


def build_head(dim: int, n_classes: int, *, init: str = "torch", batchnorm: bool = False) -> torch.nn.Module:
    """The readout a preset trains: ``nn.Linear`` (``init``: ``torch`` keeps its own draw, ``normal`` is DINO's
    N(0, 0.01) with bias 0, ``trunc_normal`` MAE's truncated N(0, 0.01) with bias 0), after a parameter-free
    ``BatchNorm1d(eps=1e-6)`` where ``batchnorm`` (eminorhan/mae's linear probe)."""
    linear = torch.nn.Linear(dim, n_classes)
    if init in ("normal", "trunc_normal"):
        with torch.no_grad():
            if init == "normal":
                linear.weight.normal_(mean=0.0, std=0.01)
            else:
                torch.nn.init.trunc_normal_(linear.weight, std=0.01)
            linear.bias.zero_()
    elif init != "torch":
        raise ValueError(f"unknown head init {init!r}")
    if not batchnorm:
        return linear
    return torch.nn.Sequential(torch.nn.BatchNorm1d(dim, affine=False, eps=1e-6), linear)


def build_optimizer(head: torch.nn.Module, preset: LinearPreset, lr: float, epochs: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The preset's optimiser at learning rate ``lr`` (already scaled), and its per-epoch schedule (or None)."""
    if preset.optimizer == "adam":
        opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=preset.weight_decay)
    elif preset.optimizer == "sgd":
        opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=preset.momentum, weight_decay=preset.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {preset.optimizer!r}")
    if preset.schedule == "constant":
        return opt, None
    if preset.schedule == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, eta_min=0)
    raise ValueError(f"unknown schedule {preset.schedule!r}")


def _raw_linear(head: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(w, b) of the head on its input features: a BatchNorm in front is folded in (its running statistics)."""
    linear = head[-1] if isinstance(head, torch.nn.Sequential) else head
    w, b = linear.weight.detach().cpu().numpy(), linear.bias.detach().cpu().numpy()
    if isinstance(head, torch.nn.Sequential):
        bn = head[0]
        spread = np.sqrt(bn.running_var.detach().cpu().double().numpy() + bn.eps)
        w, b = Standardiser(bn.running_mean.detach().cpu().double().numpy(), spread).to_raw(w, b)
    return w, b


EpochFeatures = Callable[[int], tuple[np.ndarray, np.ndarray]]


def linear_probe(x_train: np.ndarray | None, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 n_classes: int, preset: LinearPreset, *, epochs: int, lr: float, batch_size: int, seed: int = 0,
                 device: str = "cpu", train_epoch: EpochFeatures | None = None) -> ProbeResult:
    """Train ``preset``'s head on frozen features with cross-entropy and score ``x_test``.

    Each epoch draws a seeded permutation and steps through it in batches of ``batch_size``, the last one
    partial (the references' samplers). The training features are ``x_train`` every epoch, or
    ``train_epoch(e)`` -> (features, labels) of epoch ``e`` (views recomputed through the frozen trunk).
    ``lr`` is the optimiser's (already scaled) learning rate. Where ``preset.reports_best`` the test
    features are scored after every epoch (``top1_per_epoch``); the returned scores are the final epoch's.
    """
    if preset.standardise and train_epoch is not None:
        raise ValueError("standardisation is fitted on fixed features; per-epoch features are used raw")
    std = Standardiser.fit(x_train) if preset.standardise else None
    prep = std if std is not None else (lambda a: a.astype(np.float32, copy=False))
    gen = torch.Generator().manual_seed(seed)
    fixed = None if train_epoch is not None else (torch.from_numpy(prep(x_train)).to(device),
                                                  torch.from_numpy(y_train.astype(np.int64)).to(device))
    torch.manual_seed(seed)
    head = build_head(x_test.shape[1], n_classes, init=preset.head_init, batchnorm=preset.batchnorm).to(device)
    opt, schedule = build_optimizer(head, preset, lr, epochs)
    xs = torch.from_numpy(prep(x_test)).to(device)
    absent = np.bincount(y_train, minlength=n_classes) == 0  # a class never seen in training is never predicted

    def score() -> np.ndarray:
        head.eval()
        with torch.no_grad():
            out = head(xs).cpu().numpy()
        out[:, absent] = -np.inf
        return out

    per_epoch: list[tuple[float, float]] = []
    scores = None
    for epoch in range(epochs):
        xt, yt = fixed or (torch.from_numpy(a).to(device) for a in _typed(*train_epoch(epoch)))
        head.train()
        order = torch.randperm(len(xt), generator=gen).to(device)
        for i in range(0, len(xt), batch_size):
            idx = order[i:i + batch_size]
            loss = torch.nn.functional.cross_entropy(head(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if schedule is not None:
            schedule.step()
        if preset.reports_best:
            scores = score()
            per_epoch.append((topk_accuracy(scores, y_test, 1), topk_accuracy(scores, y_test, 5)))
    scores = score() if scores is None else scores
    w, b = _raw_linear(head)
    if std is not None:
        w, b = std.to_raw(w, b)
    b[absent] = -1e9
    return _result(scores, y_test, w, b, per_epoch or None)


def _typed(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def adam_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, n_classes: int, *,
               epochs: int = 100, lr: float = 5e-4, batch_size: int = 1024, seed: int = 0,
               device: str = "cpu") -> ProbeResult:
    """The original linear probe (the ``headcam`` preset): Adam on cross-entropy over standardised features,
    shuffled minibatches, no weight decay."""
    return linear_probe(x_train, y_train, x_test, y_test, n_classes, LINEAR_PRESETS["headcam"], epochs=epochs,
                        lr=lr, batch_size=batch_size, seed=seed, device=device)


def _full_scores(partial: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """sklearn scores cover only classes seen in training; absent classes get -inf."""
    if partial.ndim == 1:  # binary decision_function: score of classes[1]
        partial = np.stack([-partial, partial], axis=1)
    full = np.full((partial.shape[0], n_classes), -np.inf, dtype=np.float64)
    full[:, classes] = partial
    return full


def _raw_readout(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, n_classes: int,
                 std: Standardiser) -> tuple[np.ndarray, np.ndarray]:
    if coef.shape[0] == 1:  # binary: one row for classes[1]
        coef, intercept = np.concatenate([-coef, coef]), np.concatenate([-intercept, intercept])
    w = np.zeros((n_classes, coef.shape[1]), dtype=np.float64)
    b = np.full(n_classes, -1e9)
    w[classes], b[classes] = coef, intercept
    return std.to_raw(w, b)


def sklearn_probe(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  n_classes: int, *, seed: int = 0, max_iter: int = 1000) -> ProbeResult:
    """``logreg`` (multinomial, lbfgs) or ``svm`` (LinearSVC, one-vs-rest) on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    std = Standardiser.fit(x_train)
    if kind == "logreg":
        clf = LogisticRegression(solver="lbfgs", max_iter=max_iter, random_state=seed)
    elif kind == "svm":
        clf = LinearSVC(C=1.0, max_iter=max_iter * 5, random_state=seed)
    else:
        raise ValueError(f"unknown sklearn probe {kind!r}")
    clf.fit(std(x_train), y_train)
    scores = _full_scores(clf.decision_function(std(x_test)), clf.classes_, n_classes)
    w, b = _raw_readout(clf.coef_, np.atleast_1d(clf.intercept_), clf.classes_, n_classes, std)
    return _result(scores, y_test, w, b)


def knn_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, n_classes: int, *,
              k: int = 20, temperature: float = 0.07, chunk: int = 1024, device: str = "cpu") -> ProbeResult:
    """Temperature-weighted cosine kNN (:func:`headcam.train.knn.knn_votes`); scores are the summed votes."""
    def tensor(a: np.ndarray, dtype: np.dtype) -> torch.Tensor:
        return torch.from_numpy(a.astype(dtype)).to(device)

    scores = knn_votes(tensor(x_train, np.float32), tensor(y_train, np.int64), tensor(x_test, np.float32), n_classes,
                       k=k, temperature=temperature, chunk=chunk)
    return _result(scores.cpu().numpy(), y_test)


def run_probe(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              n_classes: int, *, epochs: int = 100, lr: float = 5e-4, batch_size: int = 1024, k: int = 20,
              temperature: float = 0.07, seed: int = 0, device: str = "cpu") -> ProbeResult:
    """Dispatch on the probe name (one of :data:`PROBES`)."""
    if kind == "adam":
        return adam_probe(x_train, y_train, x_test, y_test, n_classes, epochs=epochs, lr=lr, batch_size=batch_size,
                          seed=seed, device=device)
    if kind in ("logreg", "svm"):
        return sklearn_probe(kind, x_train, y_train, x_test, y_test, n_classes, seed=seed)
    if kind == "knn":
        return knn_probe(x_train, y_train, x_test, y_test, n_classes, k=k, temperature=temperature, device=device)
    raise ValueError(f"unknown probe {kind!r}; one of {', '.join(PROBES)}")
