"""PairTransformer: the authors' n-body transformer, same function with the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import probsym
from probsym import fields, groups, samplers
from probsym.models import PairTransformer, nbody_pair_features
from probsym.models.pair_transformer import attention
from probsym.testing import equivariance_error

N = 5


class ReferencePairTransformer(nn.Module):
    """The authors' layout: a zero-filled ``(B, n², 8)`` token tensor, ``nn.TransformerEncoder``."""

    def __init__(self, dim: int = 64, depth: int = 8, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.position = nn.Parameter(torch.randn(N * N, dim))
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=dim, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(
            layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 3))

    def forward(self, pos: Tensor, vel: Tensor, charge: Tensor, mask: Tensor | None = None):
        b = pos.shape[0]
        node = torch.cat([pos, vel], dim=-1)
        pair = nbody_pair_features({"pos": pos, "charge": charge})
        eye = torch.eye(N, dtype=torch.bool).unsqueeze(-1)
        on_diagonal = torch.diag_embed(node.transpose(1, 2)).permute(0, 2, 3, 1)
        tokens = torch.cat([on_diagonal, pair * ~eye], dim=-1).reshape(b, N * N, -1)
        padding = None
        if mask is not None:
            padding = ~(mask.unsqueeze(2) & mask.unsqueeze(1)).reshape(b, N * N)
        h = self.encoder(self.embed(tokens) + self.position, src_key_padding_mask=padding)
        h = h.reshape(b, N, N, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)
        return self.head(h)


def copy_reference_weights(reference: ReferencePairTransformer, model: PairTransformer) -> None:
    """Load the reference's parameters into the library model (names differ, values do not)."""
    with torch.no_grad():
        model.embed.load_state_dict(reference.embed.state_dict())
        model.position.copy_(reference.position)
        for ours, theirs in zip(model.layers, reference.encoder.layers, strict=True):
            ours.qkv.weight.copy_(theirs.self_attn.in_proj_weight)
            ours.qkv.bias.copy_(theirs.self_attn.in_proj_bias)
            ours.out.load_state_dict(theirs.self_attn.out_proj.state_dict())
            ours.ffn[0].load_state_dict(theirs.linear1.state_dict())
            ours.ffn[3].load_state_dict(theirs.linear2.state_dict())
            ours.norm1.load_state_dict(theirs.norm1.state_dict())
            ours.norm2.load_state_dict(theirs.norm2.state_dict())
        model.norm.load_state_dict(reference.encoder.norm.state_dict())
        model.head[2].load_state_dict(reference.head[1].state_dict())
        model.head[5].load_state_dict(reference.head[3].state_dict())


def nbody_batch(b: int = 6, seed: int = 0) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "pos": torch.randn(b, N, 3, generator=gen),
        "vel": torch.randn(b, N, 3, generator=gen),
        "charge": torch.randint(0, 2, (b, N, 1), generator=gen).float() * 2 - 1,
    }


def paper_model(**options) -> PairTransformer:
    return PairTransformer(("pos", "vel"), nbody_pair_features, N, 6, 2, **options)


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_pair_transformer_is_the_reference_model(masked):
    """Same weights, same outputs and gradients as the authors' nn.TransformerEncoder model."""
    torch.manual_seed(0)
    reference, model = ReferencePairTransformer().train(), paper_model().train()
    copy_reference_weights(reference, model)
    batch = nbody_batch()
    mask = None
    if masked:
        mask = torch.ones(6, N, dtype=torch.bool)
        mask[1, 3:] = mask[4, 4:] = False
    expected, actual = reference(**batch, mask=mask), model(**batch, mask=mask)
    real = torch.ones(6, N, dtype=torch.bool) if mask is None else mask
    torch.testing.assert_close(actual[real], expected[real], atol=1e-5, rtol=1e-5)
    weights = torch.randn(6, N, 3) * real.unsqueeze(-1)
    (actual * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(model.position.grad, reference.position.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        model.embed.weight.grad, reference.embed.weight.grad, atol=1e-4, rtol=1e-4
    )


def test_cpu_attention_matches_scaled_dot_product_attention():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 4, 9, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    attend = torch.rand(3, 1, 1, 9, generator=gen) > 0.3
    attend[..., 0] = True
    for mask in (None, attend):
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(attention(q, k, v, mask, 0.0), expected)


def test_pair_inputs_by_name_residual_and_shapes():
    batch = nbody_batch(b=4)
    batch["pair"] = nbody_pair_features(batch)
    by_name = PairTransformer(("pos", "vel"), ("pair",), N, 6, 2, residual="pos", depth=2)
    by_function = PairTransformer(("pos", "vel"), nbody_pair_features, N, 6, 2, depth=2)
    by_function.load_state_dict(by_name.state_dict())
    out = by_name(**batch)
    assert out.shape == (4, N, 3)
    torch.testing.assert_close(out - batch["pos"], by_function(**batch))
    with pytest.raises(ValueError, match="multiple of heads"):
        PairTransformer(("pos",), ("pair",), N, 3, 2, dim=30, heads=4)


def test_bfloat16_autocast_stays_close_to_float32():
    torch.manual_seed(0)
    model = paper_model(depth=2)
    fast = paper_model(depth=2, autocast=torch.bfloat16)
    fast.load_state_dict(model.state_dict())
    batch = nbody_batch()
    with torch.no_grad():
        exact, approximate = model(**batch), fast(**batch)
    assert approximate.dtype == torch.float32
    assert float((approximate - exact).abs().max()) < 0.05 * float(exact.abs().max())


def test_symmetrized_pair_transformer_is_exactly_equivariant():
    group = groups.Sn() * groups.E(3)
    sig = probsym.Signature(
        {"pos": fields.node_point, "vel": fields.node_vector, "charge": fields.node},
        fields.node_point,
    )
    torch.manual_seed(0)
    sampler = samplers.Learned(group, sig, hidden_dim=16, num_layers=2, noise_at="heads")
    model = probsym.Symmetrize(paper_model(depth=2, residual="pos"), sampler, num_samples=3)
    report = equivariance_error(model, nbody_batch(b=3), generator=torch.Generator().manual_seed(0))
    assert report.passed(atol=1e-5, rtol=1e-5), report
