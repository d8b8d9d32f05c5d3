"""Temperature-weighted cosine kNN votes (Wu et al. 2018; the monitor of InstDisc, DINO and solo-learn).

One implementation for the trainer's online monitor (:mod:`headcam.train.monitor`) and
``headcam-eval knn`` (:func:`headcam.eval.probes.knn_probe`): for each query, the k most
cosine-similar bank features vote for their label with weight exp(sim / T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_votes(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, n_classes: int, *,
              k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Summed votes per class, (n_queries, n_classes). Shape: ``bank`` (N, D), ``bank_labels`` (N,) int64 in
    [0, n_classes), ``queries`` (M, D); features need not be normalised."""
    if temperature <= 0:
        raise ValueError(f"kNN temperature must be > 0, got {temperature}")
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, len(bank))
    out = []
    for i in range(0, len(queries), chunk):
        q = F.normalize(queries[i:i + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), n_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        out.append(votes)
    return torch.cat(out) if out else torch.zeros(0, n_classes, device=bank.device)
