"""The leaderboard's tables, ranks, critical difference and cost columns."""
import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adlib import bench, leaderboard as lb
from adlib.leaderboard import Entry


def rows(method, variant, aurocs, seeds=(0,), dataset="mnist", quick=False):
    """Results rows: ``aurocs[seed][class]``."""
    out = []
    for s, per_class in zip(seeds, aurocs):
        for c, a in enumerate(per_class):
            out.append({"key": f"{method}-{variant}-{c}-{s}-{quick}", "method": method,
                        "variant": variant, "dataset": dataset, "normal_class": c, "seed": s,
                        "auroc": a, "quick": quick})
    return out


ENTRIES = [Entry("a", "default", "A", "chapter", {"mnist": [90.0, 100.0]}, "paper A"),
           Entry("b", "full", "B", "baseline", {"mnist": 50.0}),
           Entry("c", "default", "C", "peer")]


def frame():
    return pd.DataFrame(rows("a", "default", [[0.9, 0.8], [0.7, 0.8]], seeds=(0, 1))
                        + rows("b", "full", [[0.6, 0.9]]) + rows("b", "other", [[1.0, 1.0]])
                        + rows("c", "default", [[0.5]]) + rows("a", "default", [[0.1, 0.1]],
                                                                quick=True)
                        + rows("a", "default", [[0.99, 0.99]], dataset="cifar10"))


def test_leaderboard_means_stds_seeds_and_paper():
    table = lb.leaderboard(frame(), "mnist", ENTRIES)
    assert list(table.index) == ["A", "B", "C"]  # means 80, 75, 50 (variant and quick filtered)
    others = frame()[frame()["method"] != "c"]
    one_easy_class = pd.concat([others, pd.DataFrame(rows("c", "default", [[0.99]]))])
    ranked = lb.leaderboard(one_easy_class, "mnist", ENTRIES)
    assert ranked.loc["C", "mean"] == 99 and ranked.index[-1] == "C"  # 1 class: last
    assert table.loc["A", 0] == pytest.approx(80.0) and table.loc["A", "mean"] == pytest.approx(80)
    # per-seed means 85 and 75: sample std 7.07; B has one seed, so no std
    assert table.loc["A", "std"] == pytest.approx(7.07, abs=0.01)
    assert np.isnan(table.loc["B", "std"])
    assert table.loc["A", "seeds"] == "2-2" and table.loc["C", "classes"] == 1
    assert table.loc["A", "paper"] == 95.0 and table.loc["B", "paper"] == 50.0
    assert np.isnan(table.loc["C", "paper"]) and table.loc["B", "kind"] == "baseline"


def test_a_run_repeated_in_two_files_counts_once():
    df = frame()
    twice = pd.concat([df, df.iloc[:1].assign(auroc=0.5)], ignore_index=True)
    assert lb.leaderboard(twice, "mnist", ENTRIES).loc["A", 0] == pytest.approx(60.0)


def test_a_repeated_run_counts_at_its_newest_revision_whatever_the_file_order():
    df = frame()
    old = df.iloc[:1].assign(auroc=0.5, config=[{"revision": 2}], finished="2026-11-29T10")
    new = df.iloc[:1].assign(auroc=0.7, config=[{"revision": 3}], finished="2026-11-29T09")
    for parts in ([df.iloc[1:], new, old], [df.iloc[1:], old, new]):  # files read in any order
        table = lb.leaderboard(pd.concat(parts, ignore_index=True), "mnist", ENTRIES)
        assert table.loc["A", 0] == pytest.approx(70.0)  # seeds 0.7, 0.7 (revision 2: 60)
    legacy = df.iloc[:1].assign(auroc=0.5)  # no config: revision 1, older than revision 3
    table = lb.leaderboard(pd.concat([df.iloc[1:], new, legacy], ignore_index=True), "mnist",
                           ENTRIES)
    assert table.loc["A", 0] == pytest.approx(70.0)


def test_ranks_skip_incomplete_entries_and_average_ties():
    table = lb.leaderboard(frame(), "mnist", ENTRIES)
    ranks = lb.class_ranks(table)
    assert list(ranks.index) == ["A", "B"]  # C lacks class 1
    assert ranks.loc["A", 0] == 1 and ranks.loc["B", 1] == 1
    tied = pd.DataFrame({0: [0.5, 0.5, 0.4], 1: [0.9, 0.8, 0.7]}, index=list("xyz"))
    assert lb.class_ranks(tied)[0].tolist() == [1.5, 1.5, 3.0]
    assert lb.average_ranks(tied).index.tolist() == ["x", "y", "z"]


def test_nemenyi_critical_difference_matches_demsar():
    # Demsar 2006, Table 5: q_0.05 = 2.569 for 4 classifiers; CD = q sqrt(k(k+1)/(6N))
    assert lb.nemenyi_cd(4, 10) == pytest.approx(2.569 * np.sqrt(20 / 60), abs=1e-3)
    assert lb.nemenyi_cd(2, 5) == pytest.approx(1.960 * np.sqrt(6 / 30), abs=1e-3)
    with pytest.raises(ValueError, match="at least 2 entries"):
        lb.nemenyi_cd(1, 10)


def test_cost_table_reads_the_cost_rows_and_falls_back_on_the_board():
    common = {"dataset": "mnist", "normal_class": 0, "torch_threads": 2, "gpu": None,
              "quick": False, "seed": 0}
    df = pd.DataFrame([{"key": "1", "method": "a", "variant": "cost", "n_params": 1234,
                        "fit_s": 12.34, "score_s": 2.0, "protocol": {"n_test": 1000}, **common},
                       {"key": "2", "method": "b", "variant": "default", "fit_s": 1.0,
                        "score_s": 1.0, "protocol": {"n_test": 10}, **common},
                       {"key": "3", "method": "c", "variant": "default", "fit_s": 7.0,
                        "score_s": 1.0, "protocol": {"n_test": 10}, **common}])
    cost = lb.cost_table(df, ENTRIES)
    assert list(cost.index) == ["A", "C"]  # B's board variant is "full", not "default"
    assert cost.loc["A", "images / s"] == 500 and cost.loc["A", "parameters"] == 1234
    assert cost.loc["A", "train s / class"] == 12.3 and cost.loc["A", "from"] == "cost run"
    assert cost.loc["C", "from"] == "its leaderboard row" and cost.loc["C", "images / s"] == 10
    assert lb.cost_table(pd.DataFrame(), ENTRIES).empty


def test_n_params_counts_each_trainable_parameter_once():
    import torch

    class Holder:
        pass

    det, net = Holder(), torch.nn.Linear(3, 2)
    det.network_, det.alias_ = net, net
    assert bench.n_params(det) == 8
    net.bias.requires_grad_(False)
    assert bench.n_params(det) == 6
    assert bench.n_params(Holder()) is None
    det.n_params_ = 42  # another library's count wins
    assert bench.n_params(det) == 42


def test_every_entry_names_a_kind_the_notebook_colours():
    assert {e.kind for e in lb.ENTRIES} <= {"chapter", "baseline", "peer"}
    assert len({e.label for e in lb.ENTRIES}) == len(lb.ENTRIES)


def test_run_cost_rejects_an_unknown_entry():
    with pytest.raises(ValueError, match="no leaderboard entry"):
        bench.run_cost(methods=["nope"])


def test_the_leaderboard_imports_no_runner_and_no_command_line():
    tree = ast.parse(Path(lb.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"bench", "cli", "adlib.bench", "adlib.cli"}


def test_installed_needs_the_registry_and_the_wrapped_library(monkeypatch):
    from adlib.registry import detector_class

    assert lb.installed("isolation_forest") and not lb.installed("no_such_detector")
    monkeypatch.setattr(detector_class("isolation_forest"), "requires", "no_such_lib.sub",
                        raising=False)
    assert not lb.installed("isolation_forest")
