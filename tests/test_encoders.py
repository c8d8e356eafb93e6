import math

import pytest
import torch
from torch import nn

from mmlego.nn import LegoBlock, pad_bags
from mmlego.nn.encoders import SNN, GatedAttentionMIL, IdentityEncoder, build_encoder


def make_mil(output="pooled"):
    torch.manual_seed(0)
    return GatedAttentionMIL(in_features=6, hidden=[8], attention_dim=4, dropout=0.0, output=output).eval()


def test_pad_bags_shapes_and_mask():
    padded, mask = pad_bags([torch.ones(2, 3), torch.ones(4, 3), torch.ones(0, 3)])
    assert padded.shape == (3, 4, 3)
    assert mask.tolist() == [[True, True, False, False], [True] * 4, [False] * 4]
    assert torch.equal(padded[0, 2:], torch.zeros(2, 3))
    assert torch.equal(padded[2], torch.zeros(4, 3))


def test_pad_bags_rejects_mixed_widths():
    with pytest.raises(ValueError, match="feature width"):
        pad_bags([torch.ones(2, 3), torch.ones(2, 4)])


def test_snn_layers_and_shape():
    snn = SNN(in_features=20, hidden=[16, 8], dropout=0.1)
    assert sum(isinstance(m, nn.SELU) for m in snn.modules()) == 2
    assert sum(isinstance(m, nn.AlphaDropout) for m in snn.modules()) == 2
    tokens, mask = snn(torch.randn(4, 1, 20))
    assert tokens.shape == (4, 1, 8)
    assert mask.all()


def test_snn_lecun_normal_init():
    torch.manual_seed(0)
    snn = SNN(in_features=400, hidden=[300])
    weight = snn.net[0].weight
    assert abs(float(weight.detach().std()) - 1 / math.sqrt(400)) < 0.1 / math.sqrt(400)
    assert torch.equal(snn.net[0].bias, torch.zeros(300))


def test_identity_encoder_zeroes_padding():
    x = torch.ones(1, 3, 2)
    tokens, mask = IdentityEncoder(in_features=2)(x, torch.tensor([[True, False, True]]))
    assert tokens[0, 1].abs().sum() == 0
    assert tokens[0, 0].sum() == 2


def test_mil_ignores_padding():
    mil = make_mil()
    bag = torch.randn(5, 6)
    alone, alone_mask = mil(*pad_bags([bag]))
    padded, padded_mask = mil(*pad_bags([bag, torch.randn(12, 6)]))
    torch.testing.assert_close(alone[0], padded[0])
    assert alone_mask[0].item()
    assert padded_mask[0].item()


def test_mil_is_permutation_invariant():
    mil = make_mil()
    bag = torch.randn(7, 6)
    original, _ = mil(*pad_bags([bag]))
    shuffled, _ = mil(*pad_bags([bag[torch.randperm(7)]]))
    torch.testing.assert_close(original, shuffled)


def test_mil_softmax_is_per_bag():
    mil = make_mil()
    x, mask = pad_bags([torch.randn(4, 6), torch.randn(6, 6)])
    weights = mil.attention_weights(x, mask)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    assert torch.equal(weights[0, 4:], torch.zeros(2))
    changed = x.clone()
    changed[1] = torch.randn(6, 6)
    torch.testing.assert_close(mil(x, mask)[0][0], mil(changed, mask)[0][0])


def test_mil_all_padded_bag_gives_zero_not_nan():
    mil = make_mil()
    x, mask = pad_bags([torch.randn(3, 6), torch.zeros(0, 6)])
    pooled, pooled_mask = mil(x, mask)
    assert torch.isfinite(pooled).all()
    assert torch.equal(pooled[1], torch.zeros(1, 8))
    assert pooled_mask.tolist() == [[True], [False]]


@pytest.mark.parametrize("output, length", [("pooled", 1), ("tokens", 5), ("both", 6)])
def test_mil_output_modes(output, length):
    mil = make_mil(output)
    tokens, mask = mil(*pad_bags([torch.randn(5, 6), torch.randn(2, 6)]))
    assert tokens.shape == (2, length, 8)
    assert mask.shape == (2, length)


def test_block_with_mil_ignores_padding_and_order():
    torch.manual_seed(0)
    block = LegoBlock(
        in_features=6, encoder="gated_attention_mil", encoder_kwargs={"hidden": [8], "dropout": 0.0},
        n_latents=4, latent_dim=8, token_fft=False,
    ).eval()
    bag = torch.randn(5, 6)
    reference = block.encode(*pad_bags([bag]))[0]
    padded = block.encode(*pad_bags([bag, torch.randn(11, 6)]))[0]
    permuted = block.encode(*pad_bags([bag[torch.randperm(5)]]))[0]
    torch.testing.assert_close(reference, padded)
    torch.testing.assert_close(reference, permuted)


def test_build_encoder_unknown_name_raises():
    with pytest.raises(ValueError, match="unknown encoder 'resnet'"):
        build_encoder("resnet", in_features=3)


def test_block_wraps_custom_module():
    class Doubler(nn.Module):
        out_features = 4

        def forward(self, x, mask):
            return 2 * x, mask

    block = LegoBlock(in_features=4, encoder=Doubler(), n_latents=3, latent_dim=5)
    assert block(torch.randn(2, 4)).shape == (2, 4)
    assert not block.serialisable
