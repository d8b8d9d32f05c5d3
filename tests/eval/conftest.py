"""Eval tests run single-threaded: their tensors are tiny, and intra-op threads on a busy machine
(teammates' tests in parallel) made tiny Adam steps ~20x slower through spin-waiting."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
