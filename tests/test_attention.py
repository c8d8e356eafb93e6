import pytest
import torch

from mmlego.nn.attention import CrossAttention, FeedForward


def make_attention(**kwargs):
    torch.manual_seed(0)
    return CrossAttention(query_dim=8, context_dim=5, heads=2, dim_head=4, **kwargs).eval()


def test_cross_attention_shape():
    attention = make_attention()
    update = attention(torch.randn(3, 6, 8), torch.randn(3, 7, 5))
    assert update.shape == (3, 6, 8)


def test_cross_attention_ignores_masked_tokens():
    attention = make_attention()
    latent = torch.randn(2, 4, 8)
    tokens = torch.randn(2, 6, 5)
    mask = torch.tensor([[True, True, True, False, False, False], [True] * 6])
    changed = tokens.clone()
    changed[0, 3:] = 100.0  # only masked positions change
    before = attention(latent, tokens, mask)
    after = attention(latent, changed, mask)
    torch.testing.assert_close(before, after)


def test_cross_attention_matches_truncated_tokens():
    attention = make_attention()
    latent = torch.randn(1, 4, 8)
    tokens = torch.randn(1, 6, 5)
    mask = torch.tensor([[True, True, True, False, False, False]])
    padded = attention(latent, tokens, mask)
    truncated = attention(latent, tokens[:, :3])
    torch.testing.assert_close(padded, truncated)


def test_cross_attention_all_masked_row_is_zero():
    attention = make_attention()
    mask = torch.tensor([[False, False], [True, False]])
    update = attention(torch.randn(2, 3, 8), torch.randn(2, 2, 5), mask)
    assert torch.isfinite(update).all()
    assert torch.equal(update[0], torch.zeros(3, 8))
    assert update[1].abs().sum() > 0


def test_cross_attention_rejects_wrong_mask_shape():
    attention = make_attention()
    with pytest.raises(ValueError, match="token mask must have shape"):
        attention(torch.randn(2, 3, 8), torch.randn(2, 4, 5), torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("activation", ["geglu", "gelu"])
def test_feed_forward_shape(activation):
    feed_forward = FeedForward(dim=8, mult=2, activation=activation)
    assert feed_forward(torch.randn(3, 5, 8)).shape == (3, 5, 8)


def test_feed_forward_geglu_formula():
    torch.manual_seed(1)
    feed_forward = FeedForward(dim=4, mult=2, activation="geglu").eval()
    x = torch.randn(2, 3, 4)
    hidden = feed_forward.proj_in(feed_forward.norm(x))
    value, gate = hidden[..., :8], hidden[..., 8:]
    expected = feed_forward.proj_out(value * torch.nn.functional.gelu(gate))
    torch.testing.assert_close(feed_forward(x), expected)


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation must be"):
        FeedForward(dim=4, activation="relu")
