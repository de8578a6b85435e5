"""Given noise is checked: the keys of ``noise_fields`` and ``b * samples_per_input(N)`` rows."""

from __future__ import annotations

import pytest
import torch

from cases import CASE_IDS, CASES, Case, make_batch, make_model, signature
from probsym import groups, samplers
from probsym.errors import InputError, ShapeError

G = groups.Sn() * groups.E(3)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sampled_noise_passes_the_check(case: Case):
    sampler = case.sampler(signature(case.group))
    batch = make_batch(case.group)
    noise = sampler.sample_noise(batch, 2, torch.Generator().manual_seed(0))
    assert set(noise) == set(sampler.noise_fields)
    samples = sampler(batch, 2, noise=noise)
    assert samples.elements.batch_size == 3 * sampler.samples_per_input(2)


@pytest.mark.parametrize("group", [groups.O(3), G], ids=["O3", "Sn*E3"])
def test_sampled_sign_noise_passes_the_check(group):
    sampler = samplers.Frame(group, signature(group), signs="sample")
    batch = make_batch(group)
    noise = sampler.sample_noise(batch, 2)
    assert "signs" in noise
    sampler(batch, 2, noise=noise)


@pytest.fixture
def setup():
    model, batch = make_model(Case(G, "ps"))
    noise = model.sampler.sample_noise(batch, 2)
    return model, batch, noise


def test_missing_noise_key(setup):
    model, batch, noise = setup
    del noise["ties"]
    with pytest.raises(InputError, match=r"noise for Learned must have the keys .*missing \['ties"):
        model.sampler(batch, 2, noise=noise)


def test_unknown_noise_key(setup):
    model, batch, noise = setup
    noise["keys"] = noise["ties"]
    with pytest.raises(InputError, match=r"must have the keys .* unknown \['keys'\]"):
        model(**batch, noise=noise, num_samples=2)


def test_noise_drawn_for_another_sample_count(setup):
    model, batch, noise = setup
    with pytest.raises(ShapeError, match=r"noise '\w+' has 6 rows .* expected batch 3 x 5 .* = 15"):
        model(**batch, noise=noise, num_samples=5)


def test_noise_for_an_enumerated_frame_counts_the_whole_frame():
    sampler = samplers.Frame(G, signature(G))  # every sign choice: 2^3 elements per sample
    batch = make_batch(G)
    noise = sampler.sample_noise(batch, 1)
    assert noise["ties"].shape[0] == 3 * 8
    sampler(batch, 1, noise=noise)
    with pytest.raises(ShapeError, match=r"has 24 rows .* expected batch 3 x 16 samples"):
        sampler(batch, 2, noise=noise)


def test_noise_must_be_a_dict_of_tensors(setup):
    model, batch, noise = setup
    with pytest.raises(InputError, match="noise must be a dict of tensors, got list"):
        model.sampler(batch, 2, noise=list(noise.values()))
    noise["ties"] = noise["ties"].tolist()
    with pytest.raises(InputError, match="noise 'ties' must be a torch.Tensor, got list"):
        model.sampler(batch, 2, noise=noise)
