import math

import pytest
import torch
import torch.nn.functional as F

from mmlego.nn import LegoBlock, pad_bags


def snapshot(module):
    return {name: parameter.detach().clone() for name, parameter in module.named_parameters()}


def assert_unchanged(module, before):
    for name, parameter in module.named_parameters():
        assert torch.equal(parameter, before[name]), f"parameter {name} changed"


def test_block_latent_shape_and_dtype():
    block = LegoBlock(in_features=10, n_latents=6, latent_dim=12, n_outputs=3)
    z = block.encode(torch.randn(5, 10))
    assert z.shape == (5, 6, 12)
    assert z.dtype == torch.complex64
    assert block(torch.randn(5, 10)).shape == (5, 3)


def test_block_bag_input_shape():
    block = LegoBlock(in_features=7, encoder="gated_attention_mil", n_latents=4, latent_dim=8)
    x, mask = pad_bags([torch.randn(3, 7), torch.randn(5, 7)])
    assert block.encode(x, mask).shape == (2, 4, 8)
    assert block(x, mask).shape == (2, 4)


@pytest.mark.parametrize("frequency_domain", [True, False])
def test_forward_changes_no_parameter(frequency_domain):
    torch.manual_seed(0)
    block = LegoBlock(in_features=6, n_latents=4, latent_dim=8, depth=2, frequency_domain=frequency_domain)
    block.train()
    before = snapshot(block)
    x = torch.randn(3, 6)
    block(x)
    assert_unchanged(block, before)
    block(x, latent=torch.randn(3, 4, 8))
    assert_unchanged(block, before)
    block(x, latent=torch.randn(3, 4, 8, dtype=torch.complex64))
    assert_unchanged(block, before)
    block.encode(x, latent=torch.randn(3, 4, 8))
    assert_unchanged(block, before)


def test_passed_latent_is_used():
    torch.manual_seed(0)
    block = LegoBlock(in_features=6, n_latents=4, latent_dim=8).eval()
    x = torch.randn(3, 6)
    own = block.encode(x)
    same = block.encode(x, latent=block.latent.detach().expand(3, -1, -1).clone())
    other = block.encode(x, latent=torch.randn(3, 4, 8))
    torch.testing.assert_close(own, same)
    assert not torch.allclose(own, other)


def test_passed_latent_wrong_shape_raises():
    block = LegoBlock(in_features=6, n_latents=4, latent_dim=8)
    with pytest.raises(ValueError, match="latent must have shape"):
        block(torch.randn(3, 6), latent=torch.randn(3, 5, 8))


def test_wrong_feature_count_raises():
    block = LegoBlock(in_features=6)
    with pytest.raises(ValueError, match="input must have 6 features, found 5"):
        block(torch.randn(2, 5))


def test_frequency_latent_single_layer_by_hand():
    torch.manual_seed(0)
    block = LegoBlock(in_features=5, encoder=None, n_latents=4, latent_dim=6).eval()
    x = torch.randn(2, 5)
    z = block.encode(x)
    spectrum = torch.fft.fft(F.normalize(block.latent.detach(), dim=0), dim=0)  # (L, D)
    torch.testing.assert_close(z.imag, spectrum.imag.expand(2, -1, -1))
    layer = block.layers[0]
    tokens = x.unsqueeze(1)  # one token; Re FFT of one token is the token itself
    real = spectrum.real.expand(2, -1, -1)
    real = real + layer.cross_attention(real, tokens)
    real = real + layer.feed_forward(real)
    torch.testing.assert_close(z.real, real)


def test_track_imaginary_off_gives_zero_imaginary():
    block = LegoBlock(in_features=5, n_latents=4, latent_dim=6, track_imaginary=False)
    z = block.encode(torch.randn(3, 5))
    assert torch.equal(z.imag, torch.zeros_like(z.imag))
    tracked = LegoBlock(in_features=5, n_latents=4, latent_dim=6)
    assert tracked.encode(torch.randn(3, 5)).imag.abs().sum() > 0


def manual_attention(layer, latent, tokens, mask):
    attention = layer.cross_attention
    queries = attention.to_q(attention.norm_query(latent))
    keys, values = attention.to_kv(attention.norm_context(tokens)).chunk(2, dim=-1)
    batch, n_queries, _ = queries.shape
    heads, dim_head = attention.heads, attention.dim_head
    queries = queries.view(batch, n_queries, heads, dim_head).transpose(1, 2)
    keys = keys.view(batch, -1, heads, dim_head).transpose(1, 2)
    values = values.view(batch, -1, heads, dim_head).transpose(1, 2)
    scores = queries @ keys.transpose(-1, -2) / math.sqrt(dim_head)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    attended = (scores.softmax(dim=-1) @ values).transpose(1, 2).reshape(batch, n_queries, heads * dim_head)
    return attention.to_out(attended)


def manual_feed_forward(layer, latent):
    feed_forward = layer.feed_forward
    hidden = feed_forward.proj_in(feed_forward.norm(latent))
    value, gate = hidden.chunk(2, dim=-1)
    return feed_forward.proj_out(value * F.gelu(gate))


def test_frequency_off_is_plain_cross_attention():
    torch.manual_seed(0)
    block = LegoBlock(
        in_features=5, encoder=None, n_latents=4, latent_dim=6, depth=2, heads=2, dim_head=3,
        frequency_domain=False,
    ).eval()
    x, mask = pad_bags([torch.randn(3, 5), torch.randn(6, 5)])
    latent = block.latent.detach().expand(2, -1, -1)
    for index in range(2):
        layer = block.layers[index]
        latent = latent + manual_attention(layer, latent, x, mask)
        latent = latent + manual_feed_forward(layer, latent)
    z = block.encode(x, mask)
    torch.testing.assert_close(z.real, latent)
    assert torch.equal(z.imag, torch.zeros_like(z.imag))
    logits = block.head(latent.mean(dim=1))
    torch.testing.assert_close(block(x, mask), logits)


def test_weight_sharing_reuses_one_layer():
    shared = LegoBlock(in_features=5, depth=3, weight_sharing=True)
    separate = LegoBlock(in_features=5, depth=3, weight_sharing=False)
    assert len(shared.layers) == 1
    assert len(separate.layers) == 3
    assert shared.layer(0) is shared.layer(2)
    assert separate.layer(0) is not separate.layer(2)


def test_init_seed_gives_same_start():
    first = LegoBlock(in_features=5, init_seed=3)
    second = LegoBlock(in_features=9, init_seed=3)
    torch.testing.assert_close(first.latent, second.latent)
    torch.testing.assert_close(first.head[1].weight, second.head[1].weight)
    torch.testing.assert_close(first.layers[0].feed_forward.proj_in.weight, second.layers[0].feed_forward.proj_in.weight)


def test_init_seed_keeps_global_random_state():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    LegoBlock(in_features=5, encoder=None, init_seed=3)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("token_fft", [False, True])
def test_block_ignores_padding(token_fft):
    torch.manual_seed(0)
    block = LegoBlock(in_features=5, encoder=None, n_latents=4, latent_dim=6, token_fft=token_fft).eval()
    bag = torch.randn(4, 5)
    short, short_mask = pad_bags([bag])
    long, long_mask = pad_bags([bag, torch.randn(9, 5)])
    torch.testing.assert_close(block.encode(short, short_mask)[0], block.encode(long, long_mask)[0])


def test_block_token_fft_off_is_permutation_invariant():
    torch.manual_seed(0)
    block = LegoBlock(in_features=5, encoder=None, n_latents=4, latent_dim=6, token_fft=False).eval()
    bag = torch.randn(6, 5)
    permuted = bag[torch.randperm(6)]
    original = block.encode(*pad_bags([bag]))
    shuffled = block.encode(*pad_bags([permuted]))
    torch.testing.assert_close(original, shuffled)


def test_block_token_fft_on_depends_on_order():
    torch.manual_seed(0)
    block = LegoBlock(in_features=5, encoder=None, n_latents=4, latent_dim=6, token_fft=True).eval()
    bag = torch.randn(6, 5)
    original = block.encode(*pad_bags([bag]))
    shuffled = block.encode(*pad_bags([bag.flip(0)]))
    assert not torch.allclose(original, shuffled)
