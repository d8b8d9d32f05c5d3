"""The online kNN monitor: how well the trunk being trained separates a fixed labelled set, every N steps.

What solo-learn and DINO users watch while a self-supervised run goes: the trunk that the
checkpoint will hold (``model.trunk``: DINO's teacher, MoCo's query encoder) embeds a fixed bank
and a fixed query set in eval mode, and a weighted cosine kNN (k = 20, T = 0.07;
:func:`headcam.train.knn.knn_votes`) scores the queries. ``knn_top1`` goes to ``metrics.jsonl``
and TensorBoard.

- **Fixed and bounded**: the first ``max_bank`` labelled samples of ``bank_split`` and the first
  ``max_query`` of ``query_split``, in shard order, with the ``eval`` recipe; the cost is measured
  on the first evaluation and printed.
- **Invisible to training**: the torch, NumPy and ``random`` states are saved before and restored
  after (a DataLoader draws its base seed from torch's global generator), and the trunk goes
  back to train mode; so a monitored run trains exactly like an unmonitored one, and a resumed
  run logs the same values as an unbroken one (the values depend only on the weights).
- Rank 0 only; the others wait for it at the next collective.
"""

from __future__ import annotations

import sys
import time

import pyarrow.compute as pc
import torch

from headcam.console import UsageError
from headcam.pipelines.loader import LoaderConfig, build_loader
from headcam.shards.dataset import DatasetError, open_dataset
from headcam.train import checkpoint
from headcam.train.config import MonitorConfig
from headcam.train.knn import knn_votes


class KnnMonitor:
    def __init__(self, cfg: MonitorConfig, size: int, device: torch.device):
        self.cfg, self.size, self.device = cfg, size, device
        try:
            self.dataset = open_dataset(cfg.data)
        except DatasetError as e:
            raise UsageError(f"monitor.data: {e}") from None
        for split in (cfg.bank_split, cfg.query_split):
            if split not in self.dataset.splits:
                raise UsageError(f"monitor: {cfg.data} has no split '{split}' "
                                 f"(splits: {', '.join(self.dataset.splits)})")
        top = pc.max(self.dataset.manifest.column("label")).as_py()
        if top is None or top < 0:
            raise UsageError(f"monitor: {cfg.data} has no labels; the kNN monitor needs a labelled dataset")
        self.n_classes = self.dataset.n_classes or int(top) + 1
        self.cost_s: float | None = None

    def _features(self, trunk: torch.nn.Module, split: str, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
        loader = build_loader(self.dataset, split, LoaderConfig.for_eval(size=self.size, batch_size=self.cfg.batch_size,
                                                                         device=str(self.device)))
        feats, labels, have = [], [], 0
        for batch in loader:
            keep = batch.label >= 0
            feats.append(trunk(batch.views[0][keep].to(self.device)).float())
            labels.append(batch.label[keep].to(self.device))
            have += int(keep.sum())
            if have >= cap:
                break
        return torch.cat(feats)[:cap], torch.cat(labels)[:cap]

    @torch.no_grad()
    def evaluate(self, trunk: torch.nn.Module) -> dict[str, float]:
        """``knn_top1`` (percent) of the query set and the seconds it took; training state untouched."""
        t0 = time.perf_counter()
        rng, was_training = checkpoint.rng_state(), trunk.training
        trunk.eval()
        try:
            bank, bank_y = self._features(trunk, self.cfg.bank_split, self.cfg.max_bank)
            queries, query_y = self._features(trunk, self.cfg.query_split, self.cfg.max_query)
            votes = knn_votes(bank, bank_y, queries, self.n_classes, k=self.cfg.k, temperature=self.cfg.T)
            top1 = float((votes.argmax(dim=1) == query_y).float().mean()) * 100
        finally:
            trunk.train(was_training)
            checkpoint.restore_rng(rng)
        seconds = time.perf_counter() - t0
        if self.cost_s is None:
            self.cost_s = seconds
            print(f"kNN monitor: {len(bank)} bank ({self.cfg.bank_split}) + {len(queries)} query "
                  f"({self.cfg.query_split}) images of {self.cfg.data}, k={self.cfg.k}, every {self.cfg.every} "
                  f"steps: {seconds:.1f} s per evaluation", file=sys.stderr, flush=True)
        return {"knn_top1": top1, "knn_seconds": seconds}


def open_monitor(cfg: MonitorConfig, size: int, device: torch.device) -> KnnMonitor | None:
    return KnnMonitor(cfg, size, device) if cfg.enabled else None
