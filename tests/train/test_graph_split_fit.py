"""The loop on GraphSplits of random PyG graphs: node-level readout, groups, fit and resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional
from torch_geometric.data import Data

from probsym import Signature, Symmetrize, fields, groups, samplers
from probsym.data.loader import GraphSplit
from probsym.errors import ConfigError
from probsym.experiments.base import Experiment
from probsym.train.config import TrainConfig
from probsym.train.loop import batches, evaluate, fit, num_batches, param_groups

CLASSES = 3
SIGNATURE = Signature({"x": fields.node, "adj": fields.pair}, fields.node)


class NodeClassifier(nn.Module):
    """Per-node logits from a node's features and degree; any padded size ``n``."""

    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.backbone = nn.Linear(channels + 1, 16)  # plays the pretrained part
        self.head = nn.Linear(16, CLASSES)

    def forward(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        degree = adj[..., 0].sum(-1, keepdim=True)  # (b, n, 1)
        return self.head(torch.tanh(self.backbone(torch.cat([x, degree], -1))))

    def pretrained_parameters(self):
        return self.backbone.parameters()


def random_graphs(count: int, seed: int) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        n = int(torch.randint(2, 13, (1,), generator=generator))
        edge_index = (torch.rand(n, n, generator=generator) < 0.3).nonzero().t()
        x = torch.randn(n, 2, generator=generator)
        out.append(Data(x=x, edge_index=edge_index, y=(x[:, 0] > 0).long() + (x[:, 1] > 1)))
    return out


def node_readout(value: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Real nodes only: ``(V, C)`` logits and ``(V,)`` labels."""
    return value[batch["mask"]], batch["target"][batch["mask"]]


def cross_entropy(prediction: Tensor, target: Tensor) -> Tensor:
    return functional.cross_entropy(prediction, target)


def accuracy(prediction: Tensor, target: Tensor) -> dict[str, float]:
    return {"accuracy": float((prediction.argmax(-1) == target).float().mean())}


def batch_accuracy(prediction: Tensor, target: Tensor) -> dict[str, float]:
    return {"batch_accuracy": accuracy(prediction, target)["accuracy"]}


def build_data(config: TrainConfig) -> dict[str, GraphSplit]:
    sizes = {"train": 40, "val": 15, "test": 15}
    return {
        name: GraphSplit(random_graphs(count, seed), label_level="node", chunk_batches=2)
        for seed, (name, count) in enumerate(sizes.items())
    }


def build_model(config: TrainConfig, example: dict[str, Tensor]) -> Symmetrize:
    sampler = samplers.resolve(config.method, groups.Sn(), SIGNATURE)
    return Symmetrize(
        NodeClassifier(), sampler, num_samples=config.samples, eval_num_samples=config.eval_samples
    )


NODES = Experiment(
    name="random-nodes",
    build_data=build_data,
    build_model=build_model,
    loss=cross_entropy,
    metrics=accuracy,
    readout=node_readout,
    batch_metrics=batch_accuracy,
    select=("accuracy", "max"),
)


def tiny_config(out, **changes) -> TrainConfig:
    values = dict(
        experiment="random-nodes",
        method="ga",
        epochs=2,
        batch_size=8,
        eval_batch_size=6,
        samples=2,
        eval_samples=2,
        lr=1e-2,
        quiet=True,
        out=str(out),
    )
    return TrainConfig(**{**values, **changes})


def test_loop_batches_dispatch_to_the_split():
    split = build_data(tiny_config("unused"))["train"]
    assert num_batches(split, 8) == 5
    seen = [len(b["mask"]) for b in batches(split, 8, torch.Generator().manual_seed(0))]
    assert sum(seen) == 40 and len(seen) == 5
    dense = {"x": torch.zeros(10, 3), "target": torch.zeros(10)}
    assert [len(b["x"]) for b in batches(dense, 4)] == [4, 4, 2]


def test_evaluate_concatenates_node_readouts_over_variable_sizes():
    config = tiny_config("unused")
    split = build_data(config)["val"]
    model = build_model(config, {})
    result = evaluate(NODES, model, split, 2, 6, torch.device("cpu"))
    assert set(result) == {"loss", "accuracy", "batch_accuracy"}
    # the same numbers by hand: every real node counted once
    torch.manual_seed(0)
    predictions, targets, per_batch = [], [], []
    for batch in split.batches(6):
        with torch.no_grad():
            out = model(x=batch["x"], adj=batch["adj"], mask=batch["mask"], num_samples=2)
        prediction, target = node_readout(out.value, batch)
        predictions.append(prediction)
        targets.append(target)
        per_batch.append(accuracy(prediction, target)["accuracy"])
    torch.manual_seed(0)
    result = evaluate(NODES, model, split, 2, 6, torch.device("cpu"))
    total = sum(int(g.num_nodes) for g in split.graphs)
    assert sum(len(t) for t in targets) == total
    assert result["accuracy"] == pytest.approx(
        accuracy(torch.cat(predictions), torch.cat(targets))["accuracy"]
    )
    assert result["batch_accuracy"] == pytest.approx(sum(per_batch) / len(per_batch))
    assert result["loss"] == pytest.approx(
        float(cross_entropy(torch.cat(predictions), torch.cat(targets)))
    )


def test_pretrained_parameters_get_their_own_learning_rate():
    model = build_model(tiny_config("unused"), {})
    groups_ = param_groups(model, tiny_config("unused", lr=1e-3, lr_pretrained=1e-5))
    assert [g["lr"] for g in groups_] == [1e-3, 1e-5]
    pretrained = {id(p) for p in model.base.backbone.parameters()}
    assert {id(p) for p in groups_[1]["params"]} == pretrained
    assert not pretrained & {id(p) for p in groups_[0]["params"]}
    assert sum(len(g["params"]) for g in groups_) == len(list(model.parameters()))
    same = param_groups(model, tiny_config("unused", lr=1e-3))
    assert [g["lr"] for g in same] == [1e-3, 1e-3]
    model.base.pretrained_parameters = None  # no such method: one group
    assert len(param_groups(model, tiny_config("unused"))) == 1


def test_fit_on_graph_splits_and_resume_matches(tmp_path):
    straight = fit(NODES, tiny_config(tmp_path / "straight", lr_pretrained=1e-3))
    assert set(straight["test"]) == {"loss", "accuracy", "batch_accuracy"}
    assert 0 <= straight["test"]["accuracy"] <= 1 and straight["epochs"] == 2
    log = (tmp_path / "straight" / "log.csv").read_text().splitlines()
    assert log[0].split(",")[2] == "lr" and float(log[1].split(",")[2]) == 1e-2  # group 0
    fit(NODES, tiny_config(tmp_path / "part", lr_pretrained=1e-3, epochs=1))
    resumed = fit(NODES, tiny_config(tmp_path / "part", lr_pretrained=1e-3), resume=True)
    assert resumed["test"] == straight["test"]
    first = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert first["test"] == resumed["test"]
    assert (tmp_path / "part" / "log.csv").read_text() != ""
    for a, b in zip(
        (tmp_path / "straight" / "log.csv").read_text().splitlines(),
        (tmp_path / "part" / "log.csv").read_text().splitlines(),
        strict=True,
    ):
        # timings differ; everything else is identical
        header = log[0].split(",")
        drop = {i for i, name in enumerate(header) if name.endswith("_seconds")}
        assert [v for i, v in enumerate(a.split(",")) if i not in drop] == [
            v for i, v in enumerate(b.split(",")) if i not in drop
        ]


def test_time_budget_stops_at_an_epoch_end_validated_and_tests_the_best(tmp_path):
    metrics = fit(NODES, tiny_config(tmp_path / "budget", epochs=50, time_budget=1e-9))
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == 1
    assert metrics["time_budget_minutes"] == 1e-9
    log = (tmp_path / "budget" / "log.csv").read_text().splitlines()
    assert len(log) == 2 and "val_loss" in log[0]
    assert (tmp_path / "budget" / "best.pt").exists()


def test_time_budget_must_not_be_negative():
    with pytest.raises(ConfigError, match="time-budget"):
        tiny_config("unused", time_budget=-1.0)
