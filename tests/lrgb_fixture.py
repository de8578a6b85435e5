"""A tiny LRGB fixture in the exact raw format PyG's ``LRGBDataset`` reads.

``<root>/<name>/raw/{train,val,test}.pt``: each a ``torch.save``-d list of per-graph tuples, as
in the extracted LRGB zips: Peptides ``(x, edge_attr, edge_index, y)`` with ``y`` (1, 10) or
(1, 11) float32; PCQM-Contact ``(x, edge_attr, edge_index, edge_label_index, edge_label)``.
``x`` (n, 9) and ``edge_attr`` (e, 3) hold int64 OGB codes; ``edge_index`` (2, e) int64 lists
every bond in both directions. PyG processes these into ``processed/`` on first load.

The molecules are random trees (chains with branches) with plausible codes: C / N / O / S
atoms (OGB atomic-number codes 5, 6, 7, 15), degree codes equal to the degree, single / double
bonds. The first training graph of every set has one atom (no bonds).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

SIZES = {"train": 6, "val": 3, "test": 3}
TARGETS = {"peptides-func": 10, "peptides-struct": 11, "pcqm-contact": 0}
ATOMS = torch.tensor([5, 5, 5, 6, 7, 15])  # C is the commonest


def molecule(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """A random tree on ``n`` atoms: ``x (n, 9)``, ``edge_attr (2(n-1), 3)``, ``edge_index``."""
    parents = [int(torch.randint(max(i - 2, 0), i, (1,), generator=generator)) for i in range(1, n)]
    pairs = [[p, i] for i, p in zip(range(1, n), parents, strict=True)]
    bonds = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    edge_index = torch.cat([bonds.T, bonds.T.flip(0)], dim=1)  # (2, e): both directions
    degree = torch.bincount(edge_index[0], minlength=n)
    x = torch.zeros(n, 9, dtype=torch.long)
    x[:, 0] = ATOMS[torch.randint(len(ATOMS), (n,), generator=generator)]
    x[:, 2] = degree  # total degree code = degree
    x[:, 3] = 5  # formal charge 0
    x[:, 4] = torch.randint(0, 3, (n,), generator=generator)  # hydrogens
    x[:, 6] = torch.randint(1, 3, (n,), generator=generator)  # SP2 / SP3
    kinds = torch.randint(0, 2, (len(bonds),), generator=generator)  # single / double
    attr = torch.stack([kinds, torch.zeros_like(kinds), kinds], dim=1)  # (bonds, 3)
    return x, torch.cat([attr, attr]), edge_index


def contacts(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Candidate pairs ``(2, m)`` and 0/1 labels: half of all ordered pairs, a quarter positive."""
    if n < 2:
        return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    pairs = torch.combinations(torch.arange(n), 2).T  # (2, n(n-1)/2), u < v
    pairs = torch.cat([pairs, pairs.flip(0)], dim=1)
    order = torch.randperm(pairs.size(1), generator=generator)[: max(4, pairs.size(1) // 2)]
    pairs = pairs[:, order]
    label = torch.zeros(pairs.size(1), dtype=torch.long)
    label[: max(1, len(label) // 4)] = 1
    return pairs, label


def write_lrgb_fixture(root: Path, name: str, seed: int = 0, sizes: dict | None = None) -> Path:
    """Write the raw files of ``name`` under ``root/name/raw`` and return ``root``."""
    generator = torch.Generator().manual_seed(seed)
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, count in (sizes or SIZES).items():
        graphs = []
        for i in range(count):
            n = (
                1
                if split == "train" and i == 0
                else int(torch.randint(3, 12, (1,), generator=generator))
            )
            x, edge_attr, edge_index = molecule(n, generator)
            if TARGETS[name] == 0:
                graphs.append((x, edge_attr, edge_index, *contacts(n, generator)))
            elif name == "peptides-func":
                y = torch.randint(0, 2, (1, 10), generator=generator).float()
                graphs.append((x, edge_attr, edge_index, y))
            else:
                graphs.append((x, edge_attr, edge_index, torch.randn(1, 11, generator=generator)))
        torch.save(graphs, raw / f"{split}.pt")
    return Path(root)
