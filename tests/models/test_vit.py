"""ViT: timm names and shapes, an independent reference (HF ``ViTModel``), file round trips."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from probsym.errors import ShapeError, UnknownNameError
from probsym.models import (
    VIT_CONFIGS,
    MissingWeightsError,
    ViT,
    ViTConfig,
    WeightsError,
    resample_pos_embed,
    vit_from_hf_state_dict,
)
from probsym.models import weights as weights_module

SMALL = dict(width=64, depth=2, heads=4, grid=4)

#: timm's parameter counts of ``vit_*_patch16_224`` with the 1000-class head.
TIMM_PARAMETERS = {
    "vit_tiny_patch16_224": 5_717_416,
    "vit_small_patch16_224": 22_050_664,
    "vit_base_patch16_224": 86_567_656,
    "vit_large_patch16_224": 304_326_632,
}


def small_vit(seed: int = 0, **overrides) -> ViT:
    torch.manual_seed(seed)
    return ViT(**{**SMALL, **overrides})


@pytest.mark.parametrize("name", list(VIT_CONFIGS))
def test_named_configs_have_timm_names_shapes_and_parameter_counts(name):
    with torch.device("meta"):
        model = ViT.from_name(name, num_classes=1000)
    config = VIT_CONFIGS[name]
    d = config.width
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["cls_token"] == (1, 1, d)
    assert shapes["pos_embed"] == (1, 197, d)
    assert shapes["patch_embed.proj.weight"] == (d, 3, 16, 16)
    last = config.depth - 1
    assert shapes[f"blocks.{last}.attn.qkv.weight"] == (3 * d, d)
    assert shapes[f"blocks.{last}.attn.proj.weight"] == (d, d)
    assert shapes[f"blocks.{last}.mlp.fc1.weight"] == (4 * d, d)
    assert shapes[f"blocks.{last}.mlp.fc2.weight"] == (d, 4 * d)
    assert shapes["head.weight"] == (1000, d)
    per_block = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias"}
    per_block |= {"attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias"}
    per_block |= {"mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"}
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    expected |= {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    expected |= {f"blocks.{i}.{k}" for i in range(config.depth) for k in per_block}
    assert set(shapes) == expected
    assert sum(p.numel() for p in model.parameters()) == TIMM_PARAMETERS[name]
    assert model.width == d and model.max_tokens == 196


def test_unknown_config_name_lists_the_choices():
    with pytest.raises(UnknownNameError, match="vit_base_patch16_224"):
        ViT.from_name("vit_huge")


def test_forward_prepends_the_class_token_and_checks_the_token_count():
    model = small_vit().eval()
    tokens = torch.randn(3, 16, 64)
    out = model(tokens)
    assert out.shape == (3, 17, 64)
    # fewer tokens use the first positions; the class token still comes first
    assert model(tokens[:, :5]).shape == (3, 6, 64)
    with pytest.raises(ShapeError, match="16"):
        model(torch.randn(3, 17, 64))
    with pytest.raises(ShapeError, match="64"):
        model(torch.randn(3, 16, 32))


# --- the independent reference: transformers.ViTModel -------------------------------------------


def hf_reference(width=64, depth=2, heads=4, image=224, seed=0):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        image_size=image,
        patch_size=16,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",  # explicit softmax(QKᵀ)V: independent of our SDPA path
    )
    torch.manual_seed(seed)
    hf = transformers.ViTModel(config, add_pooling_layer=False, use_mask_token=False).eval()
    with torch.no_grad():  # HF initialises the class token and positions to ~0: make them matter
        hf.embeddings.cls_token.normal_()
        hf.embeddings.position_embeddings.normal_(std=0.5)
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.1)
    return hf


def assert_matches_hf(hf, width, depth, heads, image):
    grid = image // 16
    model = ViT(width=width, depth=depth, heads=heads, grid=grid).eval()
    state = vit_from_hf_state_dict(hf.state_dict())
    model.load_state_dict(state)  # strict: exactly timm's names and shapes
    images = torch.randn(2, 3, image, image, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(pixel_values=images).last_hidden_state
        ours = model.forward_image(images)
        patches = hf.embeddings.patch_embeddings(images)
    torch.testing.assert_close(model.patch_embed(images), patches, atol=1e-5, rtol=0)
    error = float((ours - expected).abs().max())
    assert error <= 1e-5, error
    return error


def test_matches_transformers_vit_at_224_pixels():
    hf = hf_reference()
    assert_matches_hf(hf, 64, 2, 4, 224)


@pytest.mark.slow
def test_matches_transformers_vit_base_16():
    hf = hf_reference(768, 12, 12)
    assert_matches_hf(hf, 768, 12, 12, 224)


def test_converts_transformers_4_names_too():
    hf = hf_reference(image=64)
    new = hf.state_dict()
    renames = [
        ("attention.q_proj", "attention.attention.query"),
        ("attention.k_proj", "attention.attention.key"),
        ("attention.v_proj", "attention.attention.value"),
        ("attention.o_proj", "attention.output.dense"),
        ("mlp.fc1", "intermediate.dense"),
        ("mlp.fc2", "output.dense"),
    ]
    old = {}
    for key, value in new.items():
        for a, b in renames:
            key = key.replace(a, b)
        old["vit." + key.replace("layers.", "encoder.layer.")] = value
    old["vit.pooler.dense.weight"] = torch.zeros(64, 64)
    converted = vit_from_hf_state_dict(old)
    reference = vit_from_hf_state_dict(new)
    assert converted.keys() == reference.keys()
    for k in reference:
        assert torch.equal(converted[k], reference[k]), k


def test_from_pretrained_reads_a_transformers_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    hf = hf_reference(image=64)
    path = tmp_path / "hf.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    model = ViT.from_pretrained(path, config=ViTConfig(64, 2, 4, grid=4)).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_image(images),
            hf(pixel_values=images).last_hidden_state,
            atol=1e-5,
            rtol=0,
        )


# --- file round trips ---------------------------------------------------------------------------


def assert_same_weights(a: ViT, b: ViT) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_safetensors_round_trip_and_pretrained_parameters(tmp_path):
    from safetensors.torch import save_file

    model = small_vit()
    assert model.pretrained_parameters() == []
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = ViT.from_pretrained(tmp_path / "w.safetensors", config=ViTConfig(64, 2, 4, grid=4))
    assert_same_weights(model, loaded)
    assert len(loaded.pretrained_parameters()) == len(list(loaded.parameters()))


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict/model"])
@pytest.mark.parametrize("suffix", [".pth", ".bin"])
def test_torch_file_round_trip_nested_or_not(tmp_path, suffix, wrap):
    model = small_vit(width=192, heads=3, depth=1, grid=2)  # a standard width: config inferred
    state: object = model.state_dict()
    for key in reversed(wrap.split("/")) if wrap != "plain" else ():
        state = {key: state, "epoch": 3} if key == "model" else {key: state}
    torch.save(state, tmp_path / f"w{suffix}")
    loaded = ViT.from_pretrained(tmp_path / f"w{suffix}")
    assert loaded.config == ViTConfig(192, 1, 3, grid=2)
    assert_same_weights(model, loaded)


def to_augreg_npz(state: dict[str, torch.Tensor], heads: int) -> dict[str, np.ndarray]:
    """The inverse of timm's npz conversion: timm names -> Flax augreg names (HWIO kernels)."""
    arrays = {
        "embedding/kernel": state["patch_embed.proj.weight"].permute(2, 3, 1, 0),
        "embedding/bias": state["patch_embed.proj.bias"],
        "cls": state["cls_token"],
        "Transformer/posembed_input/pos_embedding": state["pos_embed"],
        "Transformer/encoder_norm/scale": state["norm.weight"],
        "Transformer/encoder_norm/bias": state["norm.bias"],
        "head/kernel": state["head.weight"].T,
        "head/bias": state["head.bias"],
    }
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p, b = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        d = state[b + "norm1.weight"].shape[0]
        mha = p + "MultiHeadDotProductAttention_1/"
        q, k, v = state[b + "attn.qkv.weight"].chunk(3)
        for name, w in zip(("query", "key", "value"), (q, k, v), strict=True):
            arrays[f"{mha}{name}/kernel"] = w.T.reshape(d, heads, d // heads)
        biases = state[b + "attn.qkv.bias"].chunk(3)
        for name, bias in zip(("query", "key", "value"), biases, strict=True):
            arrays[f"{mha}{name}/bias"] = bias.reshape(heads, d // heads)
        arrays[mha + "out/kernel"] = state[b + "attn.proj.weight"].T.reshape(heads, d // heads, d)
        arrays[mha + "out/bias"] = state[b + "attn.proj.bias"]
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            arrays[f"{p}{theirs}/scale"] = state[f"{b}{ours}.weight"]
            arrays[f"{p}{theirs}/bias"] = state[f"{b}{ours}.bias"]
        for r in (0, 1):
            arrays[f"{p}MlpBlock_3/Dense_{r}/kernel"] = state[f"{b}mlp.fc{r + 1}.weight"].T
            arrays[f"{p}MlpBlock_3/Dense_{r}/bias"] = state[f"{b}mlp.fc{r + 1}.bias"]
    return {k: v.detach().numpy() for k, v in arrays.items()}


def test_augreg_npz_round_trip_with_and_without_the_head(tmp_path):
    model = small_vit(num_classes=10)
    np.savez(tmp_path / "augreg.npz", **to_augreg_npz(model.state_dict(), heads=4))
    config = ViTConfig(64, 2, 4, grid=4)
    loaded = ViT.from_pretrained(tmp_path / "augreg.npz", config=config, num_classes=10)
    assert_same_weights(model, loaded)
    headless = ViT.from_pretrained(tmp_path / "augreg.npz", config=config)
    assert "head.weight" not in headless.state_dict()
    tokens = torch.randn(2, 16, 64)
    with torch.no_grad():
        torch.testing.assert_close(headless.eval()(tokens), model.eval()(tokens), atol=0, rtol=0)


def test_loading_to_another_grid_resamples_positions_and_keeps_the_class_position(tmp_path):
    from safetensors.torch import save_file

    model = small_vit()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = ViT.from_pretrained(tmp_path / "w.safetensors", config=ViTConfig(64, 2, 4), grid=6)
    assert loaded.pos_embed.shape == (1, 37, 64) and loaded.max_tokens == 36
    assert torch.equal(loaded.pos_embed[:, 0], model.pos_embed[:, 0])
    assert loaded(torch.randn(1, 36, 64)).shape == (1, 37, 64)


# --- errors -------------------------------------------------------------------------------------


def test_weights_of_another_architecture_list_keys_and_shapes(tmp_path):
    from safetensors.torch import save_file

    state = small_vit().state_dict()
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError) as info:
        ViT.from_pretrained(tmp_path / "w.safetensors", config=ViTConfig(64, 3, 4, 4, 16, 3, 2.0))
    message = str(info.value)
    assert "missing blocks.2.attn.qkv.weight (192, 64)" in message
    assert "unexpected extra.weight (2,)" in message
    assert "shape mismatch blocks.0.mlp.fc1.weight: model (128, 64), file (256, 64)" in message


def test_unknown_width_needs_a_config(tmp_path):
    from safetensors.torch import save_file

    save_file(small_vit().state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match="head count of width 64"):
        ViT.from_pretrained(tmp_path / "w.safetensors")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(MissingWeightsError, match="nothing.safetensors"):
        ViT.from_pretrained(tmp_path / "nothing.safetensors")
    (tmp_path / "w.onnx").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"\.onnx"):
        ViT.from_pretrained(tmp_path / "w.onnx")
    torch.save({"optimizer": {"lr": torch.tensor(1.0)}, "step": 3}, tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="no state dict"):
        ViT.from_pretrained(tmp_path / "w.pth")


@pytest.mark.parametrize("offline", ["env", "unreachable"])
def test_offline_hub_download_fails_fast_naming_the_file(tmp_path, monkeypatch, offline):
    if offline == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(weights_module, "_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        ViT.from_pretrained("timm/vit_base_patch16_224.augreg_in21k", cache_dir=tmp_path)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "timm/vit_base_patch16_224.augreg_in21k" in message
    assert "model.safetensors" in message and "--pretrained PATH" in message


def test_hub_id_loads_from_the_local_cache_offline(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--probsym--tiny-vit"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    model = small_vit(width=192, heads=3, depth=1, grid=2)
    save_file(model.state_dict(), str(repo / "snapshots" / commit / "model.safetensors"))
    loaded = ViT.from_pretrained("hf_hub:probsym/tiny-vit", cache_dir=tmp_path)
    assert_same_weights(model, loaded)


# --- position-embedding interpolation -----------------------------------------------------------


def test_resample_is_the_identity_at_the_same_grid():
    pos = torch.randn(1, 17, 8)
    assert resample_pos_embed(pos, 4) is pos


@pytest.mark.parametrize("grid", [2, 7, 14])
def test_resample_shapes_keep_the_class_position(grid):
    pos = torch.randn(1, 1 + 49, 8)
    out = resample_pos_embed(pos, grid)
    assert out.shape == (1, 1 + grid * grid, 8)
    assert torch.equal(out[:, 0], pos[:, 0])


def smooth(grid: int) -> torch.Tensor:
    """A smooth field on cell centres of [0, 1]², two channels, shaped like a pos_embed."""
    centres = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    u, v = torch.meshgrid(centres, centres, indexing="ij")
    field = torch.stack([torch.sin(2 * u) * torch.cos(v), u * v], dim=-1)
    return torch.cat([torch.full((1, 2), 7.0, dtype=torch.float64), field.reshape(-1, 2)])[None]


@pytest.mark.parametrize("old, new", [(8, 14), (14, 8), (14, 24)])
def test_a_smooth_position_embedding_stays_smooth(old, new):
    out = resample_pos_embed(smooth(old).float(), new)
    error = (out[0, 1:] - smooth(new)[0, 1:].float()).abs().reshape(new, new, 2)
    # bicubic with edge clamping: close inside, the outer ring extrapolates (up to 0.03 here)
    assert float(error[1:-1, 1:-1].max()) < 0.02
    assert float(error.max()) < 0.05
    assert torch.equal(out[:, 0], smooth(old)[:, 0].float())


def test_resize_grid_in_place():
    model = small_vit()
    model.resize_grid(6)
    assert model.max_tokens == 36 and model.grid == 6
    assert model(torch.randn(1, 36, 64)).shape == (1, 37, 64)


def test_patch_dropout_keeps_the_class_token_in_training_only():
    vit = ViT(width=16, depth=1, heads=2, grid=4)
    tokens = torch.randn(3, 16, 16)
    vit.patch_dropout = 0.5
    vit.train()
    assert vit(tokens).shape == (3, 1 + 8, 16)
    vit.patch_dropout_uniform = True
    assert 1 + 8 <= vit(tokens).shape[1] <= 1 + 16
    vit.eval()
    assert vit(tokens).shape == (3, 1 + 16, 16)
