"""``headcam-ingest``: media -> WebDataset shards in the headcam contract.

Subcommands: ``videos`` (head-camera video), ``images`` (image datasets), ``merge`` (finish a
``--part`` ingest), ``inspect`` (summarise and check a dataset). Exit codes: 0 all ingested,
3 some inputs failed (listed in failures.parquet), 2 usage error, 1 nothing could be done.
"""

from __future__ import annotations

import argparse

from headcam.console import ArgumentParser, run_main


def build_parser() -> argparse.ArgumentParser:
    from headcam.ingest.images import add_images_arguments
    from headcam.ingest.inspect import add_inspect_arguments
    from headcam.ingest.slurm import add_slurm_arguments
    from headcam.ingest.videos import add_merge_arguments, add_videos_arguments

    parser = ArgumentParser(prog="headcam-ingest", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit codes: 0 all ingested, 3 some inputs failed (see failures.parquet), "
                                            "2 usage error, 1 nothing could be done.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    videos = sub.add_parser("videos", help="head-camera videos -> a video dataset (segment labels)",
                            description="Decode videos, sample frames by timestamp, label them by temporal segment "
                                        "and write shuffled clips into shards.")
    add_videos_arguments(videos)
    add_slurm_arguments(videos)
    add_images_arguments(sub.add_parser("images", help="an image dataset (folder, CIFAR-10, STL-10, Toybox) -> shards",
                                        description="Decode an image dataset in its own on-disk format and write "
                                                    "its splits, in a seeded order, into shards."))
    add_merge_arguments(sub.add_parser("merge", help="finish an ingest run as --part I/N jobs",
                                       description="Phase 2 over staged parts: clips, shards, manifest. "
                                                   "'merge OUT' does it all in one process; or run 'merge OUT "
                                                   "--part I/N' for I = 1..N (at the same time if you like: each "
                                                   "writes its own range of shards), then 'merge OUT' writes the "
                                                   "manifest and dataset.json once all N finished. Staged bytes "
                                                   "are freed as they move into shards, so staging and output "
                                                   "together need about the dataset's size."))
    add_inspect_arguments(sub.add_parser("inspect", help="counts, failures, sizes; check shards vs manifest"))
    return parser


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "videos" and args.slurm:
        from headcam.ingest.slurm import submit_videos

        return submit_videos(args)
    if args.command == "videos":
        from headcam.ingest.videos import run_videos

        return run_videos(args)
    if args.command == "merge":
        from headcam.ingest.videos import run_merge

        return run_merge(args)
    if args.command == "inspect":
        from headcam.ingest.inspect import run_inspect

        return run_inspect(args)
    from headcam.ingest.images import run_images

    return run_images(args)


def main(argv: list[str] | None = None) -> int:
    return run_main("headcam-ingest", _main, argv)
