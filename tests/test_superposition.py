"""Tests for the toy models of superposition and their shipped checkpoints."""

import math
import socket

import pytest
import torch

from toy_models.checkpoints import SHIPPED_DIR, read_description, read_loss_curve
from toy_models.superposition import (
    SUPERPOSITION_RECIPES,
    SuperpositionConfig,
    SuperpositionModel,
    angular_gaps,
    antipodal_pairs,
    dimensions_per_feature,
    feature_dimensionality,
    headline_metrics,
    is_all_antipodal,
    is_pentagon,
    load_superposition,
    n_represented,
    select_instances,
    sparse_features,
    train_superposition,
)
from toy_models.train import train


def small_config(**changes) -> SuperpositionConfig:
    values = dict(n_features=5, n_hidden=2, n_instances=3, feature_probability=(1.0, 0.3, 0.05))
    return SuperpositionConfig(**{**values, **changes})


def unit_vectors_at(degrees: list[float]) -> torch.Tensor:
    """A [1, 2, features] W whose columns are unit vectors at the given angles."""
    radians = torch.deg2rad(torch.tensor(degrees))
    return torch.stack([radians.cos(), radians.sin()])[None]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---------------------------------------------------------------------------------------
# Config and data


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(n_features=0), "n_features"),
        (dict(n_hidden=-1), "n_hidden"),
        (dict(n_instances=2), "one probability per instance"),
        (dict(feature_probability=(1.0, 0.0, 0.5)), r"\(0, 1\]"),
        (dict(feature_probability=(1.0, 1.5, 0.5)), r"\(0, 1\]"),
        (dict(importance_decay=0.0), "importance_decay"),
        (dict(importance_decay=1.1), "importance_decay"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        small_config(**changes)


def test_config_stores_probabilities_as_a_tuple():
    config = small_config(feature_probability=[1.0, 0.3, 0.05])
    assert config.feature_probability == (1.0, 0.3, 0.05)
    hash(config)  # frozen and hashable


def test_sparse_features_shape_range_and_rate():
    config = small_config()
    x = sparse_features(20_000, config, torch.Generator().manual_seed(0))
    assert x.shape == (20_000, 3, 5)
    assert x.min() >= 0 and x.max() <= 1
    active_rate = (x > 0).float().mean(dim=(0, 2))
    torch.testing.assert_close(active_rate, torch.tensor([1.0, 0.3, 0.05]), atol=0.01, rtol=0)
    # Non-zero values are uniform in [0, 1], so their mean is about 1/2.
    assert abs(x[:, 1][x[:, 1] > 0].mean().item() - 0.5) < 0.01


def test_sparse_features_is_seeded():
    config = small_config()
    first = sparse_features(8, config, torch.Generator().manual_seed(3))
    second = sparse_features(8, config, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


# ---------------------------------------------------------------------------------------
# Model


def test_forward_shape_and_importance():
    config = small_config(importance_decay=0.5)
    model = SuperpositionModel(config, generator=torch.Generator().manual_seed(0))
    assert model.W.shape == (3, 2, 5) and model.b_final.shape == (3, 5)
    torch.testing.assert_close(model.importance, torch.tensor([1, 0.5, 0.25, 0.125, 0.0625]))
    x = sparse_features(7, config, torch.Generator().manual_seed(0))
    out = model(x)
    assert out.shape == (7, 3, 5) and out.min() >= 0


def test_forward_is_relu_of_WtWx_plus_b():
    model = SuperpositionModel(small_config(n_instances=1, feature_probability=(0.5,)))
    x = torch.rand(4, 1, 5)
    W, b = model.W[0], model.b_final[0]
    expected = torch.relu(x[:, 0] @ W.T @ W + b)
    torch.testing.assert_close(model(x)[:, 0], expected)


def test_loss_is_importance_weighted_and_summed_over_instances():
    model = SuperpositionModel(small_config(importance_decay=0.5))
    x = torch.zeros(2, 3, 5)
    x_hat = torch.zeros(2, 3, 5)
    x_hat[0, 0, 1] = 2.0  # error 4 on feature 1 (importance 0.5) in one of 2 batch rows
    x_hat[:, 2, 0] = 1.0  # error 1 on feature 0 (importance 1) in both rows of instance 2
    torch.testing.assert_close(model.loss_per_instance(x, x_hat), torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(model.loss(x, x_hat), torch.tensor(2.0))


def test_importance_is_not_saved_with_the_weights():
    assert set(SuperpositionModel(small_config()).state_dict()) == {"W", "b_final"}


def test_select_instances_keeps_weights_and_probabilities():
    model = SuperpositionModel(small_config(), generator=torch.Generator().manual_seed(0))
    chosen = select_instances(model, [2, 0])
    assert chosen.config.feature_probability == (0.05, 1.0)
    assert torch.equal(chosen.W, model.W[[2, 0]])


# ---------------------------------------------------------------------------------------
# Training


def test_training_is_deterministic_and_lowers_the_loss():
    config = small_config()
    arguments = dict(steps=60, batch_size=64, lr=1e-2, seed=1, progress=False)
    first, curve = train_superposition(config, **arguments)
    second, _ = train_superposition(config, **arguments)
    assert len(curve) == 60
    assert torch.equal(first.W, second.W)
    assert sum(curve[-10:]) < sum(curve[:10])
    assert not first.training


def test_training_restores_the_thread_count():
    before = torch.get_num_threads()
    train_superposition(small_config(), steps=2, batch_size=8, progress=False)
    assert torch.get_num_threads() == before


def test_restarts_return_one_model_per_instance():
    config = small_config()
    model, curve = train_superposition(config, steps=5, batch_size=8, restarts=3, progress=False)
    assert model.W.shape == (3, 2, 5)
    assert model.config == config
    assert len(curve) == 5
    with pytest.raises(ValueError, match="restarts"):
        train_superposition(config, steps=1, restarts=0, progress=False)


# ---------------------------------------------------------------------------------------
# Analysis on hand-made weights


def test_dimensionality_of_orthogonal_features_is_one():
    W = torch.eye(3)[None]  # 3 features, each with its own dimension
    torch.testing.assert_close(feature_dimensionality(W), torch.ones(1, 3))


def test_dimensionality_of_an_antipodal_pair_is_a_half():
    W = torch.tensor([[[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]])  # features 0, 1 share a line
    torch.testing.assert_close(feature_dimensionality(W), torch.tensor([[0.5, 0.5, 1.0]]))


def test_dimensionality_of_a_pentagon_is_two_fifths():
    W = unit_vectors_at([0, 72, 144, 216, 288])
    torch.testing.assert_close(feature_dimensionality(W), torch.full((1, 5), 0.4))


def test_dimensionality_of_an_unrepresented_feature_is_zero():
    W = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(feature_dimensionality(W), torch.tensor([[1.0, 0.0]]))


def test_dimensions_per_feature():
    two_orthogonal = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # third not represented
    square = unit_vectors_at([0, 90, 180, 270])  # two antipodal pairs
    torch.testing.assert_close(dimensions_per_feature(two_orthogonal), torch.tensor([1.0]))
    torch.testing.assert_close(dimensions_per_feature(square), torch.tensor([0.5]))


def test_n_represented_counts_columns_above_the_threshold():
    W = torch.tensor([[[1.0, 0.3, 0.0], [0.0, 0.3, 0.6]]])  # norms 1, 0.42, 0.6
    assert n_represented(W).tolist() == [2]
    assert n_represented(W, threshold=0.1).tolist() == [3]


def test_pentagon_and_square_geometry():
    pentagon = unit_vectors_at([10, 82, 154, 226, 298])[0]
    square = unit_vectors_at([0, 180, 90, 270, 45])[0]
    square[:, 4] *= 0.1  # the fifth feature is not represented
    torch.testing.assert_close(angular_gaps(pentagon), torch.full((5,), 72.0))
    assert is_pentagon(pentagon)
    assert not is_pentagon(square)
    assert not is_pentagon(unit_vectors_at([0, 60, 144, 216, 288])[0])  # one gap of 60 degrees
    assert antipodal_pairs(square) == [(0, 1), (2, 3)]
    assert is_all_antipodal(square) and not is_all_antipodal(pentagon)


# ---------------------------------------------------------------------------------------
# Shipped checkpoints


@pytest.mark.parametrize("name", sorted(SUPERPOSITION_RECIPES))
def test_shipped_checkpoint_loads_offline(name, no_network):
    directory = SHIPPED_DIR / name
    model = load_superposition(directory)
    recipe = SUPERPOSITION_RECIPES[name]
    assert model.config.n_features == recipe["config"]["n_features"]
    assert model.config.feature_probability == tuple(recipe["config"]["feature_probability"])
    assert len(read_loss_curve(directory)) == recipe["training"]["steps"]
    for file in directory.iterdir():
        assert file.stat().st_size < 1_000_000
    x = sparse_features(4, model.config, torch.Generator().manual_seed(0))
    assert model(x).shape == x.shape


@pytest.mark.parametrize("name", sorted(SUPERPOSITION_RECIPES))
def test_stored_metrics_match_the_stored_weights(name):
    directory = SHIPPED_DIR / name
    stored = read_description(directory)["metrics"]
    recomputed = headline_metrics(load_superposition(directory), read_loss_curve(directory))
    for key, value in recomputed.items():
        # The loss curve is stored rounded to 5 decimals.
        assert stored[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key


def test_shipped_5_2_shows_the_classic_geometry():
    model = load_superposition(SHIPPED_DIR / "superposition-5-2")
    W = model.W.detach()
    represented = n_represented(W)
    assert represented[0] == 2 and represented[-1] == 5
    densest = W[0][:, :2]  # the two most important features, orthogonal
    assert abs(torch.nn.functional.cosine_similarity(densest[:, 0], densest[:, 1], dim=0)) < 0.05
    assert is_pentagon(W[-1], tolerance_degrees=3.0)
    assert any(is_all_antipodal(w) for w in W[1:-1])  # antipodal pairs in between


def test_shipped_100_20_sticks_at_one_and_a_half():
    model = load_superposition(SHIPPED_DIR / "superposition-100-20")
    W = model.W.detach()
    per_feature = dimensions_per_feature(W)
    assert per_feature[0] == pytest.approx(1.0, abs=0.01)
    assert (per_feature[1:] < per_feature[:-1] + 0.02).all()  # sparser -> more features per dim
    metrics = read_description(SHIPPED_DIR / "superposition-100-20")["metrics"]
    assert metrics["n_instances_90pct_near_half"] >= 3
    assert metrics["n_represented_sparsest"] == 100


def test_rebuilding_5_2_reproduces_the_shipped_metrics(tmp_path):
    """The one slow test (about 10 s): retrain from the recipe and compare."""
    name = "superposition-5-2"
    rebuilt = train(name, tmp_path, progress=False)  # what `mi-course train superposition-5-2 --out DIR` runs
    assert (tmp_path / "model.safetensors").exists()
    shipped = read_description(SHIPPED_DIR / name)["metrics"]
    for key, value in shipped.items():
        if key == "train_seconds":
            continue
        if key in ("final_loss", "sparsest_max_gap_error_degrees"):
            assert math.isclose(rebuilt[key], value, rel_tol=0.02, abs_tol=0.5), key
        else:
            assert rebuilt[key] == value, key
