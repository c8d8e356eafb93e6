import pytest
import torch

from mmlego.nn import LegoBlock, LegoFuse, pad_bags
from mmlego.survival import nll_survival_loss


def make_blocks(depth=1):
    torch.manual_seed(0)
    return {
        "genes": LegoBlock(in_features=6, n_latents=4, latent_dim=8, depth=depth).eval(),
        "slides": LegoBlock(
            in_features=5, encoder="gated_attention_mil", n_latents=4, latent_dim=8, depth=depth, token_fft=False
        ).eval(),
    }


def make_inputs(batch=3):
    torch.manual_seed(1)
    bags = [torch.randn(n, 5) for n in (2, 4, 3, 5, 1)][:batch]
    return {"genes": (torch.randn(batch, 6), None), "slides": pad_bags(bags)}


@pytest.mark.parametrize("mode", ["stack", "weave"])
def test_fuse_shapes(mode):
    fuse = LegoFuse(blocks=make_blocks(depth=2), mode=mode).eval()
    inputs = make_inputs()
    z = fuse.encode(inputs)
    assert z.shape == (3, 4, 8)
    assert z.dtype == torch.complex64
    assert fuse(inputs, torch.ones(3, 2, dtype=torch.bool)).shape == (3, 4)


def test_stack_chains_block_latents():
    fuse = LegoFuse(blocks=make_blocks(), mode="stack").eval()
    inputs = make_inputs()
    genes, slides = fuse.blocks["genes"], fuse.blocks["slides"]
    with torch.no_grad():
        first = genes.encode(*inputs["genes"])
        expected = slides.encode(*inputs["slides"], latent=first)
        torch.testing.assert_close(fuse.encode(inputs), expected)


def test_weave_equals_stack_at_depth_one():
    blocks = make_blocks(depth=1)
    inputs = make_inputs()
    with torch.no_grad():
        stacked = LegoFuse(blocks=blocks, mode="stack").eval().encode(inputs)
        woven = LegoFuse(blocks=blocks, mode="weave").eval().encode(inputs)
    torch.testing.assert_close(stacked, woven)


def test_weave_differs_from_stack_at_depth_two():
    blocks = make_blocks(depth=2)
    inputs = make_inputs()
    with torch.no_grad():
        stacked = LegoFuse(blocks=blocks, mode="stack").eval().encode(inputs)
        woven = LegoFuse(blocks=blocks, mode="weave").eval().encode(inputs)
    assert not torch.allclose(stacked, woven)


@pytest.mark.parametrize("mode", ["stack", "weave"])
def test_missing_modality_passes_latent_through(mode):
    fuse = LegoFuse(blocks=make_blocks(depth=2), mode=mode).eval()
    inputs = make_inputs()
    presence = torch.tensor([[True, False], [True, True], [False, False]])
    with torch.no_grad():
        z = fuse.encode(inputs, presence)
        genes_only = fuse.blocks["genes"].encode(*inputs["genes"])
        start = fuse.blocks["genes"].to_frequency(fuse.blocks["genes"].initial_latent(1))
    if mode == "stack":
        torch.testing.assert_close(z[0], genes_only[0])
    torch.testing.assert_close(z[2], start[0])
    assert not torch.allclose(z[1], z[0])


def test_fuse_copies_blocks():
    blocks = make_blocks()
    fuse = LegoFuse(blocks=blocks)
    assert fuse.blocks["genes"] is not blocks["genes"]


@pytest.mark.parametrize(
    "freeze, encoder_trainable, layer_trainable",
    [("none", True, True), ("encoders", False, True), ("blocks", False, False)],
)
def test_freeze_policies(freeze, encoder_trainable, layer_trainable):
    fuse = LegoFuse(blocks=make_blocks(), freeze=freeze)
    for block in fuse.blocks.values():
        assert all(p.requires_grad == encoder_trainable for p in block.encoder.parameters())
        assert all(p.requires_grad == layer_trainable for p in block.layers.parameters())
        assert block.latent.requires_grad == layer_trainable
    assert all(p.requires_grad for p in fuse.head.parameters())


def test_freeze_blocks_updates_only_head():
    fuse = LegoFuse(blocks=make_blocks(), freeze="blocks")
    before = {name: p.detach().clone() for name, p in fuse.named_parameters()}
    optimizer = torch.optim.SGD([p for p in fuse.parameters() if p.requires_grad], lr=0.1)
    logits = fuse(make_inputs())
    loss = nll_survival_loss(logits, torch.tensor([0, 1, 2]), torch.tensor([0.0, 1.0, 0.0]))
    loss.backward()
    optimizer.step()
    for name, parameter in fuse.named_parameters():
        changed = not torch.equal(parameter, before[name])
        assert changed == name.startswith("head."), f"{name} changed={changed}"


def test_fuse_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of"):
        LegoFuse(blocks=make_blocks(), mode="interleave")


def test_fuse_rejects_mismatched_latents():
    blocks = {"a": LegoBlock(in_features=3, latent_dim=8), "b": LegoBlock(in_features=3, latent_dim=16)}
    with pytest.raises(ValueError, match="same \\(n_latents, latent_dim"):
        LegoFuse(blocks=blocks)
