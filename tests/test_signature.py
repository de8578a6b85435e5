"""Bad input: one ``pytest.raises(<Error>, match=<name>)`` per error the core promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probsym
from cases import Case, make_batch, make_model
from probsym import fields, groups, samplers
from probsym.errors import (
    InputError,
    MaskError,
    NonFiniteError,
    ShapeError,
    UnknownNameError,
)

G = groups.Sn() * groups.E(3)


@pytest.fixture
def model():
    model, _ = make_model(Case(G, "ga"), "equivariant", "mlp")
    return model


@pytest.fixture
def batch():
    return make_batch(G)  # pos, vel, charge, adj (b=3, n=5, d=3), mask


def test_valid_batch_passes_and_reports_sizes(model, batch):
    info = model.signature.check(batch, G)
    assert (info.batch_size, info.num_nodes, info.dim) == (3, 5, 3)
    model(**batch)


def test_too_few_axes_names_the_field(model, batch):
    batch["pos"] = batch["pos"][:, :, 0]  # (b, n): the geometric axis is missing
    with pytest.raises(ShapeError, match=r"'pos' declared node_point needs shape \(b, n, \*c, d\)"):
        model(**batch)


def test_node_count_mismatch(model, batch):
    batch["adj"] = batch["adj"][:, :4, :4]
    with pytest.raises(ShapeError, match=r"'adj' declared pair has 4 nodes .* expected 5"):
        model(**batch)


def test_pair_axes_must_agree(model, batch):
    batch["adj"] = batch["adj"][:, :, :4]
    with pytest.raises(ShapeError, match=r"'adj' declared pair has 4 nodes on axis 2"):
        model(**batch)


def test_batch_size_mismatch(model, batch):
    batch["vel"] = batch["vel"][:2]
    with pytest.raises(ShapeError, match=r"'vel' has batch size 2, expected 3"):
        model(**batch)


def test_vector_dimension_mismatch_between_inputs():
    sig = probsym.Signature({"pos": fields.node_point, "vel": fields.node_vector}, fields.scalar)
    batch = {"pos": torch.randn(2, 4, 3), "vel": torch.randn(2, 4, 2)}
    with pytest.raises(ShapeError, match=r"'vel' .* 2-D vectors .* input 'pos' is 3-D"):
        sig.check(batch)


def test_group_dimension_mismatch_e3_on_2d_points():
    sig = probsym.Signature({"pos": fields.node_point}, fields.node_point)
    model = probsym.Symmetrize(torch.nn.Identity(), samplers.Uniform(groups.E(3), sig))
    with pytest.raises(ShapeError, match=r"'pos' .* 2-D vectors .* the group E\(3\) is 3-D"):
        model(pos=torch.randn(2, 4, 2))


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.ones(3, 4, dtype=torch.bool), r"mask 'mask' has shape \(3, 4\), expected"),
        (torch.ones(3, dtype=torch.bool), r"mask 'mask' has shape \(3,\)"),
        (torch.ones(3, 5), "mask 'mask' must be a bool tensor"),
        (torch.ones(3, 5, dtype=torch.long), "mask 'mask' must be a bool tensor"),
    ],
    ids=["nodes", "ndim", "float", "long"],
)
def test_wrong_mask_shape_or_dtype(model, batch, mask, match):
    batch["mask"] = mask
    with pytest.raises(MaskError, match=match):
        model(**batch)


def test_graph_with_no_real_node(model, batch):
    batch["mask"][1] = False
    with pytest.raises(MaskError, match=r"graph\(s\) \[1\] .* no real node"):
        model(**batch)


def test_zero_nodes():
    sig = probsym.Signature({"x": fields.node}, fields.scalar)
    with pytest.raises(MaskError, match="0 nodes"):
        sig.check({"x": torch.zeros(2, 0, 3)})
    with pytest.raises(MaskError, match="no real node"):
        sig.check({"x": torch.zeros(2, 0, 3), "mask": torch.zeros(2, 0, dtype=torch.bool)})


@pytest.mark.parametrize("method", ["ga", "fa", "ps"])
@pytest.mark.parametrize("name, dtype", [("pos", torch.long), ("vel", torch.bool)])
def test_geometric_inputs_must_be_floating_point(batch, method, name, dtype):
    model, _ = make_model(Case(G, method), "equivariant", "mlp")
    batch[name] = batch[name].to(dtype)
    match = rf"'{name}' declared node_\w+ is rotated, so it must be a floating-point tensor"
    with pytest.raises(InputError, match=match):
        model(**batch)


def test_integer_and_bool_scalar_inputs_stay_allowed(batch):
    sig = probsym.Signature(
        {"pos": fields.node_point, "z": fields.node, "adj": fields.pair}, fields.scalar
    )
    z = torch.randint(0, 5, batch["charge"].shape)
    adj = batch["adj"] > 0.5
    info = sig.check({"pos": batch["pos"], "z": z, "adj": adj, "mask": batch["mask"]}, G)
    assert info == (3, 5, 3)


def test_empty_batch(model, batch):
    with pytest.raises(ShapeError, match="the batch is empty: the inputs have batch size 0"):
        model(**{k: v[:0] for k, v in batch.items()})


def test_mask_without_node_inputs():
    sig = probsym.Signature({"v": fields.vector}, fields.vector)
    with pytest.raises(MaskError, match="no input has a node axis"):
        sig.check({"v": torch.randn(2, 3), "mask": torch.ones(2, 1, dtype=torch.bool)})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=str)
def test_non_finite_inputs(model, batch, value):
    batch["vel"][0, 0, 1] = value
    with pytest.raises(NonFiniteError, match="'vel' contains NaN or inf"):
        model(**batch)


def test_non_finite_check_can_be_skipped(batch):
    sig = probsym.Signature({"x": fields.node}, fields.scalar)
    x = torch.full((2, 3, 1), float("nan"))
    assert sig.check({"x": x}, finite=False).num_nodes == 3


def test_unknown_input_name_lists_the_choices(model, batch):
    batch["velocity"] = batch.pop("vel")
    with pytest.raises(UnknownNameError, match=r"unknown input 'velocity'; choose one of: .*vel"):
        model(**batch)


def test_missing_input(model, batch):
    del batch["charge"]
    with pytest.raises(InputError, match=r"missing declared input\(s\) \['charge'\]"):
        model(**batch)


def test_input_that_is_not_a_tensor(model, batch):
    batch["charge"] = batch["charge"].tolist()
    with pytest.raises(InputError, match="'charge' must be a torch.Tensor"):
        model(**batch)


def test_base_model_outputs_are_checked(batch):
    sig = probsym.Signature({"x": fields.node}, {"y": fields.node})

    class Plain(torch.nn.Module):
        def forward(self, x):
            return x

    class Flat(torch.nn.Module):
        def forward(self, x):
            return {"y": x.flatten()}

    x = torch.randn(2, 3, 1)
    model = probsym.Symmetrize(Plain(), samplers.Uniform(groups.Sn(), sig))
    with pytest.raises(InputError, match=r"must return a dict with keys \['y'\]"):
        model(x=x)

    model = probsym.Symmetrize(Flat(), samplers.Uniform(groups.Sn(), sig))
    with pytest.raises(ShapeError, match=r"output 'y' declared node needs shape"):
        model(x=x)


OUTPUTS = {"y": fields.node_vector, "c": fields.point}


class Resize(torch.nn.Module):
    """Returns a node output with ``extra`` nodes more (or fewer) and last axis ``dim``."""

    def __init__(self, extra: int = 0, dim: int = 3):
        super().__init__()
        self.extra, self.dim = extra, dim

    def forward(self, pos):
        b, n = pos.shape[:2]
        return {"y": torch.zeros(b, n + self.extra, self.dim), "c": pos.mean(1)[:, : self.dim]}


@pytest.mark.parametrize("extra", [1, -1])
def test_base_model_with_the_wrong_node_count(extra):
    sig = probsym.Signature({"pos": fields.node_point}, OUTPUTS)
    model = probsym.Symmetrize(Resize(extra), samplers.Uniform(groups.Sn() * groups.E(3), sig))
    n = 4 + extra
    with pytest.raises(ShapeError, match=rf"output 'y' .* has {n} nodes on axis 1, expected 4"):
        model(pos=torch.randn(2, 4, 3))


def test_base_model_with_the_wrong_vector_size():
    sig = probsym.Signature({"pos": fields.node_point}, OUTPUTS)
    model = probsym.Symmetrize(Resize(0, 2), samplers.Uniform(groups.E(3), sig))
    with pytest.raises(ShapeError, match=r"'y' declared node_vector has 2-D .* expected 3-D"):
        model(pos=torch.randn(2, 4, 3))


@pytest.mark.parametrize("name", ["num_samples", "eval_num_samples"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_sample_counts_must_be_positive_integers(name, value):
    sig = probsym.Signature({"x": fields.node}, fields.scalar)
    sampler = samplers.Uniform(groups.Sn(), sig)
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        probsym.Symmetrize(torch.nn.Identity(), sampler, **{name: value})


@pytest.mark.parametrize("value", [torch.tensor(1.0), torch.tensor(True), np.bool_(True), "2"])
def test_sample_counts_reject_float_and_bool_tensors_and_strings(value):
    sig = probsym.Signature({"x": fields.node}, fields.scalar)
    sampler = samplers.Uniform(groups.Sn(), sig)
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        probsym.Symmetrize(torch.nn.Identity(), sampler, num_samples=value)


@pytest.mark.parametrize("value", [np.int64(3), np.int32(3), torch.tensor(3)], ids=repr)
def test_sample_counts_accept_numpy_and_tensor_integers(value):
    sig = probsym.Signature({"x": fields.node}, fields.scalar)

    class SumNodes(torch.nn.Module):
        def forward(self, x):
            return x.sum(1)

    sampler = samplers.Uniform(groups.Sn(), sig)
    model = probsym.Symmetrize(SumNodes(), sampler, num_samples=value, eval_num_samples=value)
    assert type(model.num_samples) is int and model.num_samples == 3
    assert type(model.eval_num_samples) is int
    out = model(x=torch.randn(2, 4, 1), num_samples=value, keep_samples=True)
    assert out.per_sample.shape[:2] == (2, 3)


def test_per_call_num_samples_is_checked(model, batch):
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
        model(**batch, num_samples=0)


@pytest.mark.parametrize("name", ["Q3", "E", "SO", "Sn*X2"])
def test_unknown_group_name_lists_the_choices(name):
    with pytest.raises(UnknownNameError, match=r"unknown group .*; choose one of: .*SE<d>.*Sn"):
        groups.from_name(name)


def test_group_names_parse():
    assert groups.from_name("SO3") == groups.SO(3)
    assert groups.from_name("Sn*E3") == groups.Sn() * groups.E(3)
    assert groups.from_name("S_n × SE(2)") == groups.Sn() * groups.SE(2)


def test_unknown_method_lists_the_choices():
    sig = probsym.Signature({"x": fields.node}, fields.scalar)
    with pytest.raises(
        UnknownNameError, match="unknown method 'lps'; choose one of: canonical, fa, ga, ps"
    ):
        samplers.resolve("lps", groups.Sn(), sig)
    error = UnknownNameError("method", "lps", samplers.METHODS)
    assert isinstance(error, KeyError) and error.choices == ["canonical", "fa", "ga", "ps"]


def test_signature_rejects_non_fields_and_a_mask_named_like_an_input():
    with pytest.raises(TypeError, match="'x' must be a probsym Field"):
        probsym.Signature({"x": "node"}, fields.scalar)
    with pytest.raises(ValueError, match="mask name 'x' is also declared"):
        probsym.Signature({"x": fields.node}, fields.scalar, mask="x")
    with pytest.raises(ValueError, match="node_axes must be 0, 1 or 2"):
        fields.Field(3)
    with pytest.raises(ValueError, match="geometry must be"):
        fields.Field(1, "tensor")
