"""Checkpoint files of ``headcam-train``: one ``torch.save``d dict, written atomically.

Format (version 1). Keys every consumer may rely on:

=================  ==========================================================================
``format``         ``"headcam-checkpoint"``
``version``        ``1``
``arch``           backbone name for ``headcam.train.backbones.build_backbone``
``small_stem``     bool, the ``small_stem`` argument of ``build_backbone``
``feat_dim``       int, size of the trunk's pooled features
``backbone``       ``state_dict`` of the trunk that ``build_backbone(arch, small_stem)`` returns
                   (plain keys, no ``module.`` prefix): the network the method's registry entry names
                   (``MethodEntry.trunk``: MoCo's query encoder, BYOL's online encoder, DINO's teacher)
``method``         a name of :mod:`headcam.train.registry` (``headcam-train --help`` lists them)
``config``         the resolved training config as a plain dict (includes the seed)
``step``           optimiser steps taken
``n_classes``      int for a method that needs labels (``tc``: segments), else None
``head``           ``state_dict`` of the method's ``classifier`` where its entry says ``head=True``
                   (``tc``: ``nn.Linear(feat_dim, n_classes)``), else None
=================  ==========================================================================

Loading a trunk needs no trainer code::

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    trunk, dim = build_backbone(ckpt["arch"], ckpt["small_stem"])
    trunk.load_state_dict(ckpt["backbone"])

Trainer-only keys (for ``resume=auto``): ``model`` (the whole method: heads, MoCo key encoder
and queue), ``optimizer``, ``scheduler``, ``scaler`` (the fp16 GradScaler's ``state_dict``: loss scale and
clean steps since it last grew; ``{}`` for fp32 and bf16 runs, absent from older files), ``data``
(``{"epoch", "batches"}``: batches of that epoch already consumed, for
``loader.set_epoch(epoch, skip_batches)``), ``rng`` (torch CPU/CUDA, numpy and ``random`` states of rank 0),
``world`` (number of ranks that wrote it).

Writes go to a temporary name in the same directory, are fsynced and renamed over the old
file, so a kill at any moment leaves the previous complete checkpoint or the new one.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from headcam.shards.atomic import atomic_open
from headcam.train import registry

FORMAT = "headcam-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"


class CheckpointError(Exception):
    """The file is not a headcam checkpoint this code can read."""


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values, so the file loads with ``weights_only=True``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                       has_gauss, gauss], "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(model: nn.Module, *, arch: str, small_stem: bool, feat_dim: int, method: str,
                    config: dict[str, Any], step: int, n_classes: int | None, optimizer: torch.optim.Optimizer,
                    scheduler: Any, epoch: int, batches: int, world: int,
                    scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (an unwrapped method from :mod:`headcam.train.methods`), which stores
    what its registry entry declares."""
    entry = registry.entry(method)
    head = model.classifier.state_dict() if entry.head else None
    return {
        "format": FORMAT, "version": VERSION, "arch": arch, "small_stem": small_stem, "feat_dim": feat_dim,
        "backbone": model.trunk.state_dict(), "method": method, "config": config, "step": step,
        "n_classes": n_classes, "head": head,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "data": {"epoch": epoch, "batches": batches}, "rng": rng_state(), "world": world,
    }


def save(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temp file, fsync, rename)."""
    with atomic_open(path, "wb") as f:
        torch.save(ckpt, f)


def read(path: str | Path) -> Any:
    """Any torch checkpoint file on the CPU, with safe loading only (``weights_only=True``: tensors, plain
    containers and ``argparse.Namespace``). There is no fall-back to full unpickling: it can run code."""
    try:
        # The one class allowed beyond tensors and containers: DINO / MAE training files (the
        # silicon-menagerie zoo) pickle their command line as an argparse.Namespace.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if unsafe is None:
            raise CheckpointError(f"cannot read checkpoint {path}: not a torch checkpoint file") from None
        raise CheckpointError(f"{path}: refused by safe loading (weights_only=True): it pickles {unsafe.group(1)}, "
                              "not only tensors and plain containers") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a checkpoint file, read in 1 MiB blocks: a model's identity in reports and model cards."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_headcam(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def check(obj: Any, path: str | Path) -> dict[str, Any]:
    """``obj`` if it is a headcam checkpoint of a version this code reads, else a CheckpointError saying why."""
    if not is_headcam(obj):
        raise CheckpointError(f"{path} is not a headcam checkpoint")
    version = obj.get("version")
    if isinstance(version, int) and version > VERSION:
        raise CheckpointError(f"{path}: written by a newer headcam (checkpoint version {version}); this code "
                              f"reads version {VERSION}: upgrade headcam to use it")
    if version != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version!r}, this code reads {VERSION}")
    return obj


def load(path: str | Path) -> dict[str, Any]:
    """Read and check a headcam checkpoint (on CPU)."""
    return check(read(path), path)


#: Start of a zip archive: what ``torch.save`` writes since torch 1.6.
ZIP_MAGIC = b"PK\x03\x04"


def not_torch_file(path: Path) -> str | None:
    """Why ``path`` is not a file ``torch.save`` wrote, or None. It wrote a zip archive holding ``*/data.pkl``
    (torch >= 1.6) or, before, a pickle that starts with torch's magic number. Anything else never reaches
    torch's unpickler, which fails on a text file with an arbitrary error (``KeyError: 101``)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            return f"a damaged zip archive ({e})"
        return None if any(n.endswith("/data.pkl") for n in names) else "a zip archive without data.pkl"
    legacy = tuple(pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=p) for p in range(2, 6))
    return None if head.startswith(legacy) else "neither a zip archive nor a legacy torch.save file"
