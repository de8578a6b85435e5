"""The run configuration: one frozen dataclass is the single source of names, types and defaults.

Precedence, lowest first: the dataclass defaults, the experiment's defaults, a TOML config file,
command-line options, ``--set key=value``. Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from probsym.errors import ConfigError, UnknownNameError
from probsym.train.schedule import LR_SCHEDULES, parse_samples_schedule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run (the CLI is generated from these fields)."""

    experiment: str = field(metadata={"help": "experiment name"})
    method: str = field(default="ps", metadata={"help": "ps | ga | fa | canonical"})
    backbone: str = field(default="mlp", metadata={"help": "base model name (per experiment)"})
    group: str = field(default="", metadata={"help": "symmetry group (empty: experiment default)"})
    epochs: int = field(default=10, metadata={"help": "training epochs"})
    batch_size: int = field(default=100, metadata={"help": "training batch size"})
    eval_batch_size: int = field(default=100, metadata={"help": "evaluation batch size"})
    samples: int = field(default=10, metadata={"help": "samples N per input in training"})
    samples_schedule: str = field(
        default="",
        metadata={
            "help": "training N over the run's progress (as --lr-schedule), e.g. '0:1,0.5:2,0.9:4'"
            ": N=1 from the start, 2 from half way, 4 from 0.9; set per epoch, --samples before "
            "the first point (empty: --samples throughout)"
        },
    )
    eval_samples: int = field(default=10, metadata={"help": "samples per input in validation"})
    test_samples: int = field(default=0, metadata={"help": "samples in test (0: eval_samples)"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    lr_pretrained: float = field(
        default=0.0,
        metadata={"help": "learning rate of pretrained backbone parameters (0: same as --lr)"},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup_epochs: float = field(default=0.0, metadata={"help": "linear warm-up length (epochs)"})
    lr_schedule: str = field(
        default="constant",
        metadata={
            "help": "lr after the warm-up, over the run's progress max(step / total steps, "
            "budget clock / --time-budget): constant | linear (the authors': to ~0 at the last "
            "step) | cosine (to 0) | onecycle (cosine rise from lr/25 over the warm-up, or 0.3 "
            "of the run, then cosine decay to lr/2.5e5); pretrained groups keep their lr ratio"
        },
    )
    grad_clip: float = field(default=0.0, metadata={"help": "gradient-norm clip (0: off)"})
    ema: float = field(
        default=0.0,
        metadata={
            "help": "EMA decay of the weights, updated every step (0: off; e.g. 0.999); the EMA "
            "weights are what validation, best-checkpoint selection, test, best.pt and "
            "probsym eval use"
        },
    )
    entropy_weight: float = field(default=0.1, metadata={"help": "weight of the sampler penalty"})
    noise_scale: float = field(default=1.0, metadata={"help": "PS noise scale"})
    noise_at: str = field(
        default="input",
        metadata={
            "help": "where PS noise enters: input (the paper's) | heads (the sampler network "
            "runs once per input; samples differ by noise on its scores and frame vectors)"
        },
    )
    antithetic: bool = field(
        default=False, metadata={"help": "PS samples in mirrored noise pairs (ε, -ε; u, 1 - u)"}
    )
    tau: float = field(default=0.01, metadata={"help": "relaxation temperature"})
    interface_hidden: int = field(default=64, metadata={"help": "sampler network width"})
    interface_layers: int = field(default=3, metadata={"help": "sampler network layers"})
    interface_dropout: float = field(
        default=0.0, metadata={"help": "sampler network dropout (training only)"}
    )
    hidden: int = field(default=64, metadata={"help": "base model width"})
    depth: int = field(default=4, metadata={"help": "base model layers"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    dropout: float = field(default=0.0, metadata={"help": "base model dropout"})
    pretrained: str = field(
        default="", metadata={"help": "backbone weights: a file, folder or hub id (transformers)"}
    )
    scratch: bool = field(
        default=False, metadata={"help": "the backbone's architecture with random weights"}
    )
    arch: str = field(default="", metadata={"help": "backbone architecture name (e.g. ViT's)"})
    token_grid: int = field(
        default=14, metadata={"help": "graph-token grid side (grid² patch tokens; paper: 14)"}
    )
    max_nodes: int = field(
        default=0, metadata={"help": "largest graph the token grid holds (0: the data set's)"}
    )
    pad_mode: str = field(
        default="zero",
        metadata={
            "help": "graph-token padding up to the grid: zero | reflect | replicate | circular"
        },
    )
    centering: bool = field(
        default=False, metadata={"help": "pad the graph symmetrically in the token grid"}
    )
    patch_dropout: float = field(
        default=0.0, metadata={"help": "training-time patch-token dropout rate (transformer/vit)"}
    )
    patch_dropout_uniform: bool = field(
        default=False, metadata={"help": "draw the patch dropout rate from U(0, rate) per step"}
    )
    eval_chunk: int = field(
        default=0, metadata={"help": "evaluate the base on at most N folded inputs at a time"}
    )
    max_train: int = field(
        default=0, metadata={"help": "use the first N training examples (0: all)"}
    )
    limit: int = field(default=0, metadata={"help": "keep the first N examples of each split"})
    seed: int = field(default=1, metadata={"help": "random seed"})
    data_dir: str = field(default="", metadata={"help": "folder with the data set's files"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | cuda:N"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0: torch default)"})
    precision: str = field(
        default="32", metadata={"help": "training precision: 32 | bf16 | 16 (autocast)"}
    )
    out: str = field(default="", metadata={"help": "run directory (default runs/<exp>-<method>)"})
    time_budget: float = field(
        default=0.0,
        metadata={"help": "stop at the epoch end past this many training minutes (0: off)"},
    )
    budget_clock: str = field(
        default="wall",
        metadata={
            "help": "what --time-budget and the schedules' progress count: wall (training "
            "wall-clock seconds, validation excluded) | cpu (this process's CPU seconds in "
            "training, robust when other jobs share the cores)"
        },
    )
    eval_every: int = field(default=1, metadata={"help": "validate every N epochs"})
    diagnostic_batches: int = field(
        default=4,
        metadata={
            "help": "training batches per epoch whose permutation entropy and base / sampler "
            "gradient norms (before clipping) go to log.csv (0: off; docs/analysis.md)"
        },
    )
    quiet: bool = field(default=False, metadata={"help": "no progress bars"})

    def __post_init__(self) -> None:
        for name, low in _MINIMUM.items():
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < low:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"option {flag} must be >= {low}, got {value}")
        if isinstance(self.ema, float) and not self.ema < 1:
            raise ConfigError(f"option --ema must be < 1 (0: off), got {self.ema}")
        choices_of = (
            ("lr_schedule", LR_SCHEDULES),
            ("budget_clock", BUDGET_CLOCKS),
            ("noise_at", NOISE_ENTRIES),
            ("pad_mode", PAD_MODES),
        )
        for name, choices in choices_of:
            value = getattr(self, name)
            if isinstance(value, str) and value not in choices:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"option {flag} must be one of {', '.join(choices)}, got {value!r}"
                )
        if isinstance(self.patch_dropout, float) and not 0 <= self.patch_dropout < 1:
            raise ConfigError(f"option --patch-dropout must be in [0, 1), got {self.patch_dropout}")
        if isinstance(self.samples_schedule, str):
            parse_samples_schedule(self.samples_schedule)

    @property
    def run_dir(self) -> Path:
        """Where checkpoints, logs and metrics go."""
        return Path(self.out or f"runs/{self.experiment}-{self.method}-{self.backbone}")

    @property
    def test_num_samples(self) -> int:
        """Samples per input at test time."""
        return self.test_samples or self.eval_samples


#: The choices of ``--noise-at`` (``probsym.samplers.learned.NOISE_ENTRIES``, kept here so that
#: reading a config does not import torch).
NOISE_ENTRIES = ("input", "heads")

#: The choices of ``--pad-mode`` (``probsym.models.graph_tokens.PAD_MODES``, without torch).
PAD_MODES = ("zero", "reflect", "replicate", "circular")

#: The choices of ``--budget-clock``.
BUDGET_CLOCKS = ("wall", "cpu")

#: Smallest valid value of the integer options (``0`` means "off" or "all" where allowed).
_MINIMUM = {
    "epochs": 1,
    "batch_size": 1,
    "eval_batch_size": 1,
    "samples": 1,
    "eval_samples": 1,
    "eval_every": 1,
    "diagnostic_batches": 0,
    "test_samples": 0,
    "max_train": 0,
    "limit": 0,
    "threads": 0,
    "max_nodes": 0,
    "token_grid": 1,
    "eval_chunk": 0,
    "time_budget": 0,
    "ema": 0,
}


def field_types() -> dict[str, type]:
    """Field name -> its Python type (resolved from the annotations)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def parse_value(name: str, text: str) -> Any:
    """Convert ``--set name=text`` to the field's type."""
    kind = field_types()[name]
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"option {name} expects true/false, got {text!r}")
    try:
        return kind(text)
    except ValueError as error:
        raise ValueError(f"option {name} expects {kind.__name__}, got {text!r}") from error


def check_keys(values: Mapping[str, Any], source: str) -> None:
    """Raise :class:`UnknownNameError` for keys that are not config fields."""
    known = field_types()
    for key in values:
        if key not in known:
            raise UnknownNameError(f"config key (in {source})", key, known)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML config file (``key = value`` per option)."""
    with open(path, "rb") as handle:
        values = tomllib.load(handle)
    check_keys(values, str(path))
    return values


def resolve(*layers: Mapping[str, Any]) -> TrainConfig:
    """Merge layers (later wins), validate keys and types, and build the config."""
    merged: dict[str, Any] = {}
    for layer in layers:
        check_keys(layer, "options")
        merged.update({k: v for k, v in layer.items() if v is not None})
    types = field_types()
    for key, value in merged.items():
        kind = types[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            merged[key] = float(value)
        elif not isinstance(value, kind):
            raise TypeError(f"config {key} must be {kind.__name__}, got {value!r}")
    return TrainConfig(**merged)


def to_toml(config: TrainConfig) -> str:
    """The resolved config as TOML (written into the run directory)."""
    lines = []
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = repr(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
