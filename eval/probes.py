"""Readouts on frozen features: every probe returns class scores, so top-k is computed one way.

- ``adam``: the baby-vision linear probe (Linear layer, Adam lr 5e-4, 100 epochs, batch 1024,
  cross-entropy) on standardised features.
- ``logreg``: exact multinomial logistic regression (sklearn, lbfgs) on standardised features.
- ``svm``: linear SVM (sklearn LinearSVC), the classic readout for HOG features.
- ``knn``: weighted k-nearest neighbours as in InstDisc / DINO: cosine similarity, the k most
  similar training samples vote for their class with weight exp(sim / T).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from headcam.train.knn import knn_votes

PROBES = ("adam", "logreg", "svm", "knn")


@dataclass
class ProbeResult:
    scores: np.ndarray  # n_test x n_classes, higher = more likely
    top1: float  # percent
    top5: float  # percent
    weight: np.ndarray | None = None  # n_classes x D readout on the raw (unstandardised) features
    bias: np.ndarray | None = None


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


def _result(scores: np.ndarray, y_test: np.ndarray, weight=None, bias=None) -> ProbeResult:
    return ProbeResult(scores=scores, top1=topk_accuracy(scores, y_test, 1), top5=topk_accuracy(scores, y_test, 5),
                       weight=weight, bias=bias)


def adam_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, n_classes: int, *,
               epochs: int = 100, lr: float = 5e-4, batch_size: int = 1024, seed: int = 0,
               device: str = "cpu") -> ProbeResult:
    """The original linear probe: Adam on cross-entropy, shuffled minibatches, no weight decay."""
    std = Standardiser.fit(x_train)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(std(x_train)).to(device)
    yt = torch.from_numpy(y_train.astype(np.int64)).to(device)
    torch.manual_seed(seed)
    head = torch.nn.Linear(xt.shape[1], n_classes).to(device)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen).to(device)
        for i in range(0, len(xt), batch_size):
            idx = order[i:i + batch_size]
            loss = torch.nn.functional.cross_entropy(head(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        scores = head(torch.from_numpy(std(x_test)).to(device)).cpu().numpy()
    w, b = std.to_raw(head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy())
    # like the sklearn probes: a class never seen in training is never predicted
    absent = np.bincount(y_train, minlength=n_classes) == 0
    scores[:, absent], b[absent] = -np.inf, -1e9
    return _result(scores, y_test, w, b)


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
