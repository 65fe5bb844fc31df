"""Results files (atomic, de-duplicated JSON lines), the per-class table and the bench grid."""
from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

import adlib
import adlib.data as data
from adlib.bench import REPO, provenance, run_grid
from adlib.cli import main
from adlib.data import DataError
from adlib.results import append_row, load_results, per_class_table, read_rows, run_key
from conftest import write_idx_dataset

PROVENANCE_KEYS = {"command", "commit", "dirty", "versions", "cpu", "cpu_count",
                   "torch_threads", "gpu", "deterministic", "hostname"}


# --------------------------------------------------------------------------- results files

def test_append_row_writes_one_json_line(tmp_path):
    path = tmp_path / "res" / "r.jsonl"
    assert append_row(path, {"key": "a", "auroc": 0.5, "method": "m"})
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {"key": "a", "auroc": 0.5, "method": "m"}
    assert append_row(path, {"key": "b", "auroc": 0.75})
    assert [r["key"] for r in read_rows(path)] == ["a", "b"]
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == 2


def test_append_row_skips_duplicate_key(tmp_path):
    path = tmp_path / "r.jsonl"
    assert append_row(path, {"key": "a", "auroc": 0.5})
    before = path.read_bytes()
    assert append_row(path, {"key": "a", "auroc": 0.9}) is False
    assert path.read_bytes() == before


def test_append_row_leaves_no_temp_file(tmp_path):
    path = tmp_path / "r.jsonl"
    for i in range(3):
        append_row(path, {"key": str(i)})
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert {p.name for p in tmp_path.iterdir()} <= {"r.jsonl", ".r.jsonl.lock"}


def test_append_row_repairs_missing_final_newline(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "x"}')  # hand-edited file without a final newline
    append_row(path, {"key": "y"})
    assert [r["key"] for r in read_rows(path)] == ["x", "y"]


def test_read_rows_missing_file_and_blank_lines(tmp_path):
    assert read_rows(tmp_path / "none.jsonl") == []
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_rows(path) == [{"a": 1}, {"a": 2}]


def test_read_rows_corrupt_line_names_the_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, \n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:2")):
        read_rows(path)
    with pytest.raises(ValueError, match="broken.jsonl"):
        append_row(path, {"key": "z"})


def test_run_key_is_stable_and_distinguishes_runs():
    k = run_key("adacl", "mnist", 3, 0, "default", False)
    assert k == run_key("adacl", "mnist", 3, 0, "default", False)
    assert len(k) == 16
    others = {run_key("adacl", "mnist", 4, 0, "default", False),
              run_key("adacl", "mnist", 3, 1, "default", False),
              run_key("adacl", "mnist", 3, 0, "v2", False),
              run_key("adacl", "mnist", 3, 0, "default", True),
              run_key("kde", "mnist", 3, 0, "default", False),
              run_key("adacl", "usps", 3, 0, "default", False)}
    assert k not in others and len(others) == 6


def test_load_results_with_glob(tmp_path):
    append_row(tmp_path / "a_mnist.jsonl", {"key": "1", "method": "a"})
    append_row(tmp_path / "b_mnist.jsonl", {"key": "2", "method": "b"})
    df = load_results(tmp_path / "*_mnist.jsonl")
    assert sorted(df["method"]) == ["a", "b"]


def test_per_class_table_by_hand():
    df = pd.DataFrame([
        {"method": "A", "normal_class": 0, "seed": 0, "auroc": 0.8},
        {"method": "A", "normal_class": 0, "seed": 1, "auroc": 0.9},
        {"method": "A", "normal_class": 1, "seed": 0, "auroc": 0.6},
        {"method": "A", "normal_class": 1, "seed": 1, "auroc": 0.7},
        {"method": "B", "normal_class": 0, "seed": 0, "auroc": 0.5},
        {"method": "B", "normal_class": 1, "seed": 0, "auroc": 1.0},
    ])
    t = per_class_table(df)
    assert t.loc["A", 0] == pytest.approx(85.0) and t.loc["A", 1] == pytest.approx(65.0)
    assert t.loc["B", 0] == pytest.approx(50.0) and t.loc["B", 1] == pytest.approx(100.0)
    assert t.loc["A", "Mean"] == pytest.approx(75.0) and t.loc["B", "Mean"] == pytest.approx(75.0)
    assert t.loc["A", "seeds"] == 2 and t.loc["B", "seeds"] == 1
    # seed means of A: 70 and 80 -> sample standard deviation 7.07
    assert t.loc["A", "std over seeds"] == pytest.approx(round(math.sqrt(50), 2))
    assert math.isnan(t.loc["B", "std over seeds"])
    assert per_class_table(pd.DataFrame()).empty


def test_per_class_table_other_metric_and_scale():
    df = pd.DataFrame([{"method": "A", "normal_class": 2, "seed": 0, "ap": 0.25, "auroc": 0.5}])
    t = per_class_table(df, metric="ap", scale=1.0)
    assert t.loc["A", 2] == pytest.approx(0.25)


# --------------------------------------------------------------------------- the bench grid

@pytest.fixture
def bench_mnist(tmp_path):
    return write_idx_dataset(tmp_path / "data", "MNIST", n_train=60, n_test=40, seed=9)


def test_run_grid_verifies_digests_of_generated_files(bench_mnist, tmp_path):
    # by default run_grid checks the published tree digest, so generated files are rejected ...
    with pytest.raises(DataError, match="published tree digest"):
        run_grid("isolation_forest", "mnist", [0], (0,), params={"n_estimators": 10},
                 out=tmp_path / "out.jsonl", root=bench_mnist.root, verbose=False)
    # ... unless verification is turned off explicitly
    out = run_grid("isolation_forest", "mnist", [0], (0,), params={"n_estimators": 10},
                   out=tmp_path / "out2.jsonl", root=bench_mnist.root, verify=False,
                   verbose=False)
    assert len(read_rows(out)) == 1


def test_run_grid_rejects_seed_as_parameter(bench_mnist, tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        run_grid("isolation_forest", "mnist", [0], (0,), params={"seed": 3},
                 out=tmp_path / "out.jsonl", root=bench_mnist.root, verify=False, verbose=False)


def test_run_grid_appends_rows_with_provenance_and_resumes(bench_mnist, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.delitem(data.TREE_DIGESTS, "MNIST")  # generated files: no published digest
    out = tmp_path / "results" / "if_mnist.jsonl"
    kwargs = dict(params={"n_estimators": 10}, out=out, root=bench_mnist.root, verbose=False)
    assert run_grid("isolation_forest", "mnist", [0, 1], (0,), **kwargs) == out
    rows = read_rows(out)
    assert len(rows) == 2
    assert [r["normal_class"] for r in rows] == [0, 1]
    for row in rows:
        assert PROVENANCE_KEYS <= set(row)
        assert 0.0 <= row["auroc"] <= 1.0 and "ap" in row and "eer" in row
        assert row["method"] == "isolation_forest" and row["dataset"] == "mnist"
        assert row["seed"] == 0 and row["variant"] == "default" and row["quick"] is False
        assert row["key"] == run_key("isolation_forest", "mnist", row["normal_class"], 0,
                                     "default", False)
        assert row["params"]["n_estimators"] == 10 and row["params"]["seed"] == 0
        assert row["wall_s"] >= 0 and row["fit_s"] >= 0
        assert row["versions"]["adlib"] == adlib.__version__
        assert {"torch", "numpy", "sklearn", "python"} <= set(row["versions"])
        assert isinstance(row["cpu"], str) and row["cpu"]
        if (REPO / ".git").exists():
            assert re.fullmatch(r"[0-9a-f]{40}", row["commit"])
        protocol = row["protocol"]
        assert protocol["protocol"] == "one_class" and protocol["dataset"] == "mnist"
        assert protocol["normal_class"] == row["normal_class"] and protocol["seed"] == 0
        # the whole generated test split: 40 images, 4 of the normal class
        assert protocol["n_test"] == 40 and protocol["n_test_anomalies"] == 36
        assert protocol["n_train"] + protocol["n_val"] == 6
    assert "2 runs, 0 already" in capsys.readouterr().out

    before = out.read_bytes()
    run_grid("isolation_forest", "mnist", [0, 1], (0,), **kwargs)
    assert out.read_bytes() == before  # both runs skipped
    assert "2 runs, 2 already" in capsys.readouterr().out

    # a new seed adds exactly the missing runs
    run_grid("isolation_forest", "mnist", [0, 1], (0, 1), **kwargs)
    assert sorted((r["normal_class"], r["seed"]) for r in read_rows(out)) == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_provenance_keys():
    p = provenance()
    assert PROVENANCE_KEYS <= set(p)
    json.dumps(p)  # JSON-serialisable


def test_dirty_means_edited_code_not_new_results(tmp_path, monkeypatch):
    import subprocess

    import adlib.bench as bench

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "m_mnist.jsonl").write_text('{"key": "a"}\n')
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(bench, "REPO", tmp_path)
    assert provenance()["dirty"] is False
    # a grid earlier in a queue appended rows: the code is still the commit's
    (tmp_path / "results" / "m_mnist.jsonl").write_text('{"key": "a"}\n{"key": "b"}\n')
    assert provenance()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")  # an uncommitted edit of the code
    assert provenance()["dirty"] is True


def test_main_list(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in adlib.available_detectors():
        assert name in text


def test_main_table(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    for c, v in ((0, 0.5), (1, 0.75)):
        append_row(path, {"key": str(c), "method": "m", "normal_class": c, "seed": 0,
                          "auroc": v})
    assert main(["table", str(path)]) == 0
    out = capsys.readouterr().out
    assert "62.5" in out  # mean of 50 and 75
    assert main(["table", str(tmp_path / "none.jsonl")]) == 1


def test_main_requires_a_command():
    with pytest.raises(SystemExit):
        main([])


def test_run_grid_outlier_ratios_and_dev_split(bench_mnist, tmp_path, monkeypatch):
    monkeypatch.delitem(data.TREE_DIGESTS, "MNIST")
    out = tmp_path / "r.jsonl"
    kwargs = dict(params={"n_estimators": 10}, out=out, root=bench_mnist.root, verbose=False)
    # 4 test normals: 1 anomaly makes 20%, 3 make about 43%
    run_grid("isolation_forest", "mnist", [0], (0,), outlier_ratios=(0.2, 0.43), **kwargs)
    row = read_rows(out)[0]
    assert sorted(row["by_outlier_ratio"]) == ["0.2", "0.43"]
    assert row["by_outlier_ratio"]["0.2"]["n_test"] == 5
    assert row["by_outlier_ratio"]["0.43"]["n_test"] == 7
    assert 0 <= row["f1"] <= 1 and "f1" in row["by_outlier_ratio"]["0.2"]
    # every F1 names its positive class; the best over thresholds bounds the one at the threshold
    for f1s in (row, row["by_outlier_ratio"]["0.2"], row["by_outlier_ratio"]["0.43"]):
        assert 0 <= f1s["f1"] <= f1s["best_f1"] <= 1
        assert 0 <= f1s["f1_normal"] <= f1s["best_f1_normal"] <= 1
    # the development split evaluates on training images only, under its own variant
    run_grid("isolation_forest", "mnist", [0], (0,), dev=True, **kwargs)
    dev = read_rows(out)[1]
    assert dev["variant"] == "default+dev"
    assert "development" in dev["protocol"]["evaluated_on"]
    assert dev["protocol"]["n_test"] == dev["protocol"]["n_val"] + 54  # all 54 other digits
    # a deep detector's development run records the development AUROC after every epoch
    run_grid("adacl", "mnist", [0], (0,), dev=True, out=out, root=bench_mnist.root,
             verbose=False, params={"num_epochs": 2, "batch_size": 16, "n_val": 4})
    deep = read_rows(out)[2]
    assert [0 <= h["track_auroc"] <= 1 for h in deep["history"]] == [True, True]
    assert deep["history"][deep["best_epoch"]]["track_auroc"] == pytest.approx(deep["auroc"])


def test_run_grid_few_shot_method_uses_the_anomaly_class_protocol(bench_mnist, tmp_path,
                                                                   monkeypatch):
    monkeypatch.delitem(data.TREE_DIGESTS, "MNIST")
    out = tmp_path / "adnl.jsonl"
    params = {"num_epochs": 1, "batch_size": 16, "widths": (4, 4, 8), "latent_dim": 2}
    run_grid("adnl", "mnist", [2], (0,), params=params, out=out, root=bench_mnist.root,
             verbose=False, protocol={"n_labelled": 3})
    row = read_rows(out)[0]
    assert row["variant"] == "default+n_labelled=3"
    assert row["protocol"]["protocol"] == "anomaly_class"
    assert row["protocol"]["anomaly_class"] == 2 and row["protocol"]["n_labelled"] == 3
    assert "negative" in row["history"][0]
    run_grid("adnl", "mnist", [2], (0,), params=params, out=out, root=bench_mnist.root,
             verbose=False, dev=True)  # every 2 labelled; a share held out to evaluate
    dev = read_rows(out)[1]
    assert dev["variant"] == "default+dev" and "negative" in dev["history"][0]
    assert "anomaly class" in dev["protocol"]["evaluated_on"]
    assert dev["protocol"]["n_test_anomalies"] > 0 and dev["protocol"]["n_labelled"] > 3
    with pytest.raises(ValueError, match="few-shot"):
        run_grid("isolation_forest", "mnist", [0], protocol={"n_labelled": 3},
                 root=bench_mnist.root, out=tmp_path / "x.jsonl", verbose=False)
