import math

import pytest
import torch

from mmlego.nn import LegoBlock, LegoMerge, merge_heads, merge_latents, merge_tensors, slerp


def complex_latent(magnitude, angle, shape=(1, 1, 2, 3)):
    return torch.polar(torch.full(shape, float(magnitude)), torch.full(shape, float(angle)))


def test_harmonic_identical_latents_unchanged():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 5, dtype=torch.complex64)
    merged = merge_latents([z, z, z], method="harmonic", eps=1e-8)
    torch.testing.assert_close(merged.abs(), z.abs())
    torch.testing.assert_close(merged.angle(), z.angle())


@pytest.mark.parametrize("count", [2, 3, 4])
def test_harmonic_by_hand(count):
    magnitudes = [1.0, 2.0, 4.0, 8.0][:count]
    latents = torch.cat([complex_latent(m, 0.3) for m in magnitudes], dim=1)  # (1, K, 2, 3)
    merged = merge_latents(latents, eps=0.0)
    expected = count / sum(1 / m for m in magnitudes)
    torch.testing.assert_close(merged.abs(), torch.full((1, 2, 3), expected))
    torch.testing.assert_close(merged.angle(), torch.full((1, 2, 3), 0.3))


def test_harmonic_phase_is_circular_mean():
    latents = torch.cat([complex_latent(1, math.radians(170)), complex_latent(1, math.radians(-170))], dim=1)
    merged = merge_latents(latents)
    assert torch.allclose(merged.angle().abs(), torch.tensor(math.pi), atol=1e-5)


def test_harmonic_weights_shift_toward_heavier():
    latents = torch.cat([complex_latent(1.0, 0.0), complex_latent(3.0, 1.0)], dim=1)
    equal = merge_latents(latents, weights=[1, 1])
    heavy_second = merge_latents(latents, weights=[1, 4])
    assert float(heavy_second.abs().mean()) > float(equal.abs().mean())
    assert float(heavy_second.angle().mean()) > float(equal.angle().mean())
    heavy_first = merge_latents(latents, weights=[4, 1])
    assert float(heavy_first.abs().mean()) < float(equal.abs().mean())
    assert float(heavy_first.angle().mean()) < float(equal.angle().mean())


@pytest.mark.parametrize("method", ["harmonic", "sum", "mean"])
def test_missing_modality_equals_merging_others(method):
    torch.manual_seed(1)
    latents = torch.randn(3, 4, 2, 5, dtype=torch.complex64)  # (B, K=4, L, D)
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    presence = torch.tensor([[True, False, True, True]] * 3)
    merged = merge_latents(latents, presence, weights, method=method)
    kept = [0, 2, 3]
    expected = merge_latents(latents[:, kept], None, weights[kept], method=method)
    torch.testing.assert_close(merged, expected)


def test_patient_without_modalities_gets_zero_latent():
    latents = torch.randn(2, 2, 3, 4, dtype=torch.complex64)
    presence = torch.tensor([[True, True], [False, False]])
    for method in ("harmonic", "sum", "mean"):
        merged = merge_latents(latents, presence, method=method)
        assert torch.isfinite(merged.real).all()
        assert torch.equal(merged[1], torch.zeros(3, 4, dtype=torch.complex64))


def test_merge_rejects_wrong_weight_count():
    with pytest.raises(ValueError, match="expected 2 weights"):
        merge_latents(torch.randn(1, 2, 3, 4, dtype=torch.complex64), weights=[1, 2, 3])


def test_slerp_endpoints():
    torch.manual_seed(0)
    start, end = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(slerp(start, end, 0.0), start)
    torch.testing.assert_close(slerp(start, end, 1.0), end)


def test_slerp_identical_tensors_no_nan():
    tensor = torch.randn(5, 2)
    result = slerp(tensor, tensor.clone(), 0.3)
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result, tensor)


def test_slerp_parallel_falls_back_to_linear():
    tensor = torch.randn(6)
    result = slerp(tensor, 3 * tensor, 0.25)
    torch.testing.assert_close(result, 0.75 * tensor + 0.25 * 3 * tensor)


def test_slerp_orthogonal_keeps_sphere():
    start, end = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    middle = slerp(start, end, 0.5)
    torch.testing.assert_close(middle, torch.tensor([1.0, 1.0]) / math.sqrt(2))
    third = slerp(start, 2 * end, 1 / 3)
    torch.testing.assert_close(third.norm(), torch.tensor(2 / 3 + 2 / 3))
    torch.testing.assert_close(torch.atan2(third[1], third[0]), torch.tensor(math.pi / 6))


def test_merge_tensors_linear_is_weighted_mean():
    tensors = [torch.full((2,), value) for value in (1.0, 2.0, 6.0)]
    result = merge_tensors(tensors, [1, 1, 2], method="linear")
    torch.testing.assert_close(result, torch.full((2,), (1 + 2 + 12) / 4))


def test_merge_tensors_slerp_two_matches_slerp():
    torch.manual_seed(2)
    first, second = torch.randn(3, 3), torch.randn(3, 3)
    torch.testing.assert_close(merge_tensors([first, second], [1, 3]), slerp(first, second, 0.75))


def test_merge_tensors_slerp_identical_n_way():
    tensor = torch.randn(4)
    result = merge_tensors([tensor, tensor, tensor, tensor], [1, 2, 3, 4])
    torch.testing.assert_close(result, tensor)


def test_merge_heads_rejects_mismatched_shapes():
    first = LegoBlock(in_features=3, n_outputs=4).head
    second = LegoBlock(in_features=3, n_outputs=5).head
    with pytest.raises(ValueError, match="expected shape"):
        merge_heads([first, second])


def test_merge_heads_linear_parameters():
    first = LegoBlock(in_features=3, init_seed=1).head
    second = LegoBlock(in_features=3, init_seed=2).head
    merged = merge_heads([first, second], [1, 3], method="linear")
    torch.testing.assert_close(merged[1].weight, 0.25 * first[1].weight + 0.75 * second[1].weight)


def make_blocks():
    torch.manual_seed(0)
    return {
        "genes": LegoBlock(in_features=6, n_latents=4, latent_dim=8),
        "clinical": LegoBlock(in_features=3, n_latents=4, latent_dim=8),
    }


def test_lego_merge_takes_no_gradient_steps():
    blocks = make_blocks()
    before = {name: p.detach().clone() for name, p in blocks["genes"].named_parameters()}
    merged = LegoMerge(blocks=blocks)
    inputs = {"genes": (torch.randn(5, 6), None), "clinical": (torch.randn(5, 3), None)}
    logits = merged(inputs, torch.ones(5, 2, dtype=torch.bool))
    assert logits.shape == (5, 4)
    assert merged.gradient_steps == 0
    assert all(p.grad is None for p in merged.parameters())
    for name, parameter in blocks["genes"].named_parameters():
        assert torch.equal(parameter, before[name])


def test_lego_merge_single_modality_uses_its_latent():
    blocks = make_blocks()
    merged = LegoMerge(blocks=blocks, eps=1e-9)
    x = torch.randn(3, 6)
    presence = torch.tensor([[True, False]] * 3)
    z = merged.encode({"genes": (x, None), "clinical": (torch.randn(3, 3), None)}, presence)
    with torch.no_grad():
        expected = blocks["genes"].eval().encode(x)
    torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-5)


def test_lego_merge_missing_input_means_absent():
    blocks = make_blocks()
    merged = LegoMerge(blocks=blocks).eval()
    x = torch.randn(3, 6)
    without = merged({"genes": (x, None)})
    absent = merged({"genes": (x, None), "clinical": (torch.randn(3, 3), None)}, torch.tensor([[True, False]] * 3))
    torch.testing.assert_close(without, absent)


def test_lego_merge_rejects_unknown_method():
    with pytest.raises(ValueError, match="method must be one of"):
        LegoMerge(blocks=make_blocks(), method="max")
