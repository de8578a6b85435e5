from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from probsym.data import graph8c
from probsym.data.graph8c import (
    GRAPH8C_URL,
    canonical_forms,
    decode_graph6,
    encode_graph6,
    find_nauty,
    generate_graph8c,
    load_graph8c,
    read_graph6,
    same_up_to_isomorphism,
)
from probsym.errors import DataError, MissingDataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# A connected 8-node graph (the path 0-1-...-7) and a disconnected one (two 4-cycles).
PATH8 = encode_graph6(8, torch.tensor([[i, i + 1] for i in range(7)]).t())
TWO_C4 = encode_graph6(
    8, torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4]]).t()
)


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not (SHARED_DATA / "graph8c" / "graph8c.g6").is_file():
        pytest.skip(f"shared data absent: {SHARED_DATA / 'graph8c' / 'graph8c.g6'}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def graph8c_graphs(shared_data: Path) -> list[Data]:
    return load_graph8c(shared_data / "graph8c", download=False)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def undirected_pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(u, v), max(u, v)) for u, v in edge_index.t().tolist()}


def random_edges(generator: torch.Generator, n: int, p: float = 0.3) -> torch.Tensor:
    upper = torch.triu(torch.rand(n, n, generator=generator) < p, diagonal=1)
    return upper.nonzero().t()


# --- codec -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n", "pairs"),
    [
        ("?", 0, set()),
        ("@", 1, set()),
        ("A?", 2, set()),
        ("A_", 2, {(0, 1)}),
        ("Bw", 3, {(0, 1), (0, 2), (1, 2)}),
        ("CF", 4, {(0, 3), (1, 3), (2, 3)}),  # star centred on node 3
        (">>graph6<<Bw", 3, {(0, 1), (0, 2), (1, 2)}),
    ],
)
def test_decode_known_strings(text, n, pairs):
    num_nodes, edge_index = decode_graph6(text)
    assert num_nodes == n
    assert edge_index.dtype == torch.long and edge_index.shape == (2, 2 * len(pairs))
    assert undirected_pairs(edge_index) == pairs
    assert set(map(tuple, edge_index.t().tolist())) == pairs | {(j, i) for i, j in pairs}


@pytest.mark.parametrize("n", [0, 1, 2, 5, 8, 13, 31, 62])
def test_encode_decode_round_trip(n):
    generator = torch.Generator().manual_seed(n)
    edges = random_edges(generator, n)
    text = encode_graph6(n, edges)
    num_nodes, edge_index = decode_graph6(text)
    assert num_nodes == n
    assert undirected_pairs(edge_index) == undirected_pairs(edges)


def test_codec_matches_networkx():
    nx = pytest.importorskip("networkx")
    generator = torch.Generator().manual_seed(0)
    for n in (3, 8, 20, 62):
        edges = random_edges(generator, n, p=0.5)
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        graph.add_edges_from(edges.t().tolist())
        reference = nx.to_graph6_bytes(graph, header=False).decode().strip()
        assert encode_graph6(n, edges) == reference
        assert undirected_pairs(decode_graph6(reference)[1]) == undirected_pairs(edges)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("B w", "invalid graph6 character ' '"),
        ("Bw\x7f", "invalid graph6 character"),
        ("B", "needs 2 characters, got 1"),
        ("Bww", "needs 2 characters, got 3"),
        ("B~", "padding bits must be zero"),
        (":Fa@x^", "sparse6"),
        ("&B?", "digraph6"),
        ("~?@??", "more than 62 nodes"),
    ],
)
def test_decode_malformed(text, match):
    with pytest.raises(DataError, match=match):
        decode_graph6(text)


def test_encode_rejects_self_loops_and_large_graphs():
    with pytest.raises(DataError, match="self-loop"):
        encode_graph6(3, torch.tensor([[1], [1]]))
    with pytest.raises(DataError, match="0..62"):
        encode_graph6(63, torch.zeros(2, 0, dtype=torch.long))


def test_read_graph6_reports_line_number(tmp_path):
    path = tmp_path / "bad.g6"
    path.write_text("Bw\nA_\nBx\n")
    with pytest.raises(DataError, match=r"bad\.g6, line 3: .*padding"):
        read_graph6(path)
    path.write_bytes(b"Bw\n\xff\n")
    with pytest.raises(DataError, match="line 2: non-ASCII"):
        read_graph6(path)
    path.write_text("Bw\n\nA_\n")
    with pytest.raises(DataError, match="line 2: empty line"):
        read_graph6(path)


def test_read_graph6_accepts_header_and_crlf(tmp_path):
    path = tmp_path / "ok.g6"
    path.write_bytes(b">>graph6<<Bw\r\nA_\r\n")
    graphs = read_graph6(path)
    assert [g.num_nodes for g in graphs] == [3, 2]
    assert undirected_pairs(graphs[1].edge_index) == {(0, 1)}


# --- loader validation on small files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ([PATH8, TWO_C4], "line 2: graph is not connected"),
        ([PATH8, "Bw"], "line 2: expected 8 nodes, got 3"),
        ([PATH8, PATH8], "line 2: same graph as line 1"),
        ([PATH8], "expected 11117 graphs, found 1"),
    ],
)
def test_load_graph8c_validation(tmp_path, lines, match):
    (tmp_path / "graph8c.g6").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match):
        load_graph8c(tmp_path, download=False)


def test_missing_file_offline_names_path(tmp_path):
    with pytest.raises(MissingDataError) as info:
        load_graph8c(tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "graph8c.g6") in message and GRAPH8C_URL in message


def test_missing_file_failed_download_names_path_and_url(tmp_path, no_network):
    with pytest.raises(MissingDataError) as info:
        load_graph8c(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "graph8c.g6") in message
    assert GRAPH8C_URL in message and "network disabled" in message
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_download_writes_file_atomically(tmp_path, monkeypatch):
    seen = []

    def fake_urlopen(url, timeout):
        seen.append((url, timeout))
        return io.BytesIO(f"{PATH8}\n".encode())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(DataError, match="expected 11117 graphs, found 1"):
        load_graph8c(tmp_path / "cache")
    assert seen and seen[0][0] == GRAPH8C_URL
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["graph8c.g6"]


def test_generate_without_nauty_says_how_to_install(monkeypatch):
    monkeypatch.setattr(graph8c.shutil, "which", lambda name: None)
    with pytest.raises(MissingDataError, match="apt-get install nauty"):
        generate_graph8c()


def test_same_up_to_isomorphism_networkx_fallback(monkeypatch):
    pytest.importorskip("networkx")
    monkeypatch.setattr(graph8c, "find_nauty", lambda program: None)
    generator = torch.Generator().manual_seed(1)
    graphs = [Data(edge_index=random_edges(generator, 7), num_nodes=7) for _ in range(6)]
    relabelled = []
    for graph in reversed(graphs):
        perm = torch.randperm(7, generator=generator)
        relabelled.append(Data(edge_index=perm[graph.edge_index], num_nodes=7))
    assert same_up_to_isomorphism(graphs, relabelled)
    changed = relabelled[:-1] + [Data(edge_index=torch.tensor([[0], [1]]), num_nodes=7)]
    assert not same_up_to_isomorphism(graphs, changed)
    assert not same_up_to_isomorphism(graphs, relabelled[:-1])


# --- the shared GRAPH8c file -----------------------------------------------------------------


@pytest.mark.needs_data
def test_shared_graph8c_loads(graph8c_graphs):
    assert len(graph8c_graphs) == 11_117
    x = torch.stack([g.x for g in graph8c_graphs])  # (11117, 8, 2)
    assert x.dtype == torch.float32 and x.shape == (11_117, 8, 2)
    assert bool((x[..., 0] == 1).all())
    degrees = torch.stack([torch.bincount(g.edge_index[0], minlength=8) for g in graph8c_graphs])
    assert torch.equal(x[..., 1], degrees.float())
    assert int(degrees.min()) >= 1  # connected on 8 nodes: no isolated node
    edges = torch.tensor([g.edge_index.size(1) // 2 for g in graph8c_graphs])
    assert int(edges.min()) == 7 and int(edges.max()) == 28  # trees up to K8


@pytest.mark.needs_data
def test_shared_graph8c_matches_networkx_parser(shared_data, graph8c_graphs):
    nx = pytest.importorskip("networkx")
    lines = (shared_data / "graph8c" / "graph8c.g6").read_text().split()
    for line, graph in zip(lines[::50], graph8c_graphs[::50], strict=True):
        assert set(nx.from_graph6_bytes(line.encode()).edges()) == undirected_pairs(
            graph.edge_index
        )


@pytest.mark.needs_data
def test_shared_graph8c_equals_geng_output(graph8c_graphs):
    if find_nauty("geng") is None or find_nauty("labelg") is None:
        pytest.skip("nauty (geng, labelg) not installed: apt-get install nauty")
    generated = generate_graph8c()
    forms = canonical_forms(graph8c_graphs)
    assert len(set(forms)) == 11_117  # the file holds pairwise non-isomorphic graphs
    assert set(forms) == set(canonical_forms(generated))
