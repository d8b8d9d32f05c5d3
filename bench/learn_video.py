"""Does the spatiotemporal MAE learn from head-cam clips at CPU scale? Held-out masked-tubelet error of a trained
``vit_tiny_patch16_st`` against the very same network at step 0 (issue 19 §4).

Why: the unit tests say the maths is the reference's and that a run resumes exactly, not that steps help.

Data: the shared media (three real videos) through ``headcam-ingest videos`` at 10 fps, 40 px short side,
10 s segments, clips of 8 consecutive frames and ``--val-tail 0.2``: the last fifth of every segment's clips is
held out, whole time ranges the training never sees. Clips shorter than 8 frames (segment ends) are skipped.

Run: ``headcam-train`` in this process (``method=mae_st``, 32 px, 8-frame clips of stride 1, the reference's
90 % random masking, ``norm_pix_loss``; a decoder of width 128 and depth 2 instead of 512 x 4, which would cost
more than the encoder here), with the trainer's ``build_method`` wrapped for one call so the method's weights
at step 0 (trunk *and* decoder, right after the reference's initialisation) are kept, not rebuilt.

Readout: the training loss (per-tubelet MSE against each tubelet's normalised pixels, averaged over the masked
tubelets) on every held-out clip, centre-cropped (the ``eval`` recipe), under masks fixed by a seed: ``random``
(90 %, the training mask) and ``temporal`` (the last 90 % of the clip's tubelets hidden: predict the future
from the first frames), for the step-0 and the trained model. Predicting every tubelet's own mean scores
1 − 1/n (n values per tubelet) under ``norm_pix_loss``: an error below it needs structure inside tubelets.
Cost: wall and process CPU seconds per step of the run, and its ``completions.png``.

    nice -n 5 .venv/bin/python bench/learn_video.py [--steps 300] [--workdir DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path("/work/shared/data/media")
SIZE, FRAMES, SEED = 32, 8, 0
RUN = ["method=mae_st", "arch=vit_tiny_patch16_st", f"size={SIZE}", f"clip_frames={FRAMES}", "clip_stride=1",
       "batch_size=8", "workers=0", "device=cpu", "log_every=10", "ckpt_every=100000", f"seed={SEED}",
       "mae_st.mask_ratio=0.9", "mae_st.norm_pix_loss=true", "mae_st.decoder_width=128", "mae_st.decoder_depth=2",
       "mae_st.decoder_heads=4", "optim.name=adamw", "optim.lr=1e-3", "optim.betas=[0.9,0.95]",
       "optim.weight_decay=0.05", "optim.decay_1d=false", "optim.warmup_steps=20", "optim.schedule=cosine",
       "shuffle_buffer=64"]


def ingest(out: Path) -> None:
    cmd = [str(Path(sys.executable).parent / "headcam-ingest"), "videos", str(MEDIA), "--out", str(out), "--fps",
           "10", "--size", "40", "--seg-len", "10", "--clip-len", str(FRAMES), "--val-tail", "0.2", "--shard-size",
           "32", "--workers", "1", "--stream-by", "one", "--saliency", "none", "--seed", str(SEED)]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)


@torch.no_grad()
def held_out_error(model: Any, data: Path, kind: str) -> float:
    """Mean masked-tubelet loss of ``model`` over every held-out clip, masks from :func:`mask_noise` seeded."""
    from headcam.pipelines.loader import LoaderConfig, build_loader
    from headcam.train.mae_st import clip_loss, mask_noise

    loader = build_loader(data, "val", LoaderConfig.for_eval(size=SIZE, batch_size=16, clip_frames=FRAMES))
    generator = torch.Generator().manual_seed(SEED)
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        clips = batch.views[0].permute(0, 2, 1, 3, 4)
        grid = model.grid(clips)
        noise = mask_noise(kind, clips.shape[0], grid[0] * grid[1] * grid[2], generator)
        latent, mask, ids_restore = model.encode(clips, noise)
        pred = model.decode(latent, ids_restore, grid)
        loss = clip_loss(pred, clips, mask, model.patch, model.u, model.pred_t_dim, model.norm_pix_loss)
        total, count = total + loss.item() * clips.shape[0], count + clips.shape[0]  # equal masked count per clip
    return total / count


def train_keeping_step0(overrides: list[str]) -> tuple[Any, Any, Any]:
    """(run result, step-0 model, trained model) of ``headcam-train`` with ``overrides``, in this process."""
    from headcam.train import trainer
    from headcam.train.config import load_train_config

    cfg = load_train_config(None, overrides)
    kept: dict[str, Any] = {}
    real = trainer.build_method

    def keep(*args: Any, **kwargs: Any) -> Any:
        model = real(*args, **kwargs)
        kept["step0"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        kept["model"] = model
        return model

    trainer.build_method = keep
    try:
        result = trainer.train(cfg)
    finally:
        trainer.build_method = real
    step0 = real(cfg, *_trunk(cfg), n_classes=None, world=1)
    step0.load_state_dict(kept["step0"])
    return result, step0, kept["model"]


def _trunk(cfg: Any) -> tuple[Any, int]:
    from headcam.train.backbones import build_backbone
    from headcam.train.config import resolved_clip_frames

    return build_backbone(cfg.arch, method=cfg.method, num_frames=resolved_clip_frames(cfg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    parser.add_argument("--workdir", type=Path, help="keep the dataset and the run here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="learn_video_"))
    work.mkdir(parents=True, exist_ok=True)
    data, out = work / "media_clips", work / "run"
    if not (data / "dataset.json").exists():
        ingest(data)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result, step0, trained = train_keeping_step0([f"data={data}", f"out={out}", f"steps={args.steps}",
                                                  "resume=never", *RUN])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    figures: dict[str, Any] = {"steps": result.step, "seconds_per_step": round(result.seconds / result.steps_run, 3),
                               "cpu_seconds_per_step": round(cpu / result.steps_run, 3),
                               "wall_seconds_with_figure": round(wall, 1),
                               "last_train_loss": round(result.last_loss, 4),
                               "completions": str(out / "completions.png"), "errors": {}}
    for kind in ("random", "temporal"):
        before, after = held_out_error(step0, data, kind), held_out_error(trained, data, kind)
        figures["errors"][kind] = {"step0": round(before, 4), "trained": round(after, 4),
                                   "margin": round(before - after, 4), "relative": round(1 - after / before, 3)}
    n = trained.u * trained.patch * trained.patch * 3  # values per predicted tubelet
    figures["tubelet_mean_floor"] = round(1 - 1 / n, 4)
    print(f"mae_st {RUN[1].split('=')[1]} at {SIZE} px, {FRAMES}-frame clips, {result.step} steps: "
          f"{figures['seconds_per_step']} s/step wall ({figures['cpu_seconds_per_step']} CPU s/step)")
    print("| mask | step-0 error | trained error | margin | relative |\n|---|---|---|---|---|")
    for kind, e in figures["errors"].items():
        print(f"| {kind} | {e['step0']} | {e['trained']} | {e['margin']} | {e['relative']:.1%} |")
    print(f"tubelet-mean floor (n = {n}): {figures['tubelet_mean_floor']}; completions: {figures['completions']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
