"""Symmetrize: one batched base call, sample counts, per-sample outputs, dict outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import probsym
from cases import CASES, Case, make_base, make_batch, make_model, signature
from probsym import fields, groups, samplers
from probsym.errors import InputError
from probsym.folding import fold_samples


class Counting(nn.Module):
    """Wraps a base model and records what every call received."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.base = base
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(self, **inputs):
        self.calls.append(inputs)
        return self.base(**inputs)


def counting_model(case: Case, output="equivariant", num_samples=3, eval_num_samples=5):
    batch = make_batch(case.group)
    sig = signature(case.group, output)
    base = Counting(make_base("mlp", sig, batch))
    sampler = case.sampler(sig)
    model = probsym.Symmetrize(
        base, sampler, num_samples=num_samples, eval_num_samples=eval_num_samples
    )
    return model, base, batch


ONE_PER_GROUP = [c for c in CASES if c.method == "ps"] + [
    c for c in CASES if c.method == "fa" and c.group.dim == 3
]


@pytest.mark.parametrize("case", ONE_PER_GROUP, ids=[c.id for c in ONE_PER_GROUP])
def test_base_is_called_once_per_forward_with_all_samples_folded(case: Case):
    model, base, batch = counting_model(case)
    b = batch["mask"].shape[0]
    per_input = model.sampler.samples_per_input(3)  # > 3 for enumerated PCA frames
    out = model(**batch, keep_samples=True)
    assert len(base.calls) == 1
    call = base.calls[0]
    assert set(call) == set(batch)  # the declared inputs and the (folded) mask
    for name, x in call.items():
        assert x.shape == (b * per_input, *batch[name].shape[1:]), name
    assert torch.equal(call["mask"], fold_samples(batch["mask"], per_input))
    # the base sees g⁻¹·x, b-major
    g_inverse = out.samples.elements.inverse()
    for name, fld in model.signature.inputs.items():
        expected = g_inverse.act(fold_samples(batch[name], per_input), fld, call["mask"])
        assert torch.equal(call[name], expected), name
    # per-sample outputs (b, N, ...) average to the value
    assert set(out.value) == set(model.signature.output_fields)
    for name, value in out.value.items():
        per_sample = out.per_sample[name]
        assert per_sample.shape == (b, per_input, *value.shape[1:])
        torch.testing.assert_close(per_sample.mean(dim=1), value, atol=0, rtol=0)


def test_train_and_eval_sample_counts():
    model, base, batch = counting_model(Case(groups.Sn(), "ga"), "invariant", 3, 5)
    b = batch["mask"].shape[0]
    model.train()
    model(**batch)
    model.eval()
    model(**batch)
    model(**batch, num_samples=2)  # a per-call override wins in either mode
    model.train()
    model(**batch, num_samples=7)
    assert [c["x"].shape[0] for c in base.calls] == [3 * b, 5 * b, 2 * b, 7 * b]
    defaults = probsym.Symmetrize(base, model.sampler, num_samples=4)
    assert defaults.eval_num_samples == 4


def test_outputs_without_keep_samples_and_namedtuple_fields():
    model, _, batch = counting_model(Case(groups.Sn() * groups.SO(3), "ps"), "invariant")
    out = model(**batch)
    assert isinstance(out, probsym.Symmetrized)
    assert out._fields == ("value", "regularization", "samples", "per_sample")
    assert out.samples is None and out.per_sample is None
    assert isinstance(out.value, torch.Tensor) and out.value.shape == (3, 3)
    assert out.regularization.ndim == 0


def test_dict_outputs_are_averaged_and_transformed_per_key():
    case = Case(groups.Sn() * groups.E(3), "ga")
    model, batch = make_model(case, "equivariant", "mlp", num_samples=4)
    out = model(**batch, keep_samples=True)
    assert set(out.value) == {"pos", "center", "pair"}
    assert out.value["pos"].shape == (3, 5, 3) and out.value["center"].shape == (3, 3)
    assert out.value["pair"].shape == (3, 5, 5, 1)
    for k in out.value:
        assert out.per_sample[k].shape[:2] == (3, 4)
        torch.testing.assert_close(out.per_sample[k].mean(1), out.value[k], atol=0, rtol=0)


def test_same_noise_gives_the_same_output_and_generators_reproduce():
    model, batch = make_model(Case(groups.Sn() * groups.SO(3), "ps"), "invariant", "transformer")
    model.eval()
    noise = model.sampler.sample_noise(batch, 2, torch.Generator().manual_seed(0))
    a = model(**batch, noise=noise).value
    b = model(**batch, noise=noise).value
    assert torch.equal(a, b)
    c = model(**batch, generator=torch.Generator().manual_seed(0)).value
    assert torch.equal(a, c)
    d = model(**batch, generator=torch.Generator().manual_seed(1)).value
    assert not torch.equal(a, d)


def test_gradients_reach_the_base_model():
    model, batch = make_model(Case(groups.Sn() * groups.SE(2), "ps"), "invariant", "transformer")
    model.train()
    model(**batch)  # lazy modules
    out = model(**batch)
    (out.value.square().mean() + out.regularization).backward()
    for name, p in model.base.named_parameters():
        assert p.grad is not None, name


def test_signature_defaults_to_the_samplers():
    sig = probsym.Signature({"x": fields.node}, fields.scalar)
    model = probsym.Symmetrize(nn.Identity(), samplers.Uniform(groups.Sn(), sig))
    assert model.signature is sig and model.group == groups.Sn()
    bare = samplers.Uniform(groups.Sn(), sig)
    bare.signature = None
    with pytest.raises(ValueError, match="needs a signature"):
        probsym.Symmetrize(nn.Identity(), bare)
    assert "num_samples=1" in repr(model)


def test_check_inputs_can_be_disabled():
    class Echo(nn.Module):
        def forward(self, x):
            return x

    sig = probsym.Signature({"x": fields.node}, fields.node)
    sampler = samplers.Uniform(groups.Sn(), sig)
    model = probsym.Symmetrize(Echo(), sampler, check_inputs=False)
    x = torch.full((2, 3, 1), float("nan"))
    assert bool(model(x=x).value.isnan().all())  # no NonFiniteError when checks are off


def test_a_batch_passed_positionally_says_to_unpack_it():
    model, _, batch = counting_model(Case(groups.Sn(), "ga"), "invariant")
    with pytest.raises(InputError, match=r"call model\(\*\*batch\), not model\(batch\) .*'adj'"):
        model(batch)
    with pytest.raises(InputError, match=r"got 2 positional argument\(s\) \(Tensor, Tensor\)"):
        model(batch["x"], batch["adj"])
    with pytest.raises(InputError, match=r"call model\(\*\*batch\)"):
        model(batch, num_samples=2)


@pytest.mark.parametrize("name", ["noise", "generator", "num_samples", "keep_samples", "self"])
def test_inputs_named_like_forward_arguments_are_rejected(name):
    sig = probsym.Signature({name: fields.node}, fields.scalar)
    with pytest.raises(ValueError, match=rf"input '{name}' collides with an argument of Symm"):
        probsym.Symmetrize(nn.Identity(), samplers.Uniform(groups.Sn(), sig))
    sig = probsym.Signature({"x": fields.node}, fields.scalar, mask=name)
    with pytest.raises(ValueError, match=rf"the mask name '{name}' collides .* reserved names"):
        probsym.Symmetrize(nn.Identity(), samplers.Uniform(groups.Sn(), sig))


def test_bool_and_integer_node_inputs_train_like_their_float_copies():
    """A bool adjacency or integer node types carry no gradient: no straight-through term for them
    (it used to multiply a float relaxation into a bool tensor), the same output as float copies,
    and the sampler still gets gradients through the (float) outputs."""
    sig = probsym.Signature({"x": fields.node, "adj": fields.pair}, fields.node)

    class Base(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, x, adj, mask):
            degree = adj.float().sum(2)  # (b, n, 1)
            return self.linear(torch.cat([x.float(), degree], dim=-1))

    gen = torch.Generator().manual_seed(0)
    adj = torch.rand(3, 5, 5, 1, generator=gen) < 0.5
    adj = adj | adj.transpose(1, 2)
    x = torch.randint(0, 4, (3, 5, 1), generator=gen)
    mask = torch.ones(3, 5, dtype=torch.bool)
    sampler = samplers.Learned(groups.Sn(), sig, hidden_dim=8, num_layers=1)
    model = probsym.Symmetrize(Base(), sampler, num_samples=2).train()
    noise = sampler.sample_noise({"x": x, "adj": adj, "mask": mask}, 2, gen)
    out = model(x=x, adj=adj, mask=mask, noise=noise)
    ref = model(x=x.float(), adj=adj.float(), mask=mask, noise=noise)
    torch.testing.assert_close(out.value, ref.value)
    out.value.square().sum().backward()
    grads = [p.grad for p in sampler.parameters()]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


@pytest.mark.parametrize("case", ONE_PER_GROUP[:3], ids=[c.id for c in ONE_PER_GROUP[:3]])
def test_eval_chunks_bound_the_base_call_and_keep_the_average(case: Case):
    model, base, batch = counting_model(case, eval_num_samples=5)
    model.eval()
    noise = model.sampler.sample_noise(batch, 5, generator=torch.Generator().manual_seed(0))
    whole = model(**batch, noise=noise).value
    model.eval_chunk_size = 7
    base.calls.clear()
    chunked = model(**batch, noise=noise).value
    rows = batch["mask"].shape[0] * model.sampler.samples_per_input(5)
    assert [len(c["mask"]) for c in base.calls] == [min(7, rows - i) for i in range(0, rows, 7)]
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    model.train()  # training mode never chunks (batch statistics must see the whole batch)
    base.calls.clear()
    model(**batch, noise=model.sampler.sample_noise(batch, 3))
    assert len(base.calls) == 1


@pytest.mark.parametrize("case", ONE_PER_GROUP[:3], ids=[c.id for c in ONE_PER_GROUP[:3]])
def test_training_chunks_keep_outputs_and_gradients(case: Case):
    model, base, batch = counting_model(case, num_samples=5)
    model.train()
    noise = model.sampler.sample_noise(batch, 5, generator=torch.Generator().manual_seed(0))
    results = []
    for chunk in (None, 4):
        model.train_chunk_size = chunk
        model.zero_grad()
        base.calls.clear()
        out = model(**batch, noise=noise)
        values = out.value.values() if isinstance(out.value, dict) else [out.value]
        (sum(v.square().sum() for v in values) + out.regularization).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((dict(out.value) if isinstance(out.value, dict) else out.value, grads))
        rows = batch["mask"].shape[0] * 5
        expected = [rows] if chunk is None else [min(4, rows - i) for i in range(0, rows, 4)]
        assert [len(c["mask"]) for c in base.calls] == expected
    (whole, whole_grads), (chunked, chunked_grads) = results
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)
    assert len(chunked_grads) == len(whole_grads)
    for a, b in zip(chunked_grads, whole_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_eval_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="eval_chunk_size"):
        probsym.Symmetrize(nn.Identity(), samplers.Uniform(groups.Sn(), SIG_SN), eval_chunk_size=0)
    with pytest.raises(ValueError, match="train_chunk_size"):
        probsym.Symmetrize(nn.Identity(), samplers.Uniform(groups.Sn(), SIG_SN), train_chunk_size=0)


SIG_SN = probsym.Signature({"x": fields.node}, fields.node)
