"""Datasets at URLs, against a real HTTP server on 127.0.0.1 serving a copy of the tiny dataset: the manifest,
the samples, training (straight and killed-then-resumed) and kNN evaluation from the URL equal the same from the
directory; unreadable locations are one line. And Hugging Face ``datasets`` reads our shards as they are."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from headcam.console import UsageError
from headcam.pipelines.loader import build_loader
from headcam.pipelines.loader_config import LoaderConfig
from headcam.pipelines.spec import recipe_spec
from headcam.shards import DatasetError, open_dataset, read_samples, select

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
#: resnet18 at 32 px on CPU with deterministic kernels: bit-equal weights are a fair test
TRAIN = ["arch=resnet18", "size=32", "batch_size=8", "workers=0", "log_every=1", "shuffle_buffer=16",
         "optim.warmup_steps=0", "device=cpu", "deterministic=true", "method=moco", "moco.queue=64", "steps=4",
         "ckpt_every=2"]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log on stderr
        pass


@pytest.fixture(scope="module")
def served(tiny_dataset, tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """(a copy of the tiny dataset, its URL on a loopback http.server); the server stops after the module."""
    root = tmp_path_factory.mktemp("served") / "ds"
    shutil.copytree(tiny_dataset, root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _samples(ds) -> list[tuple]:
    return [(s.key, s.jpg, s.sal, s.label, s.meta) for s in read_samples(select(ds, ["train", "val"]))]


def test_url_and_pipe_datasets_equal_the_directory(served):
    root, url = served
    local = open_dataset(root)
    for where in (url, f"pipe:cat {root}/{{}}"):
        ds = open_dataset(where)
        assert ds.meta == local.meta and ds.splits == local.splits == ["train", "val"]
        assert repr(ds.manifest.to_pylist()) == repr(local.manifest.to_pylist())  # repr: NaN pts compare equal
        want = [(f"{url}{p.name}" if where == url else f"pipe:cat {p}") for p in local.shards("train")]
        assert [str(p) for p in ds.shards("train")] == want
        assert _samples(ds) == _samples(local)
        assert ds.failures().num_rows == 0


def test_workers_read_a_url_like_the_directory(served):
    """Two DataLoader worker processes (forked after fsspec started its event loop) stream the shards."""
    root, url = served
    cfg = LoaderConfig(recipe_spec("simclr"), batch_size=4, size=32, n_views=2, workers=2, seed=3, shuffle_buffer=8)

    def epoch(where):
        return [(b.keys, [v.clone() for v in b.views]) for b in build_loader(where, "train", cfg)]

    got, want = epoch(url), epoch(root)
    assert [k for k, _ in got] == [k for k, _ in want] and len(got) == 6  # 2 slots x 13 samples -> 3 batches each
    assert all(torch.equal(a, b) for (_, va), (_, vb) in zip(got, want, strict=True)
               for a, b in zip(va, vb, strict=True))


def _train(args: list[str]) -> int:
    from headcam.train.cli import main

    return main([DEMO, *args])


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def _equal_runs(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] == 4 and a["data"] == b["data"]
    for name, tensor in a["model"].items():  # trunk, heads, key encoder, queue
        assert torch.equal(tensor, b["model"][name]), name


def test_training_from_the_url_equals_the_directory_and_resumes_exactly(served, tmp_path):
    root, url = served
    assert _train([f"data={root}", f"out={tmp_path / 'dir'}", *TRAIN]) == 0
    assert _train([f"data={url}", f"out={tmp_path / 'url'}", *TRAIN]) == 0
    _equal_runs(_weights(tmp_path / "dir"), _weights(tmp_path / "url"))

    killed = tmp_path / "killed"  # a subprocess reading the URL, SIGKILLed after its first checkpoint
    env = dict(os.environ, HEADCAM_QUIET="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "headcam.train.cli", DEMO, f"data={url}", f"out={killed}", *TRAIN],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 240
    while not (killed / "checkpoint.pt").exists():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        assert time.monotonic() < end, "timed out waiting for the first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and _weights(killed)["step"] < 4
    assert _train([f"data={url}", f"out={killed}", *TRAIN, "resume=auto"]) == 0
    _equal_runs(_weights(tmp_path / "dir"), _weights(killed))


def _eval(argv: list[str], capsys) -> tuple[int, str]:
    from headcam.eval.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


def _features(cache: Path) -> dict[str, tuple]:
    """The cached features of a run by their first key: (keys, labels, features)."""
    out = {}
    for path in cache.glob("*.npz"):
        with np.load(path) as z:
            out[str(z["keys"][0])] = (z["keys"].tolist(), z["labels"].tolist(), z["feats"])
    return out


def test_knn_from_the_url_equals_the_directory(served, tmp_path, capsys):
    root, url = served
    reports, features = {}, {}
    for name, where in (("dir", root), ("url", url)):
        code, err = _eval(["knn", "--model", "random:resnet18", "--data", str(where), "--out", str(tmp_path / name),
                           "--size", "32", "--batch-size", "8", "--cache-dir", str(tmp_path / f"cache_{name}")], capsys)
        assert code == 0, err
        rows = json.loads((tmp_path / name / "report.json").read_text())["results"]
        reports[name] = [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]
        features[name] = _features(tmp_path / f"cache_{name}")  # the cache keys a URL dataset too
    assert reports["url"] == reports["dir"] and reports["url"][0]["n_test"] == 9
    assert len(features["url"]) == 2 and features["url"].keys() == features["dir"].keys()  # train, val
    for first, (keys, labels, feats) in features["url"].items():
        assert (keys, labels) == features["dir"][first][:2] and np.array_equal(feats, features["dir"][first][2])


def test_unreadable_locations_are_one_line(served, tmp_path, capsys, monkeypatch):
    root, url = served
    for where, message in ((url + "nope", "nope/dataset.json: not found"),
                           ("http://127.0.0.1:1/ds", "not found (or its server is unreachable)"),
                           (f"pipe:cat {root}/nope/{{}}", "exit 1 (cat:"),
                           (f"pipe:cat {root}/dataset.json", "names its files with {}")):
        code, err = _eval(["knn", "--model", "pixels", "--data", where, "--out", str(tmp_path / "r")], capsys)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert _train([f"data={url}nope", f"out={tmp_path / 'run'}", *TRAIN]) == 2
    err = capsys.readouterr().err
    assert "nope/dataset.json: not found" in err and err.count("\n") == 1

    for scheme, package in (("s3", "s3fs"), ("gs", "gcsfs")):
        if not _installed(package):
            with pytest.raises(DatasetError, match=f"{package}.*not installed"):
                open_dataset(f"{scheme}://bucket/ds")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # hf:// without network: one line
    with pytest.raises(DatasetError, match="hf://datasets/someone/ds/dataset.json: cannot open.*offline"):
        open_dataset("hf://datasets/someone/ds")

    cfg = LoaderConfig(recipe_spec("eval"), batch_size=4, size=32, backend="dali")
    with pytest.raises(UsageError, match="backend 'dali' reads local shard files"):
        build_loader(url, "train", cfg)


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def test_hugging_face_datasets_reads_the_shards_as_they_are(tiny_dataset, tmp_path):
    datasets = pytest.importorskip("datasets")

    local = open_dataset(tiny_dataset)
    full = datasets.load_dataset(str(tiny_dataset), cache_dir=str(tmp_path))
    assert set(full) == {"train", "validation"}  # datasets' name for our "val"
    assert full["train"].num_rows == local.count("train") and full["validation"].num_rows == local.count("val")
    features = full["train"].features
    assert isinstance(features["jpg"], datasets.Image) and isinstance(features["sal.png"], datasets.Image)
    assert features["cls"] == datasets.Value("int64")
    labels = dict(zip(local.manifest["key"].to_pylist(), local.manifest["label"].to_pylist(), strict=True))
    assert {r["__key__"]: r["cls"] for r in full["train"]} == {k: labels[k] for k in full["train"]["__key__"]}
    man = local.manifest.select(["key", "width", "height"]).to_pylist()
    sizes = {r["key"]: (r["width"], r["height"]) for r in man}
    first = full["train"][0]
    assert first["jpg"].mode == "RGB" and first["jpg"].size == sizes[first["__key__"]]

    streamed = datasets.load_dataset(str(tiny_dataset), streaming=True)
    rows = list(streamed["validation"])
    assert [r["__key__"] for r in rows] == sorted(k for k, s in zip(local.manifest["key"].to_pylist(),
                                                                      local.manifest["split"].to_pylist(),
                                                                      strict=True) if s == "val")
    assert all(r["cls"] == labels[r["__key__"]] for r in rows)
