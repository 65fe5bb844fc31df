"""A results row is reused only for the configuration that made it, and the command line answers a
user's mistake in one line (issue 18, faults 1 and 7)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import adlib.data as data
from adlib import bench, cli
from adlib.bench import REPO, run_grid
from adlib.cli import main
from adlib.results import (ConfigMismatchError, append_row, config_diff, plan_runs, read_rows,
                           row_config, run_config)
from conftest import write_idx_dataset


@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    """A small generated MNIST (no published digest: the files are made up)."""
    monkeypatch.delitem(data.TREE_DIGESTS, "MNIST")
    return write_idx_dataset(tmp_path / "data", "MNIST", n_train=60, n_test=40, seed=9).root


def _if(mnist_root, out, **kwargs):
    """The issue's command through the API: isolation forest, class 0, quick."""
    kwargs.setdefault("params", {})
    return run_grid("isolation_forest", "mnist", [0], (0,), quick=True, out=out,
                    root=mnist_root, verbose=False, **kwargs)


# --------------------------------------------------------------------------- fault 1: resume

def test_resume_refuses_a_row_of_other_caps_and_parameters(mnist_root, tmp_path):
    """The issue's input: the second command has other caps and n_estimators; it used to be
    skipped as 'already in' and the file kept n_train=100, n_estimators=100."""
    out = tmp_path / "r.jsonl"
    _if(mnist_root, out, max_train=3, max_test=20)
    before = out.read_bytes()
    with pytest.raises(ConfigMismatchError) as err:
        _if(mnist_root, out, max_train=5, max_test=30, params={"n_estimators": 300})
    text = str(err.value)
    for expected in ("max_train: 3 -> 5", "max_test: 20 -> 30", "params.n_estimators: 100 -> 300",
                     "--variant", "--out", "--replace"):
        assert expected in text
    assert out.read_bytes() == before  # nothing written


def test_replace_redoes_the_run_and_keeps_one_row(mnist_root, tmp_path):
    out = tmp_path / "r.jsonl"
    _if(mnist_root, out, max_train=3, max_test=20)
    _if(mnist_root, out, max_train=5, max_test=30, params={"n_estimators": 30}, replace=True)
    (row,) = read_rows(out)
    assert row["params"]["n_estimators"] == 30 and row["protocol"]["max_train"] == 5
    assert row["config"]["max_train"] == 5 and row["config"]["params"]["n_estimators"] == 30
    # the replaced row now resumes as done
    _if(mnist_root, out, max_train=5, max_test=30, params={"n_estimators": 30})
    assert len(read_rows(out)) == 1


def test_explicit_default_is_the_same_configuration(mnist_root, tmp_path, capsys):
    """Effective parameters after defaults: n_estimators=100 spelled out is the default run."""
    out = tmp_path / "r.jsonl"
    _if(mnist_root, out, max_test=20)
    _if(mnist_root, out, max_test=20, params={"n_estimators": 100, "contamination": 0.1})
    assert len(read_rows(out)) == 1
    assert "1 runs, 1 already in" in capsys.readouterr().out


@pytest.mark.parametrize("first, second, differs", [
    ({"outlier_ratios": (0.2,)}, {"outlier_ratios": (0.2, 0.43)}, "outlier_ratios"),
    ({"max_test": 20}, {"max_test": None}, "max_test"),
    ({"params": {"contamination": 0.1}}, {"params": {"contamination": 0.2}},
     "params.contamination"),
])
def test_every_kind_of_configuration_counts(mnist_root, tmp_path, first, second, differs):
    """Siblings: the extra evaluations, a cap removed, another parameter."""
    out = tmp_path / "r.jsonl"
    _if(mnist_root, out, **first)
    with pytest.raises(ConfigMismatchError, match=differs):
        _if(mnist_root, out, **second)


def test_epoch_budget_of_a_deep_detector_counts(mnist_root, tmp_path):
    """Sibling in another detector: the epochs (``--epochs``) of the convolutional autoencoder."""
    out = tmp_path / "ae.jsonl"
    kwargs = dict(out=out, root=mnist_root, verbose=False, max_test=20)
    run_grid("conv_ae", "mnist", [0], (0,), params={"num_epochs": 1, "batch_size": 8}, **kwargs)
    with pytest.raises(ConfigMismatchError, match="params.num_epochs: 1 -> 2"):
        run_grid("conv_ae", "mnist", [0], (0,), params={"num_epochs": 2, "batch_size": 8},
                 **kwargs)


def test_legacy_rows_have_their_configuration_computed():
    """Rows written before ``config`` existed: params, protocol caps, else the command's."""
    row = {"params": {"n_estimators": 100, "seed": 0, "verbose": False}, "command":
           "python -m adlib bench isolation_forest --max-test 200",
           "protocol": {"protocol": "anomaly_class"}, "by_outlier_ratio": {"0.1": {}, "0.3": {}}}
    assert row_config(row) == run_config({"n_estimators": 100}, None, 200, [0.1, 0.3])
    transfer = {"params": {}, "protocol": {"max_source": 50, "max_target": 50, "max_test": None}}
    assert row_config(transfer) == run_config({}, 50, None)
    new = {"config": {"x": 1}, "params": {"y": 2}}
    assert row_config(new) == {"x": 1, "revision": 1}  # rows before revisions: revision 1


def test_a_parameter_the_old_row_does_not_record_is_a_difference():
    assert config_diff({"params": {}}, {"params": {"clip_scores": True}}) == [
        "params.clip_scores: '(not recorded)' -> True"]


def test_plan_runs_on_a_legacy_row(tmp_path):
    path = tmp_path / "r.jsonl"
    append_row(path, {"key": "k", "params": {"a": 1, "seed": 0},
                      "protocol": {"max_train": None, "max_test": None}})
    config = run_config({"a": 1, "seed": 5})
    assert plan_runs(path, ["k", "j"], config) == ["j"]
    with pytest.raises(ConfigMismatchError, match="params.a: 1 -> 2"):
        plan_runs(path, ["k"], run_config({"a": 2}))
    assert plan_runs(path, ["k"], run_config({"a": 2}), replace=True) == ["k"]
    assert plan_runs(path, ["k", "j"], config, replace=True) == ["k", "j"]  # redo all


@pytest.mark.parametrize("kind", ["legacy", "config"])
def test_a_parameter_added_later_resumes_at_its_default_and_clashes_otherwise(tmp_path, kind):
    path = tmp_path / "r.jsonl"
    row = ({"params": {"a": 1}, "protocol": {"max_train": None, "max_test": None}}
           if kind == "legacy" else {"config": run_config({"a": 1}, revision=2)})
    append_row(path, {"key": "k", **row})
    defaults = {"a": 0, "new": [3, 5], "seed": 0}
    revision = 1 if kind == "legacy" else 2
    at_default = run_config({"a": 1, "new": [3, 5]}, revision=revision)
    assert plan_runs(path, ["k"], at_default, defaults=defaults) == []
    with pytest.raises(ConfigMismatchError, match=r"params.new: \[3, 5\] -> \[4, 5\]"):
        plan_runs(path, ["k"], run_config({"a": 1, "new": [4, 5]}, revision=revision),
                  defaults=defaults)
    with pytest.raises(ConfigMismatchError, match="not recorded"):  # without the defaults
        plan_runs(path, ["k"], at_default)
    with pytest.raises(ConfigMismatchError, match="revision"):  # a new revision still clashes
        plan_runs(path, ["k"], run_config({"a": 1, "new": [3, 5]}, revision=revision + 1),
                  defaults=defaults)


def test_committed_rows_resume_after_their_detector_gained_parameters():
    """ALPS gained kernel_size and betas after these rows were made."""
    from adlib import bench
    for method, name in [("alps", "alps_mnist.jsonl")]:
        path = bench.REPO / "results" / name
        rows = [r for r in read_rows(path) if r["variant"] == "default" and not r["quick"]]
        cls, params, _ = bench._prepare(method, "mnist", {}, False, path)
        config = bench._config(cls, params, False)
        assert rows and plan_runs(path, [r["key"] for r in rows], config,
                                  defaults=bench._defaults(cls)) == []


def test_append_row_replace_is_atomic_and_keeps_the_others(tmp_path):
    path = tmp_path / "r.jsonl"
    for key in "abc":
        append_row(path, {"key": key, "v": 0})
    assert append_row(path, {"key": "b", "v": 1}, replace=True)
    assert [(r["key"], r["v"]) for r in read_rows(path)] == [("a", 0), ("c", 0), ("b", 1)]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_committed_rows_resume_under_their_own_command():
    """Every committed row of the one-class grids whose code has not changed since resumes:
    the configuration computed from its record equals the one its command computes today."""
    rows = read_rows(REPO / "results" / "isolation_forest_mnist.jsonl")
    assert rows
    for row in rows:
        args = cli._parser().parse_args(row["command"].split()[3:])
        cls, params, _ = bench._prepare(args.method, args.dataset, cli._parse_set(args.set),
                                        args.quick, None)
        config = bench._config(cls, params, args.quick, args.max_train, args.max_test,
                               args.outlier_ratios)
        assert config_diff(row_config(row), config) == []


# --------------------------------------------------------------------------- fault 7: the CLI

@pytest.mark.parametrize("argv, message", [
    (["--classes", "11"], "unknown class 11"),
    (["--classes", "x"], "--classes takes 'all' or class indices"),
    (["--dataset", "mnsit"], "unknown dataset 'mnsit'"),
    (["--set", "n_estimators"], "expect key=value"),
    (["--set", "n_trees=3"], "has no parameter n_trees"),
])
def test_user_mistakes_are_one_line_with_status_2(mnist_root, tmp_path, capsys, argv, message):
    argv = ["bench", "isolation_forest", "--data-root", str(mnist_root), "--out",
            str(tmp_path / "r.jsonl"), "--quiet", *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("python -m adlib bench: error:")


def test_debug_shows_the_traceback(mnist_root):
    with pytest.raises(data.DataError, match="unknown class 11"):
        main(["bench", "isolation_forest", "--classes", "11", "--data-root", str(mnist_root),
              "--debug"])


def test_empty_data_folder_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ADLIB_DATA", "")
    monkeypatch.setattr(data, "data_root", lambda root=None: None)  # no ../shared/data either
    assert main(["bench", "isolation_forest", "--out", str(tmp_path / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "ADLIB_DATA" in err and err.count("\n") == 1


def test_config_clash_on_the_command_line(mnist_root, tmp_path, capsys):
    base = ["bench", "isolation_forest", "--classes", "0", "--quick", "--data-root",
            str(mnist_root), "--out", str(tmp_path / "r.jsonl"), "--quiet"]
    assert main([*base, "--max-train", "3"]) == 0
    assert main([*base, "--max-train", "5", "--set", "n_estimators=30"]) == 2
    err = capsys.readouterr().err
    assert "max_train: 3 -> 5" in err and "--replace" in err and err.count("\n") == 1
    assert main([*base, "--max-train", "5", "--set", "n_estimators=30", "--replace"]) == 0


def test_a_finished_grid_prints_its_stored_results(mnist_root, tmp_path, capsys):
    argv = ["bench", "isolation_forest", "--classes", "0", "1", "--quick", "--data-root",
            str(mnist_root), "--out", str(tmp_path / "r.jsonl"), "--quiet"]
    assert main(argv) == 0
    aurocs = [r["auroc"] for r in read_rows(tmp_path / "r.jsonl")]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 runs, 2 already in" in out
    assert f"{aurocs[0]:.4f}" in out and f"{aurocs[1]:.4f}" in out
    assert f"mean AUROC {50 * (aurocs[0] + aurocs[1]):.2f}" in out


def test_no_verify_and_download_reach_the_loader(tmp_path, monkeypatch, capsys):
    """``--no-verify`` loads generated files that fail the digest; ``--download`` is passed on."""
    root = write_idx_dataset(tmp_path / "data", "MNIST", n_train=60, n_test=40, seed=9).root
    base = ["bench", "isolation_forest", "--classes", "0", "--quick", "--data-root", str(root),
            "--out", str(tmp_path / "r.jsonl"), "--quiet"]
    assert main(base) == 2 and "tree digest" in capsys.readouterr().err
    assert main([*base, "--no-verify"]) == 0
    seen = {}

    def fake_load(name, split, root=None, download=False, verify=True):
        seen.update(download=download, verify=verify)
        raise data.DataError("no internet here")
    monkeypatch.setattr(bench, "load_dataset", fake_load)
    assert main([*base, "--download", "--classes", "1"]) == 2
    assert seen == {"download": True, "verify": True}


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "adlib", *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)


def test_help_lists_every_command_and_every_dataset():
    top = _cli("--help")
    assert top.returncode == 0
    for command in ("bench", "table", "list", "cost", "book", "lab"):
        assert command in top.stdout
    bench_help = _cli("bench", "--help").stdout
    for dataset in (*data.DATASETS, "ucsd_ped2", "ucsd_ped1"):
        assert dataset in bench_help
    assert "--no-verify" in bench_help and "--download" in bench_help
    assert "--replace" in bench_help
    assert "--only" in _cli("book", "--help").stdout


def test_the_real_command_line_prints_no_traceback(tmp_path):
    """The process as a user starts it: one line on stderr, exit status 2."""
    done = _cli("bench", "isolation_forest", "--classes", "11", "--out",
                str(tmp_path / "r.jsonl"), env={"ADLIB_DATA": str(tmp_path)})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["book", "lab"])
def test_book_and_lab_refuse_an_unknown_chapter_in_one_line(command, capsys):
    """Siblings in the other commands: ``--only`` that selects nothing used to build nothing
    and succeed (book)."""
    assert main([command, "--only", "zz", "--no-build" if command == "book" else "--check"]) == 2
    err = capsys.readouterr().err
    assert "starts with zz" in err and "00_protocols_and_baselines" in err
    assert err.count("\n") == 1


def test_a_new_revision_of_a_method_is_another_configuration(mnist_root, tmp_path, monkeypatch):
    """A change of a method's code that changes its results raises its ``revision``: rows of
    the older revision then clash instead of being resumed as current."""
    out = tmp_path / "r.jsonl"
    _if(mnist_root, out)
    from adlib.methods.baselines import IsolationForestDetector
    monkeypatch.setattr(IsolationForestDetector, "revision", 2)
    with pytest.raises(ConfigMismatchError, match="revision: 1 -> 2"):
        _if(mnist_root, out)


# --------------------------------------------------------------------------- selection protocols

def test_paper_selection_draws_training_images_of_other_classes(mnist_root):
    from adlib.protocols import development_split, one_class, paper_selection
    train = data.load_dataset("mnist", "train", root=mnist_root)
    split = one_class("mnist", 3, seed=0, root=mnist_root, val_size=2)
    paper = paper_selection(split, train, n=20, seed=0)
    labels = train.labels.numpy()
    assert len(paper.X_val_anomalies) == 20 and (labels[paper.val_anomaly_index] != 3).all()
    assert paper.info["selection"] == "paper" and split.X_val_anomalies is None
    assert paper_selection(split, train, n=20, seed=0).val_anomaly_index.tolist() == \
        paper.val_anomaly_index.tolist()
    dev = development_split(paper, train, n_anomalies=10_000, seed=0)
    assert dev.info["n_test_anomalies"] == (labels != 3).sum() - 20  # selection images left out
    with pytest.raises(data.DataError, match="paper selection needs"):
        paper_selection(split, train, n=10_000)


def test_bench_paper_selection_is_named_and_refused_where_unsupported(mnist_root, tmp_path):
    out = tmp_path / "alps.jsonl"
    root = write_idx_dataset(tmp_path / "big", "MNIST", n_train=200, n_test=40, seed=3).root
    params = {"num_epochs": 2, "batch_size": 8, "latent_dim": 4, "widths": (4, 4, 8)}
    run_grid("alps", "mnist", [0], (0,), params=params, out=out, root=root, verbose=False,
             selection="paper")
    (row,) = read_rows(out)
    assert row["selection_protocol"] == "paper" and row["variant"] == "default+selection=paper"
    assert row["protocol"]["n_val_anomalies"] == 150
    assert row["selected_score"] in row["all_scores"]
    assert set(row["selection"]) == set(row["all_scores"])  # the AUROCs that chose the score
    with pytest.raises(ValueError, match="isolation_forest has the selection protocols clean"):
        _if(mnist_root, tmp_path / "if.jsonl", selection="paper")
