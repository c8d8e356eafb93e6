import logging
import re

import numpy as np
import pytest
import torch
from torch import nn

from mmlego.nn import LegoBlock, LegoFuse
from mmlego.survival import assign_bins, fit_bin_edges
from mmlego.training import SurvivalDataset, TrainConfig, predict_logits, train_model


@pytest.fixture(autouse=True)
def single_thread():
    # One intra-op thread is faster for these small models and avoids oversubscribing the CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_dataset(size=80, seed=0, with_bags=False):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(size, 6)).astype(np.float32)
    times = rng.exponential(scale=np.exp(-features[:, 0])) * 100 + 1
    censorship = (rng.uniform(size=size) < 0.3).astype(np.float32)
    labels = assign_bins(times, fit_bin_edges(times, censorship))
    modalities = {"genes": torch.tensor(features)}
    if with_bags:
        modalities["slides"] = [torch.tensor(rng.normal(size=(int(n), 5)), dtype=torch.float32)
                                for n in rng.integers(0, 6, size=size)]
    return SurvivalDataset(modalities=modalities, times=times, censorship=censorship, labels=labels)


def make_block():
    torch.manual_seed(0)
    return LegoBlock(in_features=6, n_latents=4, latent_dim=8, encoder_kwargs={"hidden": [16]})


def weights(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_dataset_batch_pads_bags():
    dataset = make_dataset(size=10, with_bags=True)
    batch = dataset.batch([0, 1, 2])
    x, mask = batch.inputs["slides"]
    lengths = [dataset.modalities["slides"][i].shape[0] for i in range(3)]
    assert x.shape[:2] == (3, max(1, max(lengths)))
    assert mask.sum(dim=1).tolist() == lengths
    assert batch.presence[:, 1].tolist() == [n > 0 for n in lengths]
    assert batch.inputs["genes"][1] is None


def test_dataset_rejects_length_mismatch():
    with pytest.raises(ValueError, match="has 3 patients, expected 4"):
        SurvivalDataset(modalities={"a": torch.zeros(3, 2)}, times=[1, 2, 3, 4], censorship=[0] * 4, labels=[0] * 4)


def test_early_stopping_restores_best_epoch():
    data = make_dataset()
    train, val = data.subset(range(60)), data.subset(range(60, 80))
    config = TrainConfig(max_epochs=6, patience=10, batch_size=16, lr=1e-2)

    after_first = make_block()
    train_model(after_first, train, val, config=TrainConfig(max_epochs=1, batch_size=16, lr=1e-2))

    scripted = iter([0.9, 0.5, 0.4, 0.3, 0.2, 0.1])
    restored = make_block()
    result = train_model(restored, train, val, config=config, val_metric=lambda model, dataset: next(scripted))

    last = make_block()
    rising = iter([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    train_model(last, train, val, config=config, val_metric=lambda model, dataset: next(rising))

    assert result.best_epoch == 1
    assert len(result.history) == 6
    for name, tensor in weights(restored).items():
        torch.testing.assert_close(tensor, weights(after_first)[name], msg=f"{name} is not from epoch 1")
    assert any(not torch.equal(tensor, weights(last)[name]) for name, tensor in weights(restored).items())


def test_patience_stops_training():
    data = make_dataset()
    falling = iter([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1])
    result = train_model(
        make_block(), data.subset(range(60)), data.subset(range(60, 80)),
        config=TrainConfig(max_epochs=8, patience=2, batch_size=16),
        val_metric=lambda model, dataset: next(falling),
    )
    assert len(result.history) == 3
    assert result.gradient_steps == 3 * 4  # 60 patients in batches of 16


def test_gradient_steps_and_log_line(caplog):
    data = make_dataset()
    with caplog.at_level(logging.INFO, logger="mmlego.training"):
        result = train_model(
            make_block(), data.subset(range(60)), data.subset(range(60, 80)),
            config=TrainConfig(max_epochs=2, patience=5, batch_size=32), fold=3,
        )
    assert result.gradient_steps == 2 * 2
    assert result.monitor == "val_c_index"
    pattern = re.compile(r"^fold=3 epoch=\d+ loss=\S+ val_c=\S+ seconds=\S+ val_loss=\S+$")
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("fold=3 epoch=")]
    assert len(lines) == 2
    assert all(pattern.match(line) for line in lines)


def test_validation_without_events_falls_back_to_loss():
    data = make_dataset()
    val = data.subset(range(60, 80))
    val.censorship[:] = 1.0
    result = train_model(make_block(), data.subset(range(60)), val, config=TrainConfig(max_epochs=2))
    assert result.monitor == "val_loss"
    assert np.isfinite(result.best_score)


def test_loss_monitor_option():
    data = make_dataset()
    result = train_model(
        make_block(), data.subset(range(60)), data.subset(range(60, 80)),
        config=TrainConfig(max_epochs=2, monitor="loss"),
    )
    assert result.monitor == "val_loss"
    assert result.best_score == pytest.approx(-min(entry["val_loss"] for entry in result.history))


def test_unknown_monitor_raises():
    data = make_dataset()
    with pytest.raises(ValueError, match="monitor must be"):
        train_model(make_block(), data, data, config=TrainConfig(monitor="auc"))


def test_training_is_seeded():
    data = make_dataset()
    first, second = make_block(), make_block()
    for model in (first, second):
        train_model(model, data.subset(range(60)), data.subset(range(60, 80)), config=TrainConfig(max_epochs=2))
    for name, tensor in weights(first).items():
        torch.testing.assert_close(tensor, weights(second)[name])


def test_trains_plain_early_fusion_network():
    data = make_dataset()
    model = nn.Sequential(nn.Linear(6, 16), nn.SELU(), nn.Linear(16, 4))
    result = train_model(model, data.subset(range(60)), data.subset(range(60, 80)), config=TrainConfig(max_epochs=3))
    assert result.gradient_steps > 0
    assert predict_logits(model, data).shape == (80, 4)


def test_trains_lego_fuse_and_keeps_blocks():
    data = make_dataset(with_bags=True)
    torch.manual_seed(0)
    blocks = {
        "genes": LegoBlock(in_features=6, n_latents=4, latent_dim=8),
        "slides": LegoBlock(in_features=5, encoder="gated_attention_mil", n_latents=4, latent_dim=8, token_fft=False),
    }
    before = weights(blocks["genes"])
    fuse = LegoFuse(blocks=blocks, mode="weave", freeze="encoders")
    result = train_model(fuse, data.subset(range(60)), data.subset(range(60, 80)), config=TrainConfig(max_epochs=2))
    assert result.gradient_steps == 2 * 2
    assert predict_logits(fuse, data).shape == (80, 4)
    for name, tensor in weights(blocks["genes"]).items():
        assert torch.equal(tensor, before[name])
