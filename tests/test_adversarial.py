"""The GTSRB stop-sign protocol with Boundary-Attack anomalies, on generated GTSRB files."""
import numpy as np
import pytest
import torch
from test_data import write_gtsrb

from adlib import adversarial, data


def test_boundary_attack_changes_the_prediction_of_a_fixed_classifier():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    x = torch.rand(3, 3, 8, 8)
    y = model(x).argmax(1)
    adv, success = adversarial.boundary_attack(model, x, y, steps=50, seed=0)
    assert adv.shape == x.shape and success.all()
    assert (model(adv).argmax(1) != y).all()           # misclassified ...
    assert ((adv >= 0) & (adv <= 1)).all()             # ... and still an image


def test_gtsrb_stop_sign_protocol_tests_normals_against_adversarial_ones(tmp_path):
    write_gtsrb(tmp_path, per_class=4, n_test=12)
    split = adversarial.gtsrb_stop_signs(seed=0, n_adversarial=3, steps=30,
                                         classifier_epochs=2, root=tmp_path)
    assert split.normal_class == data.GTSRB_STOP
    assert len(split.X_train) + len(split.X_val) == 4          # the training stop signs
    assert (split.y_test == 0).sum() == 6                      # every test stop sign
    assert 1 <= (split.y_test == 1).sum() <= 3                 # the successful attacks
    assert split.X_test.shape[1:] == (3, 32, 32)
    attacked = split.info["attacked"]
    assert set(attacked) <= set(np.flatnonzero(np.array([14, 3, 14, 42, 0, 14] * 2) == 14))
    # cached: a second call reads the same adversarial images without attacking again
    assert list((data.cache_dir() / "decoded").glob("gtsrb-stop-adversarial-*.pt"))
    again = adversarial.gtsrb_stop_signs(seed=0, n_adversarial=3, steps=30,
                                         classifier_epochs=2, root=tmp_path)
    assert torch.equal(split.X_test, again.X_test)


def test_gtsrb_stop_sign_protocol_needs_stop_signs(tmp_path):
    with pytest.raises(data.DataError, match="not found"):
        adversarial.gtsrb_stop_signs(root=tmp_path)
    empty = data.ImageSet(torch.zeros(0, 3, 8, 8, dtype=torch.uint8),
                          torch.zeros(0, dtype=torch.int64), ["a"], "empty")
    with pytest.raises(data.DataError, match="empty"):
        adversarial.train_sign_classifier(empty)
