"""Fixtures and helpers shared by the whole suite (tests/<area>/ mirrors directanimator/<area>/)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parents[1]  # the repository
PY = sys.executable


def cli(*args, env: dict | None = None, timeout: float = 300, threads: int = 1) -> subprocess.CompletedProcess:
    """`python -m directanimator ARGS` in a new process from the repository root, as a user runs it
    (exit status, stderr, signals); `cli_here` runs the command line in this process instead."""
    e = dict(os.environ, OMP_NUM_THREADS=str(threads), **(env or {}))
    return subprocess.run([PY, "-m", "directanimator", *map(str, args)], capture_output=True, text=True, env=e,
                          cwd=ROOT, timeout=timeout)


def read_log(run) -> list[dict]:
    """A training run's log.jsonl, one dict per logged step."""
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def cli_here(capfd, monkeypatch):
    """The command line run in this process, from the repository root: `cli_here(*args)` gives what
    `subprocess.run` would (returncode, stdout, stderr) without a new interpreter importing torch,
    diffusers and MediaPipe for every call (~8 s a call on the 2-core machine). The tests that must
    see a real process (exit status, signals, no traceback) keep a subprocess."""
    from directanimator.cli import main

    monkeypatch.chdir(ROOT)

    def run(*args):
        capfd.readouterr()
        code = main([str(a) for a in args])
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


@pytest.fixture(scope="session")
def tiny_cfg():
    """configs/tiny.yaml with quick training settings for tests."""
    from directanimator.config import load_config

    def make(**train):
        cfg = load_config("configs/tiny.yaml")
        cfg.train.batch_size = 2
        cfg.train.warmup_steps = 5
        cfg.train.checkpoint_every = 5
        cfg.train.keep_last = 5
        for k, v in train.items():
            setattr(cfg.train, k, v)
        return cfg

    return make


@pytest.fixture(scope="session")
def puppet_dataset(tmp_path_factory, tiny_cfg):
    """A small puppet world (64 px, 9 frames) with pseudo clips and caches for configs/tiny.yaml."""
    from directanimator.data.preprocess import preprocess
    from directanimator.synth.world import build_world
    from directanimator.train.pseudo import make_pseudo

    root = tmp_path_factory.mktemp("puppets") / "world"
    build_world(root, identities=5, motions=5, clips=6, frames=9, size=64, seed=1, progress=False)
    cfg = tiny_cfg()
    cfg.pseudo.min_per_clip = 1
    cfg.pseudo.max_per_clip = 2
    make_pseudo(root, cfg, progress=False)
    report = preprocess(root, cfg, progress=False)
    assert report["failed"] == 0 and report["built"] > 0
    return root


@pytest.fixture(scope="session")
def same_id_run(tmp_path_factory, puppet_dataset, tiny_cfg):
    from directanimator.train.trainer import train

    cfg = tiny_cfg(max_steps=10)
    cfg.data.dataset = str(puppet_dataset)
    cfg.train.validation.dataset = str(puppet_dataset)  # its one held-out cross-ID triple
    cfg.train.validation.every = 5
    cfg.train.validation.sample_steps = 3
    out = tmp_path_factory.mktemp("runs") / "same_id"
    train(cfg, out, progress=False)
    return out
