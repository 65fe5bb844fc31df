"""The grid backends (:mod:`adlib.grid`): the Ray backend, on a single-machine Ray, writes the
same rows as the local runner, resumes from the same file and names a failed run."""
from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest

import adlib.data as data
from adlib.bench import run_grid
from adlib.cli import main
from adlib.grid import GridRunError, run_jobs, worker_env
from adlib.results import read_rows
from conftest import idx_bytes, write_idx_dataset

METRICS = ("auroc", "ap", "eer", "f1")
IF_PARAMS = {"n_estimators": 10}


@pytest.fixture
def grid_mnist(tmp_path, monkeypatch):
    """A generated MNIST (60 train, 40 test images) without a published digest."""
    monkeypatch.delitem(data.TREE_DIGESTS, "MNIST")
    return write_idx_dataset(tmp_path / "data", "MNIST", n_train=60, n_test=40, seed=9)


@pytest.fixture(scope="module")
def ray_cluster():
    """One small single-machine Ray for the module (2 CPUs, no dashboard), shut down at the end;
    :func:`adlib.grid.run_ray` uses it as it is."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def by_key(path):
    return {r["key"]: r for r in read_rows(path)}


# --------------------------------------------------------------------------- without Ray

def test_unknown_backend_is_a_value_error(grid_mnist, tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'dask'"):
        run_grid("isolation_forest", "mnist", [0], (0,), params=IF_PARAMS,
                 out=tmp_path / "r.jsonl", root=grid_mnist.root, verbose=False, backend="dask")
    with pytest.raises(ValueError, match="local, ray"):
        run_jobs(lambda shared, job: {}, None, [(0, 0)], print, backend="dask")
    assert not (tmp_path / "r.jsonl").exists()


def test_missing_ray_names_the_extra(grid_mnist, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[grid\]"'):
        run_grid("isolation_forest", "mnist", [0], (0,), params=IF_PARAMS,
                 out=tmp_path / "r.jsonl", root=grid_mnist.root, verbose=False, backend="ray")


def test_worker_env_forwards_data_and_threads(monkeypatch):
    monkeypatch.setenv("ADLIB_DATA", "/some/data")
    monkeypatch.delenv("ADLIB_COMMIT", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = worker_env(num_cpus=2)
    assert env["ADLIB_DATA"] == "/some/data" and env["OMP_NUM_THREADS"] == "2"
    assert "ADLIB_COMMIT" not in env
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert worker_env(num_cpus=4)["OMP_NUM_THREADS"] == "1"


# --------------------------------------------------------------------------- with Ray

def test_ray_started_by_the_command_gives_the_local_numbers(grid_mnist, tmp_path):
    """Through the CLI, Ray started and stopped by the run itself (``--ray-address`` unset):
    a seeded deep detector gives bit-identical metrics to the local runner."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("needs a process without Ray running")
    params = {"batch_size": 16, "latent_dim": 4}
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_grid("conv_ae", "mnist", [0, 1], (0, 1), quick=True, params=params, out=local,
             root=grid_mnist.root, verbose=False)
    assert main(["bench", "conv_ae", "--dataset", "mnist", "--classes", "0", "1", "--seeds", "0",
                 "1", "--quick", "--set", "batch_size=16", "latent_dim=4", "--out", str(remote),
                 "--data-root", str(grid_mnist.root), "--quiet", "--backend", "ray"]) == 0
    assert not ray.is_initialized()  # what the run started, it stopped
    a, b = by_key(local), by_key(remote)
    assert len(a) == 4 and set(a) == set(b)
    for key in a:
        for metric in METRICS:
            assert a[key][metric] == b[key][metric], (key, metric)
        assert a[key]["history"] == b[key]["history"]  # the same training, epoch by epoch
        assert a[key]["protocol"] == b[key]["protocol"]
        assert a[key]["backend"] == "local" and b[key]["backend"] == "ray"
        assert b[key]["torch_threads"] == 1


def test_ray_backend_matches_local_and_resumes_across_backends(grid_mnist, tmp_path,
                                                               ray_cluster, capsys):
    kwargs = dict(params=IF_PARAMS, root=grid_mnist.root, verbose=False)
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_grid("isolation_forest", "mnist", [0, 1, 2], (0, 1), out=local, **kwargs)
    run_grid("isolation_forest", "mnist", [0, 1, 2], (0, 1), out=remote, backend="ray",
             **kwargs)
    a, b = by_key(local), by_key(remote)
    assert len(b) == 6 and set(a) == set(b)
    assert all(a[k]["auroc"] == b[k]["auroc"] for k in a)
    capsys.readouterr()

    # a grid begun locally is finished by Ray: only the missing runs execute ...
    mixed = tmp_path / "mixed.jsonl"
    run_grid("isolation_forest", "mnist", [0], (0,), out=mixed, **kwargs)
    first = mixed.read_bytes()
    run_grid("isolation_forest", "mnist", [0, 1], (0, 1), out=mixed, backend="ray", **kwargs)
    assert "4 runs, 1 already" in capsys.readouterr().out
    assert mixed.read_bytes().startswith(first)  # the local row untouched
    rows = read_rows(mixed)
    assert [r["backend"] for r in rows] == ["local", "ray", "ray", "ray"]
    assert sorted((r["normal_class"], r["seed"]) for r in rows) == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert len({r["key"] for r in rows}) == 4
    # ... and nothing is rerun by either backend afterwards
    before = mixed.read_bytes()
    run_grid("isolation_forest", "mnist", [0, 1], (0, 1), out=mixed, backend="ray", **kwargs)
    run_grid("isolation_forest", "mnist", [0, 1], (0, 1), out=mixed, **kwargs)
    assert mixed.read_bytes() == before
    assert capsys.readouterr().out.count("4 runs, 4 already") == 2


def test_failed_ray_task_is_named_and_other_rows_are_kept(tmp_path, monkeypatch, ray_cluster):
    """Class 9 has no training image: its task fails in the worker, class 0's row is kept."""
    monkeypatch.delitem(data.TREE_DIGESTS, "MNIST")
    rng = np.random.default_rng(0)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, labels in (("train", np.arange(45) % 9), ("t10k", np.arange(20) % 10)):
        images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            with gzip.open(raw / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(idx_bytes(array.astype(np.uint8)))
    out = tmp_path / "r.jsonl"
    with pytest.raises(GridRunError, match=r"\(class 9, seed 0\).*no image of class 9") as err:
        run_grid("isolation_forest", "mnist", [9, 0], (0,), params=IF_PARAMS, out=out,
                 root=tmp_path / "data", verbose=False, backend="ray")
    assert err.value.failed == [(9, 0)]
    assert [(r["normal_class"], r["seed"]) for r in read_rows(out)] == [(0, 0)]
