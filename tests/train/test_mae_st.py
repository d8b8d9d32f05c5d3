"""Spatiotemporal MAE (method=mae_st) against float64 loop-by-loop transcriptions of facebookresearch/mae_st
``models_mae.py`` (patchify, random_masking, forward_loss) and eminorhan/mae_st's temporal and centre masks;
then real runs of headcam-train on clips of the shared media: a few steps, and a bitwise-equal resume on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headcam.train.mae import random_masking
from headcam.train.mae_st import clip_loss, mask_noise, patchify, separable_positions, target_frames, unpatchify


def patchify_reference(clips: np.ndarray, p: int, u: int) -> np.ndarray:
    """Tubelet (ti, hi, wi) in (t, h, w) order; inside it frame du, row dy, column dx, channel c."""
    n, c, t, h, w = clips.shape
    out = np.zeros((n, (t // u) * (h // p) * (w // p), u * p * p * c))
    for b in range(n):
        i = 0
        for ti in range(t // u):
            for hi in range(h // p):
                for wi in range(w // p):
                    out[b, i] = [clips[b, ch, ti * u + du, hi * p + dy, wi * p + dx]
                                 for du in range(u) for dy in range(p) for dx in range(p) for ch in range(c)]
                    i += 1
    return out


def masking_reference(noise: np.ndarray, ratio: float) -> np.ndarray:
    """``random_masking``'s mask: per sample, the int(L·(1 − r)) smallest noises are kept (0), the rest masked."""
    n, length = noise.shape
    mask = np.ones((n, length))
    for b in range(n):
        for i in np.argsort(noise[b], kind="stable")[:int(length * (1 - ratio))]:
            mask[b, i] = 0
    return mask


def loss_reference(clips: np.ndarray, pred: np.ndarray, mask: np.ndarray, p: int, u: int, pred_t_dim: int,
                   norm_pix: bool) -> float:
    """``forward_loss``: target frames linspace(0, T-1, pred_t_dim) truncated, per-tubelet MSE, mean over masked."""
    frames = [int(v) for v in np.linspace(0, clips.shape[2] - 1, pred_t_dim)]
    target = patchify_reference(clips[:, :, frames], p, u)
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            if mask[b, i]:
                t = target[b, i]
                if norm_pix:
                    t = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-6)
                total += np.mean((pred[b, i] - t) ** 2)
                count += 1
    return total / count


def test_patchify_and_unpatchify_are_the_references_tubelet_order():
    clips = torch.randn(2, 3, 4, 8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = patchify(clips, 4, 2)
    assert x.shape == (2, 2 * 2 * 3, 2 * 4 * 4 * 3)
    assert np.array_equal(x.numpy(), patchify_reference(clips.numpy(), 4, 2))
    assert torch.equal(unpatchify(x, 4, 2, (2, 2, 3)), clips)


def test_random_masking_keeps_the_smallest_noise_tubelets_and_restores_order():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 32, 5, dtype=torch.float64, generator=g)
    noise = mask_noise("random", 3, 32, g)
    kept, mask, ids_restore = random_masking(x, 0.9, noise)
    want = masking_reference(noise.numpy(), 0.9)
    assert kept.shape == (3, 3, 5) and np.array_equal(mask.numpy(), want)  # int(32 x 0.1) = 3 kept
    for b in range(3):  # the kept tokens, in the order of their noise
        assert torch.equal(kept[b], x[b, torch.argsort(noise[b])[:3]])
    shuffled = torch.gather(torch.cat([kept, torch.zeros(3, 29, 5, dtype=x.dtype)], 1), 1,
                            ids_restore.unsqueeze(-1).expand(-1, -1, 5))
    assert torch.equal(shuffled[mask == 0], x[mask == 0])  # ids_restore puts every kept token back in its place


@pytest.mark.parametrize("length", [32, 16, 36])
def test_temporal_and_centre_masks_are_eminorhans(length):
    keep = int(length * (1 - 0.75))
    _, temporal, _ = random_masking(torch.zeros(2, length, 1), 0.75, mask_noise("temporal", 2, length))
    assert temporal[0].tolist() == [0.0] * keep + [1.0] * (length - keep)  # the last part of the clip is hidden
    # center_masking: noise [0 .. L/2-1, L/2-1 .. 0]; ties (i, L-1-i) go to the earlier tubelet here
    ref = np.concatenate([np.arange(length // 2), np.arange(length // 2 - 1, -1, -1)])
    _, centre, _ = random_masking(torch.zeros(2, length, 1), 0.75, mask_noise("centre", 2, length))
    kept = set(np.nonzero(centre[1].numpy() == 0)[0])
    assert kept == set(np.argsort(ref, kind="stable")[:keep].tolist())
    assert kept == {*range((keep + 1) // 2), *range(length - keep // 2, length)}  # both ends kept, middle hidden


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize(("frames", "pred_t_dim", "u"), [(8, 8, 2), (8, 4, 1), (16, 8, 1)])
def test_loss_is_forward_loss_on_the_masked_tubelets_only(norm_pix, frames, pred_t_dim, u):
    g = torch.Generator().manual_seed(2)
    clips = torch.randn(2, 3, frames, 8, 8, dtype=torch.float64, generator=g)
    length = (pred_t_dim // u) * 4
    pred = torch.randn(2, length, u * 4 * 4 * 3, dtype=torch.float64, generator=g)
    mask = torch.from_numpy(masking_reference(torch.rand(2, length, generator=g).numpy(), 0.75))
    got = clip_loss(pred, clips, mask, 4, u, pred_t_dim, norm_pix).item()
    assert got == pytest.approx(loss_reference(clips.numpy(), pred.numpy(), mask.numpy(), 4, u, pred_t_dim,
                                               norm_pix), rel=1e-12)
    visible = pred.clone()
    visible[mask == 0] += 3.0  # a visible tubelet's prediction does not count
    assert clip_loss(visible, clips, mask, 4, u, pred_t_dim, norm_pix).item() == pytest.approx(got, rel=1e-12)


def test_target_frames_and_separable_positions():
    clips = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(1, 3, 8, 1, 1)
    assert target_frames(clips, 4)[0, 0, :, 0, 0].tolist() == [0.0, 2.0, 4.0, 7.0]  # linspace(0, 7, 4) truncated
    spatial, temporal, cls = torch.randn(1, 6, 4), torch.randn(1, 3, 4), torch.randn(1, 1, 4)
    pos = separable_positions(spatial, temporal, cls)
    assert pos.shape == (1, 19, 4) and torch.equal(pos[0, 0], cls[0, 0])
    for t in range(3):
        for s in range(6):
            assert torch.equal(pos[0, 1 + t * 6 + s], spatial[0, s] + temporal[0, t])
