"""Objectives against loop-by-loop float64 references, and "a few steps lower the loss"."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from headcam.train.losses.moco import KeyQueue, MoCoLoss
from headcam.train.losses.ntxent import NTXentLoss
from headcam.train.losses.temporal import TemporalClassificationLoss


def ntxent_reference(z: np.ndarray, tau: float) -> float:
    """SimCLR Algorithm 1 generalised to V views, written as loops in float64 (z: V x N x D)."""
    n_views, n, _ = z.shape
    emb = [(v, i, z[v, i] / np.linalg.norm(z[v, i])) for i in range(n) for v in range(n_views)]
    total = 0.0
    for v, i, a in emb:
        denom = sum(math.exp(a @ b / tau) for w, j, b in emb if (w, j) != (v, i))
        terms = [-math.log(math.exp(a @ b / tau) / denom) for w, j, b in emb if j == i and w != v]
        total += sum(terms) / len(terms)
    return total / len(emb)


@pytest.mark.parametrize("n_views", [2, 3])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_ntxent_matches_float64_reference(n_views, tau):
    rng = np.random.default_rng(n_views)
    z = rng.normal(size=(n_views, 5, 7))
    got = NTXentLoss(tau)(torch.from_numpy(z)).item()
    assert got == pytest.approx(ntxent_reference(z, tau), rel=1e-5)


def test_ntxent_two_views_is_simclr_cross_entropy():
    """With V=2, the loss is cross-entropy with the partner as target over the other 2N-1 embeddings."""
    torch.manual_seed(0)
    z = torch.randn(2, 6, 16, dtype=torch.float64)
    a = F.normalize(torch.cat([z[0], z[1]]), dim=1)
    logits = a @ a.T / 0.2
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(6, 12), torch.arange(0, 6)])
    assert NTXentLoss(0.2)(z).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)


def test_ntxent_rejects_bad_input():
    with pytest.raises(ValueError):
        NTXentLoss(0.0)
    with pytest.raises(ValueError):
        NTXentLoss(0.1)(torch.randn(1, 4, 8))


def _descends(loss_fn, params, steps=20, lr=0.1) -> tuple[float, float]:
    opt = torch.optim.SGD(params, lr=lr)
    first = last = None
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        last = loss.item()
    return first, last


def test_ntxent_descends():
    torch.manual_seed(0)
    z = torch.randn(3, 8, 16, requires_grad=True)
    first, last = _descends(lambda: NTXentLoss(0.2)(z), [z], steps=30, lr=5.0)
    assert last < 0.8 * first


def test_moco_loss_matches_reference_and_descends():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=1)
    k = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=1)
    queue = F.normalize(torch.randn(16, 8, dtype=torch.float64), dim=1)
    ref = 0.0
    for i in range(4):
        pos = math.exp(float(q[i] @ k[i]) / 0.2)
        neg = sum(math.exp(float(q[i] @ queue[j]) / 0.2) for j in range(16))
        ref += -math.log(pos / (pos + neg)) / 4
    assert MoCoLoss(0.2)(q, k, queue).item() == pytest.approx(ref, rel=1e-9)
    raw = torch.randn(4, 8, requires_grad=True)
    first, last = _descends(lambda: MoCoLoss(0.2)(F.normalize(raw, dim=1), k.float(), queue.float()), [raw],
                            steps=30, lr=2.0)
    assert last < 0.5 * first


def test_temporal_loss_descends():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    first, last = _descends(lambda: TemporalClassificationLoss()(logits, labels), [logits], lr=1.0)
    assert last < 0.5 * first


def test_key_queue_wraps_and_keeps_order():
    q = KeyQueue(dim=3, size=6)
    before = q.keys.clone()
    a, b, c = (torch.full((2, 3), float(v)) for v in (1, 2, 3))
    q.enqueue(a)
    assert int(q.ptr) == 2 and torch.equal(q.keys[:2], a) and torch.equal(q.keys[2:], before[2:])
    q.enqueue(b)
    q.enqueue(c)
    assert int(q.ptr) == 0  # wrapped exactly at the end
    assert torch.equal(q.keys, torch.cat([a, b, c]))
    d = torch.full((2, 3), 4.0)
    q.enqueue(d)  # overwrites the oldest (a), nothing else
    assert int(q.ptr) == 2 and torch.equal(q.keys, torch.cat([d, b, c]))
    with pytest.raises(ValueError, match="multiple"):
        q.enqueue(torch.zeros(4, 3))


def test_key_queue_state_round_trips():
    q = KeyQueue(dim=3, size=4, seed=1)
    q.enqueue(torch.ones(2, 3))
    r = KeyQueue(dim=3, size=4, seed=2)
    r.load_state_dict(q.state_dict())
    assert torch.equal(r.keys, q.keys) and int(r.ptr) == 2


def test_byol_loss_matches_the_formula_in_float64():
    from headcam.train.losses.byol import BYOLLoss

    g = torch.Generator().manual_seed(4)
    p = torch.randn(2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    got = BYOLLoss()(p, z)
    want = 0.0
    for a, b in ((0, 1), (1, 0)):  # prediction of view a against the target of view b, then symmetric
        terms = []
        for i in range(5):
            pa, zb = p[a, i].detach().numpy(), z[b, i].detach().numpy()
            cos = pa @ zb / (np.linalg.norm(pa) * np.linalg.norm(zb))
            terms.append(np.sum((pa / np.linalg.norm(pa) - zb / np.linalg.norm(zb)) ** 2))
            assert terms[-1] == pytest.approx(2 - 2 * cos)
        want += np.mean(terms)
    assert got.item() == pytest.approx(want, rel=1e-12)
    got.backward()
    assert z.grad is None or not z.grad.abs().any()  # stop-gradient on the targets
    assert p.grad.abs().sum() > 0
