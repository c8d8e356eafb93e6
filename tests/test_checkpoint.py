import json

import pytest
import torch

from mmlego.checkpoint import load_model, save_model
from mmlego.nn import LegoBlock, LegoFuse, LegoMerge, pad_bags


def assert_same_state(first, second):
    first_state, second_state = first.state_dict(), second.state_dict()
    assert set(first_state) == set(second_state)
    for name, tensor in first_state.items():
        assert torch.equal(tensor, second_state[name]), name


def test_snn_block_round_trip(tmp_path):
    block = LegoBlock(in_features=7, encoder_kwargs={"hidden": [12, 6], "dropout": 0.2}, depth=2, init_seed=None)
    save_model(block, tmp_path / "block")
    loaded = load_model(tmp_path / "block")
    assert isinstance(loaded, LegoBlock)
    assert loaded.config == block.config
    assert_same_state(block, loaded)
    x = torch.randn(3, 7)
    torch.testing.assert_close(loaded(x), block.eval()(x))


def test_mil_block_round_trip(tmp_path):
    block = LegoBlock(
        in_features=5, encoder="gated_attention_mil",
        encoder_kwargs={"hidden": [8], "attention_dim": 4, "output": "both"}, token_fft=False, weight_sharing=True,
        depth=3,
    )
    weights_path, json_path = save_model(block, tmp_path / "mil.safetensors")
    assert weights_path.name == "mil.safetensors"
    description = json.loads(json_path.read_text())
    assert description["config"]["encoder"] == "gated_attention_mil"
    assert description["config"]["encoder_kwargs"]["output"] == "both"
    assert description["input_shapes"] == {"x": [None, 5]}
    loaded = load_model(tmp_path / "mil")
    x, mask = pad_bags([torch.randn(3, 5), torch.randn(6, 5)])
    torch.testing.assert_close(loaded(x, mask), block.eval()(x, mask))


def test_fuse_and_merge_round_trip(tmp_path):
    blocks = {"a": LegoBlock(in_features=4, n_latents=4, latent_dim=8), "b": LegoBlock(in_features=3, n_latents=4, latent_dim=8)}
    inputs = {"a": (torch.randn(2, 4), None), "b": (torch.randn(2, 3), None)}
    for model in (LegoFuse(blocks=blocks, mode="weave", freeze="encoders"), LegoMerge(blocks=blocks, weights=[1, 3])):
        save_model(model, tmp_path / type(model).__name__)
        loaded = load_model(tmp_path / type(model).__name__)
        assert type(loaded) is type(model)
        assert_same_state(model, loaded)
        torch.testing.assert_close(loaded(inputs), model.eval()(inputs))


def test_mismatched_shape_names_parameter(tmp_path):
    save_model(LegoBlock(in_features=7), tmp_path / "block")
    json_path = tmp_path / "block.json"
    description = json.loads(json_path.read_text())
    description["config"]["in_features"] = 9
    json_path.write_text(json.dumps(description))
    with pytest.raises(ValueError, match=r"'encoder\.net\.0\.weight' has shape \(256, 7\) in the checkpoint, expected \(256, 9\)"):
        load_model(tmp_path / "block")


def test_missing_parameter_is_named(tmp_path):
    save_model(LegoBlock(in_features=7, depth=1), tmp_path / "block")
    json_path = tmp_path / "block.json"
    description = json.loads(json_path.read_text())
    description["config"]["depth"] = 2
    json_path.write_text(json.dumps(description))
    with pytest.raises(ValueError, match=r"missing \['layers\.1\."):
        load_model(tmp_path / "block")


def test_custom_encoder_cannot_be_saved(tmp_path):
    block = LegoBlock(in_features=4, encoder=torch.nn.Linear(4, 4), token_dim=4)
    with pytest.raises(ValueError, match="custom encoder"):
        save_model(block, tmp_path / "block")


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        load_model(tmp_path / "absent")
