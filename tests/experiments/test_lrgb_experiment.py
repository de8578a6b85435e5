"""LRGB end to end on a tiny fixture in LRGBDataset's raw format: CLI, heads, equivariance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lrgb_fixture import write_lrgb_fixture
from probsym import cli
from probsym.experiments import PLANNED, get
from probsym.testing import assert_equivariant
from probsym.train.config import resolve
from probsym.train.loop import build_model

pytest.importorskip("ogb", reason="LRGB's vocabularies come from ogb: pip install 'probsym[lrgb]'")

NAMES = ("peptides-func", "peptides-struct", "pcqm-contact")
TINY = ["--hidden", "16", "--depth", "1", "--heads", "2", "--token-grid", "4", "--max-nodes", "16"]
RANKING = {
    f"{metric}{suffix}"
    for metric in ("mrr", "hits@1", "hits@3", "hits@10")
    for suffix in ("", "_filtered", "_filtered_noself")
}
TEST_KEYS = {
    "peptides-func": {"loss", "ap"},
    "peptides-struct": {"loss", "mae"},
    "pcqm-contact": {"loss", *RANKING},
}


@pytest.fixture(scope="module")
def lrgb_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lrgb")
    for seed, name in enumerate(NAMES):
        write_lrgb_fixture(root, name, seed=seed)
    return root


def train(root: Path, out: Path, name: str, *options: str) -> dict:
    argv = ["train", name, "--data-dir", str(root), "--epochs", "1", "--batch-size", "4"]
    argv += ["--eval-samples", "2", "--interface-hidden", "8", *TINY, *options]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_the_benchmarks_are_registered():
    assert not set(NAMES) & set(PLANNED)
    assert {get(name).name for name in NAMES} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_train_writes_the_benchmark_metrics(lrgb_root, tmp_path, name):
    metrics = train(lrgb_root, tmp_path / "run", name)
    test = metrics["test"]
    assert set(test) == TEST_KEYS[name]
    assert all(0 <= test[k] <= 1 for k in TEST_KEYS[name] - {"loss", "mae"})
    assert metrics["epochs"] == 1


@pytest.mark.parametrize("method", ["ga", "canonical"])
def test_other_methods_run(lrgb_root, tmp_path, method):
    metrics = train(lrgb_root, tmp_path / "run", "peptides-func", "--method", method)
    assert metrics["method"] == method and "ap" in metrics["test"]


def test_missing_data_dir_names_the_files(tmp_path, capsys):
    argv = ["train", "peptides-struct", "--data-dir", str(tmp_path / "empty"), "--epochs", "1"]
    assert cli.main([*argv, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "peptides-struct/raw/train.pt" in err and "peptidesstruct.zip" in err


@pytest.mark.parametrize(
    "options, message",
    [
        (("--backbone", "minilm"), "patch-dropout"),
        (("--method", "none"), "unknown method"),
        (("--backbone", "gin"), "unknown backbone"),
        (("--pad-mode", "mirror"), "pad-mode"),
    ],
)
def test_bad_options_are_clear_errors(lrgb_root, tmp_path, capsys, options, message):
    argv = ["train", "peptides-func", "--data-dir", str(lrgb_root), *TINY, *options]
    assert cli.main([*argv, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_patch_dropout_is_refused_for_the_pair_head(lrgb_root, tmp_path, capsys):
    argv = ["train", "pcqm-contact", "--data-dir", str(lrgb_root), *TINY, "--patch-dropout", "0.5"]
    assert cli.main([*argv, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "pair head" in capsys.readouterr().err


def built(root: Path, name: str, method: str, **options):
    experiment = get(name)
    config = resolve(
        {"experiment": name, "data_dir": str(root)},
        dict(experiment.defaults),
        {"method": method, "hidden": 16, "depth": 1, "heads": 2, "token_grid": 4},
        {"max_nodes": 16, "interface_hidden": 8, **options},
    )
    data = experiment.build_data(config)
    model = build_model(experiment, config, data["train"], torch.device("cpu")).double()
    return experiment, data, model


def double_inputs(batch: dict) -> dict:
    return {k: batch[k].double() if k != "mask" else batch[k] for k in ("x", "adj", "mask")}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["ps", "ga", "canonical"])
def test_the_built_model_is_exactly_equivariant(lrgb_root, name, method):
    """Peptides: invariant class-token output; PCQM: equivariant link logits (P Y Pᵀ)."""
    experiment, data, model = built(lrgb_root, name, method)
    for split, size in (("train", 3), ("val", 3)):  # the first train batch holds a one-node graph
        batch = next(data[split].batches(size))
        assert bool((~batch["mask"]).any())  # the batch is padded
        assert_equivariant(model, double_inputs(batch), atol=1e-9, rtol=1e-9)
    one_node = next(data["train"].batches(1))
    assert one_node["mask"].shape[1] == 1
    assert_equivariant(model, double_inputs(one_node), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_padding_garbage_does_not_reach_the_outputs(lrgb_root, name):
    experiment, data, model = built(lrgb_root, name, "ps")
    batch = next(data["val"].batches(3))
    inputs = double_inputs(batch)
    mask = inputs["mask"]
    real_pairs = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(-1)
    generator = torch.Generator().manual_seed(0)
    noisy = dict(inputs)
    noisy["x"] = torch.where(
        mask.unsqueeze(-1), inputs["x"], torch.randn(inputs["x"].shape, generator=generator)
    )
    garbage = torch.randint(0, 4, inputs["adj"].shape, generator=generator).double()
    noisy["adj"] = torch.where(real_pairs, inputs["adj"], garbage)
    noise = model.sampler.sample_noise(inputs, model.eval_num_samples)
    clean = model(**inputs, noise=noise).value
    dirty = model(**noisy, noise=noise).value
    if name == "pcqm-contact":
        clean, dirty = clean * real_pairs, dirty * real_pairs
    torch.testing.assert_close(dirty, clean, atol=1e-10, rtol=0)


def test_pair_readout_pads_to_fixed_maps_and_the_loss_reads_candidates(lrgb_root):
    experiment, data, model = built(lrgb_root, "pcqm-contact", "ga")
    batch = next(data["val"].batches(2))
    value = model(**double_inputs(batch)).value
    scores, codes = experiment.read(value, batch)
    width = batch["target"].shape[-1]
    assert scores.shape == codes.shape == (2, width, width)
    candidates = int((codes >= 2).sum())
    assert candidates > 0 and torch.isfinite(experiment.loss(scores, codes))


def test_peptides_heads_are_graph_level(lrgb_root):
    for name, width in (("peptides-func", 10), ("peptides-struct", 11)):
        experiment, data, model = built(lrgb_root, name, "ga")
        batch = next(data["val"].batches(3))
        assert model(**double_inputs(batch)).value.shape == (3, width)


@pytest.mark.parametrize("name", ["peptides-func", "pcqm-contact"])
def test_the_check_has_power_on_the_unsymmetrized_base(lrgb_root, name):
    from probsym import Symmetrize, groups, samplers

    _, data, model = built(lrgb_root, name, "ga")
    plain = Symmetrize(model.base, samplers.Identity(groups.Sn(), model.signature)).double()
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(plain, double_inputs(next(data["val"].batches(3))), atol=1e-6, rtol=1e-6)


def paper_commands() -> list[list[str]]:
    """The ``python -m probsym train`` commands of docs/lrgb.md, as argv lists."""
    import re
    import shlex

    text = (Path(__file__).resolve().parents[2] / "docs" / "lrgb.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.startswith("python -m probsym train"):
                commands.append(shlex.split(line)[3:])
    return commands


def test_the_documented_paper_commands_parse_to_the_paper_settings():
    commands = {argv[1]: argv for argv in paper_commands()}
    assert set(commands) == set(NAMES)
    expected = {
        "peptides-func": {"pad_mode": "reflect", "centering": True, "weight_decay": 0.1},
        "peptides-struct": {"pad_mode": "circular", "patch_dropout_uniform": True},
        "pcqm-contact": {"samples": 10, "lr": 5e-5, "interface_dropout": 0.0},
    }
    for name, argv in commands.items():
        _, config = cli.config_from_args(cli.build_parser().parse_args(argv))
        assert config.backbone == "vit" and config.lr_schedule == "linear"
        for key, value in expected[name].items():
            assert getattr(config, key) == value, (name, key)


def test_a_trained_run_re_evaluates(lrgb_root, tmp_path, capsys):
    train(lrgb_root, tmp_path / "run", "pcqm-contact")
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "run"), "--eval-samples", "3", "--quiet"]) == 0
    assert "mrr_filtered_noself" in capsys.readouterr().out
