"""GraphTokenModel: geometry table, shapes, masks, pad modes, errors, equivariance of each head."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import probsym
from cases import SAMPLER_OPTIONS, make_batch, recorded_score_gaps
from probsym import fields, groups, samplers
from probsym.errors import InputError, ShapeError, UnknownNameError
from probsym.models import GraphTokenModel, TokenGeometry, ViT, token_geometry

LEVEL_FIELDS = {"graph": fields.scalar, "node": fields.node, "pair": fields.pair}
TIE_GAP = 1e-4  # STYLE: skip draws whose learned scores nearly tie (never loosen atol)


class StubEncoder(nn.Module):
    """Returns its tokens unchanged behind a zero class token (tests see the tokenizer's output)."""

    def __init__(self, width: int, max_tokens: int) -> None:
        super().__init__()
        self.width, self.max_tokens = width, max_tokens

    def forward(self, tokens: Tensor) -> Tensor:
        return torch.cat([tokens.new_zeros(tokens.shape[0], 1, self.width), tokens], dim=1)


def small_model(level="pair", max_nodes=7, grid=2, seed=0, **options) -> GraphTokenModel:
    torch.manual_seed(seed)
    encoder = ViT(width=32, depth=1, heads=2, grid=grid)
    return GraphTokenModel(encoder, 2, 1, max_nodes, 3, level, grid=grid, **options).eval()


def graphs(sizes=(5, 4, 3), n=5, seed=0) -> dict[str, Tensor]:
    return make_batch(groups.Sn(), seed=seed, sizes=sizes, num_nodes=n)


@pytest.mark.parametrize(
    "max_nodes, expected",
    [
        (188, TokenGeometry(14, 8, 1, 8)),  # PATTERN
        (444, TokenGeometry(32, 4, 3, 144)),  # Peptides-func/struct
        (53, TokenGeometry(4, 3, 1, 143)),  # PCQM-Contact
    ],
)
def test_geometry_is_the_paper_notes_table(max_nodes, expected):
    assert token_geometry(max_nodes, grid=14) == expected


@pytest.mark.parametrize("level", ["graph", "node", "pair"])
def test_output_shapes_and_zero_padding(level):
    model = small_model(level)
    batch = graphs()
    with torch.no_grad():
        out = model(**batch)
        positional = model(batch["x"], batch["adj"], mask=batch["mask"])
    assert torch.equal(out, positional)
    shape = {"graph": (3, 3), "node": (3, 5, 3), "pair": (3, 5, 5, 3)}[level]
    assert out.shape == shape
    mask = batch["mask"]
    if level == "node":
        assert bool((out[~mask] == 0).all())
    if level == "pair":
        real = mask[:, :, None] & mask[:, None, :]
        assert bool((out[~real] == 0).all()) and bool((out[real] != 0).any())
    with torch.no_grad():  # no mask: every node is real
        assert model(x=batch["x"], adj=batch["adj"]).shape == shape


@pytest.mark.parametrize("level", ["graph", "node", "pair"])
def test_a_graph_does_not_depend_on_its_batch_padding_or_padded_values(level):
    model = small_model(level)
    tight = graphs(sizes=(4,), n=4)
    loose = {k: v for k, v in graphs(sizes=(4,), n=4).items()}
    loose["x"] = torch.cat([loose["x"], torch.randn(1, 3, 2) * 100], dim=1)  # garbage padding
    loose["adj"] = torch.nn.functional.pad(loose["adj"], (0, 0, 0, 3, 0, 3), value=50.0)
    loose["mask"] = torch.nn.functional.pad(loose["mask"], (0, 3), value=False)
    with torch.no_grad():
        a, b = model(**tight), model(**loose)
    if level == "graph":
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    elif level == "node":
        torch.testing.assert_close(a, b[:, :4], atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(a, b[:, :4, :4], atol=1e-6, rtol=0)


def identity_model(max_nodes: int, grid: int, centering: bool, pad_mode="zero") -> GraphTokenModel:
    """Patch tokens are the raw patch pixels and the readout puts them back: pair out == pair in."""
    patch = token_geometry(max_nodes, grid).pair_patch
    d = patch * patch
    model = GraphTokenModel(
        StubEncoder(d, grid * grid), 0, 1, max_nodes, 1, "pair", grid, pad_mode, centering
    )
    with torch.no_grad():
        eye = torch.eye(d).reshape(d, 1, patch, patch)
        model.pair_embed.weight.copy_(eye)
        model.pair_embed.bias.zero_()
        model.readout.weight.copy_(eye)
        model.readout.bias.zero_()
    return model


@pytest.mark.parametrize("centering", [False, True])
@pytest.mark.parametrize("pad_mode", ["zero", "reflect", "replicate", "circular"])
def test_the_output_crop_aligns_with_the_input_patches(centering, pad_mode):
    model = identity_model(max_nodes=7, grid=3, centering=centering, pad_mode=pad_mode)
    batch = graphs(n=6, sizes=(6, 4))
    with torch.no_grad():
        out = model(adj=batch["adj"], mask=batch["mask"])
    real = (batch["mask"][:, :, None] & batch["mask"][:, None, :]).unsqueeze(-1)
    torch.testing.assert_close(out, batch["adj"] * real, atol=0, rtol=0)


def pair_image(model: GraphTokenModel, batch) -> Tensor:
    """What the pair Conv2d sees (after padding)."""
    seen = []
    handle = model.pair_embed.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(**batch)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("centering", [False, True])
def test_pad_modes_fill_the_geometry_padding(centering):
    full = graphs(sizes=(7, 7), n=7)  # a full graph: the mode decides what the pad holds
    images = {}
    for mode in ("zero", "reflect", "replicate", "circular"):
        image = pair_image(
            small_model(max_nodes=7, grid=3, pad_mode=mode, centering=centering), full
        )
        assert image.shape == (2, 1, 9, 9)  # P = 3, 7 -> 9
        images[mode] = image
    start = 1 if centering else 0
    content = full["adj"].permute(0, 3, 1, 2)
    for image in images.values():
        assert torch.equal(image[..., start : start + 7, start : start + 7], content)
    last = start + 6
    assert bool((images["zero"][..., last + 1 :, :] == 0).all())
    assert torch.equal(images["replicate"][..., last + 1, start : last + 1], content[..., 6, :])
    assert torch.equal(images["reflect"][..., last + 1, start : last + 1], content[..., 5, :])
    assert torch.equal(images["circular"][..., last + 1, start : last + 1], content[..., 0, :])


def test_node_tokens_run_over_consecutive_nodes_when_the_graph_is_larger_than_the_grid():
    model = small_model("graph", max_nodes=9, grid=2)  # 4 tokens: patch 3, pad 3
    assert model.geometry.node_patch == 3 and model.node_embed.kernel_size == (3,)
    with torch.no_grad():
        assert model(**graphs(sizes=(9, 2), n=9)).shape == (2, 3)


def test_pretrained_parameters_come_from_the_encoder(tmp_path):
    from safetensors.torch import save_file

    save_file(ViT(width=32, depth=1, heads=2, grid=2).state_dict(), str(tmp_path / "w.safetensors"))
    encoder = ViT.from_pretrained(
        tmp_path / "w.safetensors", config=probsym.models.ViTConfig(32, 1, 2, 2)
    )
    model = GraphTokenModel(encoder, 2, 1, 5, 3, "graph", grid=2)
    assert {id(p) for p in model.pretrained_parameters()} == {id(p) for p in encoder.parameters()}
    assert GraphTokenModel(StubEncoder(4, 4), 0, 1, 4, 1, grid=2).pretrained_parameters() == []


def test_errors_name_the_sizes():
    model = small_model(max_nodes=4)
    with pytest.raises(ShapeError, match=r"5 nodes.*max_nodes is 4"):
        model(**graphs())
    with pytest.raises(ShapeError, match=r"'adj'.*\(3, 4, 4, 1\)"):
        model(x=torch.randn(3, 4, 2), adj=torch.randn(3, 4, 4, 2), mask=torch.ones(3, 4).bool())
    with pytest.raises(InputError, match="adj"):
        model(x=torch.randn(3, 4, 2))
    encoder = ViT(width=32, depth=1, heads=2, grid=2)
    with pytest.raises(ShapeError, match=r"grid 3 gives 9 tokens.*at most 4"):
        GraphTokenModel(encoder, 2, 1, 7, 3, grid=3)
    with pytest.raises(UnknownNameError, match="graph, node, pair"):
        GraphTokenModel(encoder, 2, 1, 7, 3, level="edge", grid=2)
    with pytest.raises(UnknownNameError, match="circular"):
        GraphTokenModel(encoder, 2, 1, 7, 3, grid=2, pad_mode="mirror")
    with pytest.raises(ShapeError, match="reflect padding of 143"):  # PCQM's node padding
        GraphTokenModel(StubEncoder(8, 196), 2, 1, 53, 1, grid=14, pad_mode="reflect")
    with pytest.raises(ValueError, match="node or pair channels"):
        GraphTokenModel(encoder, 0, 0, 7, 3, grid=2)


# --- equivariance of every head through the symmetrizer ----------------------------------------


@pytest.mark.parametrize("method", list(samplers.METHODS))
@pytest.mark.parametrize("level", ["graph", "node", "pair"])
def test_every_head_is_equivariant_through_every_sampler(level, method):
    sig = probsym.Signature({"x": fields.node, "adj": fields.pair}, LEVEL_FIELDS[level])
    base = small_model(level, max_nodes=7, seed=1)
    sampler = samplers.resolve(method, groups.Sn(), sig, **SAMPLER_OPTIONS.get(method, {}))
    model = probsym.Symmetrize(base, sampler, num_samples=3)
    checked = 0
    for seed in range(3):
        batch = graphs(sizes=(5, 4, 3, 1), seed=seed)
        with recorded_score_gaps(model) as gaps:
            report = probsym.testing.assert_equivariant(
                model, batch, atol=1e-6, rtol=0, generator=torch.Generator().manual_seed(seed)
            )
        if gaps and min(gaps) <= TIE_GAP:
            continue
        assert report.max_abs <= 1e-6, report  # S_n only: the base sees identical inputs
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("pad_mode", ["reflect", "circular"])
def test_centered_pair_head_is_equivariant(pad_mode):
    sig = probsym.Signature({"x": fields.node, "adj": fields.pair}, fields.pair)
    torch.manual_seed(0)
    encoder = ViT(width=32, depth=1, heads=2, grid=3)
    base = GraphTokenModel(encoder, 2, 1, 7, 3, "pair", grid=3, pad_mode=pad_mode, centering=True)
    model = probsym.Symmetrize(base, samplers.Uniform(groups.Sn(), sig), num_samples=2)
    report = probsym.testing.assert_equivariant(
        model,
        graphs(sizes=(5, 2, 3)),
        atol=1e-6,
        rtol=0,
        generator=torch.Generator().manual_seed(0),
    )
    assert report.max_abs <= 1e-6


@pytest.mark.parametrize("level", ["node", "pair"])
def test_the_base_alone_is_not_equivariant(level):
    """Negative control: the checks above have power (the raw ViT sees node order)."""
    sig = probsym.Signature({"x": fields.node, "adj": fields.pair}, LEVEL_FIELDS[level])
    report = probsym.testing.equivariance_error(
        small_model(level, seed=1),
        graphs(sizes=(5, 4, 3, 1)),
        signature=sig,
        group=groups.Sn(),
        generator=torch.Generator().manual_seed(0),
    )
    assert report.max_abs > 1e-2, report
