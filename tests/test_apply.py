"""Fit once on a folder of your own images, score new ones: ``python -m adlib fit`` / ``score``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from adlib.apply import fit_and_save, load_model, score_files
from adlib.cli import main
from adlib.training import load_checkpoint

SIDE = 16


def _ramp(rng, side=SIDE) -> np.ndarray:
    ramp = np.linspace(40, 200, side)[:, None] * np.ones((1, side))
    return np.clip(ramp + rng.normal(0, 4, ramp.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def mvtec(tmp_path):
    """An MVTec AD layout: ramps are good; a bright square is the defect ``spot``, with masks."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mydata"
    for sub in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (root / sub).mkdir(parents=True)
    for i in range(40):
        Image.fromarray(_ramp(rng)).save(root / "train/good" / f"{i:03d}.png")
    for i in range(6):
        Image.fromarray(_ramp(rng)).save(root / "test/good" / f"{i:03d}.png")
        img, mask = _ramp(rng), np.zeros((SIDE, SIDE), np.uint8)
        img[4:9, 4:9], mask[4:9, 4:9] = 255, 255
        Image.fromarray(img).save(root / "test/spot" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "ground_truth/spot" / f"{i:03d}_mask.png")
    return root


def test_fit_then_score_a_folder_from_the_command_line(mvtec, tmp_path, capsys):
    model, csv = tmp_path / "model.pt", tmp_path / "out" / "scores.csv"
    assert main(["fit", "conv_ae", "--dataset", str(mvtec), "--save", str(model),
                 "--epochs", "2", "--quiet"]) == 0
    state = load_checkpoint(model)  # weights_only=True
    assert state["method"] == "conv_ae" and state["input_shape"] == [1, SIDE, SIDE]
    assert state["preprocess"]["channels"] == 1 and state["class_name"] == "good"
    assert main(["score", str(model), str(mvtec / "test"), "--csv", str(csv), "--quiet"]) == 0
    table = pd.read_csv(csv)
    assert len(table) == 12 and list(table.columns) == ["path", "score", "label", "threshold",
                                                         "map"]
    assert set(table["label"]) <= {0, 1}
    assert (table["label"] == (table["score"] >= table["threshold"])).all()
    maps = sorted((tmp_path / "out" / "scores_maps").glob("*.png"))
    assert len(maps) == 12 and np.asarray(Image.open(maps[0])).shape == (SIDE, SIDE)
    assert "12 images" in capsys.readouterr().out


def test_scores_match_the_fitted_detector_and_maps_its_error(mvtec, tmp_path):
    model = tmp_path / "model.pt"
    det = fit_and_save("conv_ae", str(mvtec), model, params={"num_epochs": 1},
                       verbose=False)
    table = score_files(model, [mvtec / "test" / "spot"], verbose=False)
    loaded, preprocess = load_model(model)
    images = torch.stack([torch.from_numpy(np.array(Image.open(p)))[None]
                          for p in table["path"]])
    np.testing.assert_allclose(table["score"], det.score(preprocess(images)), rtol=1e-5)
    assert "map" not in table  # no CSV, no maps
    assert loaded.threshold_ == pytest.approx(det.threshold_)


def test_score_refuses_another_shape_and_other_files(mvtec, tmp_path, capsys):
    model = tmp_path / "model.pt"
    fit_and_save("conv_ae", str(mvtec), model, params={"num_epochs": 1}, verbose=False)
    big = tmp_path / "big.png"
    Image.fromarray(_ramp(np.random.default_rng(1), side=20)).save(big)
    capsys.readouterr()  # the fit's progress bars
    assert main(["score", str(model), str(big)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress bar, one line, no traceback
    assert "big.png" in last and "--size" in last and "Traceback" not in err
    not_a_model = tmp_path / "w.pt"
    torch.save({"state_dict": {}}, not_a_model)
    assert main(["score", str(not_a_model), str(big)]) == 2
    assert "not a model saved by" in capsys.readouterr().err
    assert main(["score", str(model), str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["score", str(model), str(tmp_path / "empty")]) == 2
    assert "no image file" in capsys.readouterr().err


def test_fit_with_size_resizes_every_image_and_refuses_models_without_weights(mvtec, tmp_path,
                                                                            capsys):
    model = tmp_path / "model.pt"
    fit_and_save("conv_ae", str(mvtec), model, size=8, params={"num_epochs": 1},
                 verbose=False)
    big = tmp_path / "big.png"
    Image.fromarray(_ramp(np.random.default_rng(1), side=20)).save(big)
    assert len(score_files(model, big, verbose=False)) == 1  # resized to 8 x 8 as in fit
    capsys.readouterr()
    assert main(["fit", "isolation_forest", "--dataset", str(mvtec), "--save",
                 str(tmp_path / "f.pt")]) == 2
    assert "no network to save" in capsys.readouterr().err


def test_bench_takes_a_folder_as_its_dataset(mvtec, tmp_path):
    out = tmp_path / "rows.jsonl"
    assert main(["bench", "conv_ae", "--dataset", str(mvtec), "--epochs", "1", "--out",
                 str(out), "--quiet"]) == 0
    (row,) = pd.read_json(out, lines=True).to_dict("records")
    assert row["normal_class"] == 0 and row["class_name"] == "good"  # not every class
    assert 0 <= row["auroc"] <= 1 and row["protocol"]["n_test_anomalies"] == 6
    assert main(["bench", "conv_ae", "--dataset", str(mvtec), "--epochs", "1", "--size", "8",
                 "--out", str(out), "--quiet"]) == 0
    resized = pd.read_json(out, lines=True).to_dict("records")[1]
    assert resized["variant"] == "default+size=8"
    assert resized["protocol"]["preprocess"]["size"] == 8
