"""A Vision Transformer whose parameter names and shapes are timm's ``VisionTransformer``.

Used as a *token encoder* (``forward(tokens)``: class token, positions, blocks, final norm), so
that graph tokens (``graph_tokens.py``) can run through a ViT pretrained on images. Weights load
from timm checkpoints (``.safetensors``/``.pth``), Google's augreg ``.npz`` and HF
``transformers.ViTModel`` state dicts; position embeddings are resampled to another grid
bicubically, the class position kept.

Shapes: ``b`` batch · ``t`` patch tokens (≤ grid²) · ``d`` width · ``g`` grid side.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probsym.errors import ShapeError, UnknownNameError
from probsym.models.weights import (
    MissingWeightsError,
    WeightsError,
    check_state_dict,
    hub_download,
    read_checkpoint,
)

#: timm's LayerNorm epsilon for ViTs.
LAYER_NORM_EPS = 1e-6
WEIGHT_SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a :class:`ViT` (timm's ``vit_*_patch16_224`` defaults: grid 14, patch 16).

    Args:
        width: Token dimension ``d``.
        depth: Number of blocks.
        heads: Attention heads (``width`` must divide by it).
        grid: Patch grid side ``g``; the encoder takes up to ``g²`` patch tokens.
        patch: Image patch side (``patch_embed``), pixels.
        in_chans: Image channels.
        mlp_ratio: MLP hidden width / ``width``.
        num_classes: Size of the classifier ``head``; 0 means no head (timm's ``Identity``).
    """

    width: int
    depth: int
    heads: int
    grid: int = 14
    patch: int = 16
    in_chans: int = 3
    mlp_ratio: float = 4.0
    num_classes: int = 0


#: timm model names -> configs (heads and widths as in timm's ``vision_transformer.py``).
CONFIGS: dict[str, ViTConfig] = {
    "vit_tiny_patch16_224": ViTConfig(192, 12, 3),
    "vit_small_patch16_224": ViTConfig(384, 12, 6),
    "vit_base_patch16_224": ViTConfig(768, 12, 12),
    "vit_large_patch16_224": ViTConfig(1024, 24, 16),
}
#: Head count of the standard ViTs by width, to infer a config from a checkpoint.
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}
#: The checkpoint of PAPER-NOTES §3.1.
DEFAULT_HUB_ID = "timm/vit_base_patch16_224.augreg_in21k"


class PatchEmbed(nn.Module):
    """``Conv2d(in_chans, d, patch, stride=patch)``: image -> raster-order patch tokens."""

    def __init__(self, in_chans: int, width: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, width, patch, stride=patch)

    def forward(self, images: Tensor) -> Tensor:
        """``(b, in_chans, H, W)`` -> ``(b, (H/patch)·(W/patch), d)``."""
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (timm layout: q, k, v rows)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"ViT width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, t, d)`` -> ``(b, t, d)``."""
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (b, heads, t, d/heads)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` with exact GELU."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, t, d)`` -> ``(b, t, d)``."""
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        """``(b, t, d)`` -> ``(b, t, d)``."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """timm-compatible ViT, used as a token encoder: ``forward(tokens) -> (b, 1 + t, d)``.

    ``state_dict()`` names and shapes equal timm's ``VisionTransformer`` (class token, no
    register tokens, no layer scale, ``global_pool="token"``), so timm checkpoints load as they
    are. ``patch_embed`` and ``head`` exist for that compatibility and for images
    (:meth:`forward_image`); graph models feed their own tokens.

    Args:
        width, depth, heads, grid, patch, in_chans, mlp_ratio, num_classes: See
            :class:`ViTConfig`.

    Attributes:
        patch_dropout: In training, keep a random ``max(1, int(t·(1 − rate)))`` of the patch
            tokens after the position embedding (timm's ``PatchDropout``; the class token is
            kept). 0 (the default) is off; the LRGB Peptides configs use 0.5.
        patch_dropout_uniform: Draw the rate from ``U(0, patch_dropout)`` on every forward
            (the authors' ``max_patch_dropout``).

    Shapes:
        ``forward``: tokens ``(b, t, d)`` with ``t ≤ max_tokens = grid²`` -> ``(b, 1 + t, d)``,
        the class token first, after the final norm (fewer tokens under patch dropout).
    """

    patch_dropout: float = 0.0
    patch_dropout_uniform: bool = False

    def __init__(
        self,
        width: int = 768,
        depth: int = 12,
        heads: int = 12,
        grid: int = 14,
        patch: int = 16,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.config = ViTConfig(width, depth, heads, grid, patch, in_chans, mlp_ratio, num_classes)
        self.width = width
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 1e-6)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, width) * 0.02)
        self.patch_embed = PatchEmbed(in_chans, width, patch)
        self.blocks = nn.Sequential(*(Block(width, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(width, num_classes) if num_classes else nn.Identity()
        self._pretrained: frozenset[str] = frozenset()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @classmethod
    def from_name(cls, name: str, **overrides) -> ViT:
        """A randomly initialised ``vit_*_patch16_224`` (``overrides`` replace config fields).

        Raises:
            UnknownNameError: ``name`` is not in :data:`CONFIGS`.
        """
        if name not in CONFIGS:
            raise UnknownNameError("ViT config", name, CONFIGS)
        return cls(**asdict(replace(CONFIGS[name], **overrides)))

    @property
    def grid(self) -> int:
        """Side of the patch grid the position embedding covers."""
        return self.config.grid

    @property
    def max_tokens(self) -> int:
        """Patch tokens accepted (the class token excluded): ``grid²``."""
        return self.config.grid**2

    def forward(self, tokens: Tensor) -> Tensor:
        """Prepend the class token, add positions, run the blocks and the final norm.

        Raises:
            ShapeError: ``tokens`` is not ``(b, t, width)`` with ``t ≤ max_tokens``.
        """
        if tokens.dim() != 3 or tokens.shape[-1] != self.width or tokens.shape[1] > self.max_tokens:
            raise ShapeError(
                f"ViT tokens: expected (b, t ≤ {self.max_tokens}, {self.width}), "
                f"got {tuple(tokens.shape)}"
            )
        t = tokens.shape[1]
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.pos_embed[:, : 1 + t]  # (b, 1 + t, d)
        if self.training and self.patch_dropout > 0:
            x = self._drop_patches(x)
        return self.norm(self.blocks(x))

    def _drop_patches(self, x: Tensor) -> Tensor:
        """Keep the class token and a random subset of the patch tokens (per example)."""
        rate = self.patch_dropout
        if self.patch_dropout_uniform:
            rate = float(torch.rand(())) * rate
        b, t = x.shape[0], x.shape[1] - 1
        keep = max(1, int(t * (1.0 - rate)))
        index = torch.rand(b, t, device=x.device).argsort(dim=1)[:, :keep] + 1  # (b, keep)
        kept = x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return torch.cat([x[:, :1], kept], dim=1)  # (b, 1 + keep, d)

    def forward_image(self, images: Tensor) -> Tensor:
        """Images ``(b, in_chans, g·patch, g·patch)`` -> all tokens ``(b, 1 + g², d)``."""
        return self(self.patch_embed(images))

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters whose values came from a checkpoint (empty for a random model)."""
        return [p for name, p in self.named_parameters() if name in self._pretrained]

    @torch.no_grad()
    def resize_grid(self, grid: int) -> None:
        """Resample ``pos_embed`` to a ``grid × grid`` patch grid in place (bicubic)."""
        resized = resample_pos_embed(self.pos_embed.data, grid)
        self.pos_embed = nn.Parameter(resized, requires_grad=self.pos_embed.requires_grad)
        self.config = replace(self.config, grid=grid)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike = DEFAULT_HUB_ID,
        config: str | ViTConfig | None = None,
        grid: int | None = None,
        num_classes: int = 0,
        filename: str = "model.safetensors",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> ViT:
        """Load a ViT from a weight file or a Hugging Face hub repo.

        ``source`` is a path (``.safetensors``, ``.pth``/``.pt``/``.bin``, augreg ``.npz``) or a
        hub id such as ``timm/vit_base_patch16_224.augreg_in21k`` (``hf_hub:`` prefix allowed),
        from which ``filename`` is taken (the cache first; offline fails fast).

        Args:
            source: Weight file or hub id.
            config: A :data:`CONFIGS` name or a :class:`ViTConfig`; ``None`` infers it from the
                hub id's model name, else from the weights (width, depth, patch, grid; heads for
                the standard widths).
            grid: Patch grid of the returned model; ``pos_embed`` is resampled when it differs
                from the checkpoint's. Default: the config's grid (the checkpoint's if inferred).
            num_classes: 0 drops the checkpoint's classifier ``head``; otherwise it must match.
            filename: File to take from a hub repo.
            revision: Hub revision (branch, tag or commit); default the main branch.
            cache_dir: Hub cache directory; default huggingface_hub's.

        Raises:
            MissingWeightsError: The file is absent, or not cached and the hub is unreachable.
            WeightsError: The weights do not fit the architecture (keys and shapes listed).
        """
        path, hub_name = _locate(source, filename, revision, cache_dir)
        state = read_checkpoint(path)
        if path.suffix.lower() == ".npz":
            state = vit_from_npz(state)
        elif any(k.startswith(("embeddings.", "vit.embeddings.")) for k in state):
            state = vit_from_hf_state_dict(state)
        if num_classes == 0:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        if isinstance(config, str):
            config = _named_config(config)
        elif config is None and hub_name in CONFIGS:
            config = CONFIGS[hub_name]
        if config is None:
            config = infer_config(state, str(path))
        config = replace(config, num_classes=num_classes)
        if grid is not None:
            config = replace(config, grid=grid)
        if "pos_embed" in state and state["pos_embed"].shape[1] != 1 + config.grid**2:
            state = {**state, "pos_embed": resample_pos_embed(state["pos_embed"], config.grid)}
        model = cls(**asdict(config))
        check_state_dict(model, state, f"weights {str(path)!r}")
        model.load_state_dict(state)
        model._pretrained = frozenset(k for k, _ in model.named_parameters() if k in state)
        return model


def _named_config(name: str) -> ViTConfig:
    if name not in CONFIGS:
        raise UnknownNameError("ViT config", name, CONFIGS)
    return CONFIGS[name]


def _locate(
    source: str | os.PathLike,
    filename: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
) -> tuple[Path, str | None]:
    """A local weight path and, for a hub id, its model name (``vit_base_patch16_224``)."""
    text = os.fspath(source)
    if text.startswith("hf_hub:"):
        text = text[len("hf_hub:") :]
    elif Path(text).exists() or text.lower().endswith(WEIGHT_SUFFIXES) or text.count("/") != 1:
        if not Path(text).is_file():
            raise MissingWeightsError(f"weight file {text!r} does not exist")
        return Path(text), None
    path = hub_download(text, filename, revision=revision, cache_dir=cache_dir)
    return path, text.split("/")[-1].split(".")[0]


def infer_config(state: Mapping[str, Tensor], source: str = "checkpoint") -> ViTConfig:
    """Read width, depth, patch, channels, grid and MLP ratio off timm-named weights.

    Raises:
        WeightsError: Keys of a timm ViT are absent, or the width has no standard head count.
    """
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight")
    absent = [k for k in needed if k not in state]
    if absent:
        raise WeightsError(f"{source} is not a timm ViT: missing {', '.join(absent)}")
    width = state["cls_token"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    proj = state["patch_embed.proj.weight"]  # (d, in_chans, patch, patch)
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    if width not in HEADS_BY_WIDTH:
        raise WeightsError(
            f"{source}: cannot infer the head count of width {width}; pass config=ViTConfig(...)"
        )
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    return ViTConfig(
        width, depth, HEADS_BY_WIDTH[width], grid, proj.shape[-1], proj.shape[1], hidden / width
    )


def resample_pos_embed(pos_embed: Tensor, grid: int, prefix_tokens: int = 1) -> Tensor:
    """Bicubically resample the patch part of ``(1, prefix + g0², d)`` to ``(1, prefix + g², d)``.

    The prefix (class) positions are kept as they are; the same grid returns the input.

    Raises:
        ShapeError: The patch part is not a square grid.
    """
    prefix, patches = pos_embed[:, :prefix_tokens], pos_embed[:, prefix_tokens:]
    old = math.isqrt(patches.shape[1])
    if old * old != patches.shape[1]:
        raise ShapeError(f"pos_embed: {patches.shape[1]} patch positions are not a square grid")
    if old == grid:
        return pos_embed
    d = patches.shape[-1]
    image = patches.float().reshape(1, old, old, d).permute(0, 3, 1, 2)  # (1, d, g0, g0)
    image = F.interpolate(image, size=(grid, grid), mode="bicubic", antialias=grid < old)
    patches = image.permute(0, 2, 3, 1).reshape(1, grid * grid, d).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)


def vit_from_hf_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Convert a ``transformers`` ``ViTModel`` state dict to timm names.

    Accepts the names of transformers 5 (``layers.{i}.attention.q_proj``) and 4
    (``encoder.layer.{i}.attention.attention.query``), with or without the ``vit.`` prefix of
    ``ViTForImageClassification``; q, k, v are fused into ``qkv``, the pooler is dropped and
    ``classifier`` becomes ``head``.
    """
    plain = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed"}
    renames = [
        (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
        (r"layernorm\.", "norm."),
        (r"classifier\.", "head."),
        (r"(?:layers|encoder\.layer)\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
        (r"(?:layers|encoder\.layer)\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
        (r"layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
        (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
        (r"layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
        (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
        (r"encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    ]
    qkv = r"(?:layers|encoder\.layer)\.(\d+)\.attention\.(?:attention\.)?(q|k|v|query|key|value)"
    out: dict[str, Tensor] = {}
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state.items():
        key = key.removeprefix("vit.")
        if key.startswith("pooler."):
            continue
        if key in plain:
            out[plain[key]] = value
            continue
        if m := re.fullmatch(qkv + r"(?:_proj)?\.(weight|bias)", key):
            parts.setdefault((m.group(1), m.group(3)), {})[m.group(2)[0]] = value
            continue
        for pattern, target in renames:
            if re.match(pattern, key):
                out[re.sub(pattern, target, key, count=1)] = value
                break
        else:
            out[key] = value  # left for check_state_dict to report as unexpected
    for (block, kind), qkv_parts in parts.items():
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([qkv_parts[c] for c in "qkv"])
    return out


def vit_from_npz(arrays: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    """Convert Google's augreg / original ViT ``.npz`` (Flax names, HWIO kernels) to timm names.

    Handles the ``opt/target/`` prefix and per-block (``encoderblock_{i}``) or scanned
    (``encoderblock`` stacked on a leading axis) layouts.

    Raises:
        WeightsError: The arrays are not a Flax ViT (no ``embedding/kernel``).
    """
    prefix = next((p for p in ("", "opt/target/") if f"{p}embedding/kernel" in arrays), None)
    if prefix is None:
        raise WeightsError("npz file is not a Flax ViT: no 'embedding/kernel' array")

    def get(name: str, index: int | None = None) -> Tensor:
        value = np.asarray(arrays[prefix + name])
        return torch.from_numpy(np.ascontiguousarray(value if index is None else value[index]))

    kernel = get("embedding/kernel")  # (patch, patch, in_chans, d)
    out = {
        "patch_embed.proj.weight": kernel.permute(3, 2, 0, 1),
        "patch_embed.proj.bias": get("embedding/bias"),
        "cls_token": get("cls"),
        "pos_embed": get("Transformer/posembed_input/pos_embedding"),
        "norm.weight": get("Transformer/encoder_norm/scale"),
        "norm.bias": get("Transformer/encoder_norm/bias"),
    }
    if prefix + "head/kernel" in arrays:
        out["head.weight"] = get("head/kernel").T
        out["head.bias"] = get("head/bias")
    scanned = prefix + "Transformer/encoderblock/LayerNorm_0/scale" in arrays
    if scanned:
        depth = arrays[prefix + "Transformer/encoderblock/LayerNorm_0/scale"].shape[0]
    else:
        depth = sum(
            1
            for k in arrays
            if re.fullmatch(
                rf"{re.escape(prefix)}Transformer/encoderblock_\d+/"
                r"LayerNorm_0/scale",
                k,
            )
        )
    for i in range(depth):
        base, index = (
            ("Transformer/encoderblock/", i)
            if scanned
            else (f"Transformer/encoderblock_{i}/", None)
        )
        attention = base + "MultiHeadDotProductAttention_1/"
        mlp = base + "MlpBlock_3/"
        block = f"blocks.{i}."
        # q/k/v kernels are (d, heads, d/heads): flatten the heads, transpose to (out, in)
        out[block + "attn.qkv.weight"] = torch.cat(
            [get(f"{attention}{n}/kernel", index).flatten(1).T for n in ("query", "key", "value")]
        )
        out[block + "attn.qkv.bias"] = torch.cat(
            [get(f"{attention}{n}/bias", index).reshape(-1) for n in ("query", "key", "value")]
        )
        # the output kernel is (heads, d/heads, d): (d, heads·d/heads) = (out, in)
        out[block + "attn.proj.weight"] = get(attention + "out/kernel", index).flatten(0, 1).T
        out[block + "attn.proj.bias"] = get(attention + "out/bias", index)
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[block + ours + ".weight"] = get(f"{base}{theirs}/scale", index)
            out[block + ours + ".bias"] = get(f"{base}{theirs}/bias", index)
        for r in (0, 1):
            out[f"{block}mlp.fc{r + 1}.weight"] = get(f"{mlp}Dense_{r}/kernel", index).T
            out[f"{block}mlp.fc{r + 1}.bias"] = get(f"{mlp}Dense_{r}/bias", index)
    return {k: v.contiguous() for k, v in out.items()}
