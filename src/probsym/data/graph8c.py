"""GRAPH8c: all 11,117 connected simple graphs on 8 nodes, up to isomorphism (Balcilar et al.).

The file is graph6 text, one graph per line. This module holds a small graph6 codec (graphs of at
most 62 nodes), the validated loader, a generator that calls nauty's ``geng``, and isomorphism
tools to compare graph collections independent of line order and node labels. Node features
follow the LPS protocol: ``x = [1, degree]``, float32, shape ``(8, 2)``.

It also holds the file fetcher shared with :mod:`probsym.data.exp`: a missing file is downloaded
from its public location, or a :class:`MissingDataError` names the path to fill.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import Data

from probsym.errors import DataError, MissingDataError

__all__ = [
    "GRAPH8C_FILE",
    "GRAPH8C_URL",
    "canonical_forms",
    "decode_graph6",
    "encode_graph6",
    "ensure_file",
    "find_nauty",
    "generate_graph8c",
    "load_graph8c",
    "read_graph6",
    "same_up_to_isomorphism",
]

log = logging.getLogger(__name__)

GRAPH8C_FILE = "graph8c.g6"
GRAPH8C_URL = (
    "https://raw.githubusercontent.com/balcilar/gnn-matlang/main/dataset/graph8c/raw/graph8c.g6"
)
GRAPH8C_COUNT = 11_117  # connected graphs on 8 nodes up to isomorphism (OEIS A001349)
GRAPH8C_NODES = 8

_HEADER = ">>graph6<<"
_MAX_NODES = 62  # one size byte; larger graphs use the '~' escape, which we do not need
_NAUTY_INSTALL = (
    "install nauty: `apt-get install nauty` (Debian/Ubuntu), `brew install nauty` (macOS) or "
    "`conda install -c conda-forge nauty`"
)


# ---------------------------------------------------------------------------------------------
# graph6 codec


def decode_graph6(text: str) -> tuple[int, Tensor]:
    """Decode one graph6 string into a node count and an undirected edge list.

    graph6 stores ``chr(n + 63)`` and then the upper triangle of the adjacency matrix column by
    column (``(0,1), (0,2), (1,2), (0,3), ...``), six bits per character, each character offset
    by 63, zero-padded to a whole character.

    Args:
        text: One graph6 string without newline; an optional ``>>graph6<<`` header is skipped.

    Returns:
        ``(n, edge_index)``: ``edge_index`` is int64 of shape ``(2, 2m)`` holding each of the
        ``m`` edges in both directions, sorted by (source, target).

    Raises:
        DataError: On sparse6/digraph6 input, characters outside ``?``..``~``, more than 62 nodes,
            a wrong length, or nonzero padding bits.
    """
    n, edges = _decode(text)
    return n, _undirected(edges)


def encode_graph6(num_nodes: int, edge_index: Tensor) -> str:
    """Encode an undirected simple graph as a graph6 string (inverse of :func:`decode_graph6`).

    Args:
        num_nodes: Node count, at most 62.
        edge_index: Shape ``(2, e)``; either direction of an edge marks it, self-loops are an error.

    Returns:
        The graph6 string, without newline.

    Raises:
        DataError: On more than 62 nodes, self-loops, or out-of-range indices.
    """
    if not 0 <= num_nodes <= _MAX_NODES:
        raise DataError(f"graph6 encoding supports 0..{_MAX_NODES} nodes, got {num_nodes}")
    num_bits = num_nodes * (num_nodes - 1) // 2
    word = 0  # bit k (from the most significant end) is the k-th upper-triangle entry
    for u, v in edge_index.t().tolist():
        if not (0 <= u < num_nodes and 0 <= v < num_nodes):
            raise DataError(f"edge ({u}, {v}) is out of range for {num_nodes} nodes")
        if u == v:
            raise DataError(f"graph6 cannot store the self-loop at node {u}")
        i, j = min(u, v), max(u, v)
        word |= 1 << (num_bits - 1 - (j * (j - 1) // 2 + i))
    num_chars = (num_bits + 5) // 6
    word <<= 6 * num_chars - num_bits  # zero padding at the end
    chars = [chr(num_nodes + 63)]
    chars += [chr(63 + ((word >> (6 * (num_chars - 1 - c))) & 63)) for c in range(num_chars)]
    return "".join(chars)


def read_graph6(path: str | os.PathLike[str]) -> list[Data]:
    """Read a graph6 file, one graph per line, into graphs without node features.

    Args:
        path: The file. A ``>>graph6<<`` header and a trailing newline are allowed; blank lines
            are not.

    Returns:
        One ``Data(edge_index, num_nodes)`` per line, in file order.

    Raises:
        DataError: On a malformed line; the message gives the file and the 1-based line number.
    """
    path = Path(path)
    parsed = _parse_lines(path.read_bytes(), str(path))
    return [Data(edge_index=_undirected(edges), num_nodes=n) for n, edges in parsed]


_Edges = list[tuple[int, int]]  # (i, j) with i < j, graph6 bit order


@functools.lru_cache(maxsize=_MAX_NODES + 1)
def _bit_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """The node pair of each graph6 bit position for ``n`` nodes."""
    return tuple((i, j) for j in range(1, n) for i in range(j))


def _decode(text: str) -> tuple[int, _Edges]:
    """Validate and decode one graph6 string to ``(n, edges)``."""
    if text.startswith(_HEADER):
        text = text[len(_HEADER) :]
    if not text:
        raise DataError("empty line; expected a graph6 string")
    if text[0] in ":;&":
        raise DataError(f"sparse6/digraph6 (leading {text[0]!r}) is not supported, only graph6")
    codes = [ord(c) - 63 for c in text]
    bad = next((c for c, v in zip(text, codes, strict=True) if not 0 <= v <= 63), None)
    if bad is not None:
        raise DataError(f"invalid graph6 character {bad!r}: allowed are '?' (63) to '~' (126)")
    n = codes[0]
    if n > _MAX_NODES:
        raise DataError(f"graphs with more than {_MAX_NODES} nodes are not supported")
    pairs = _bit_pairs(n)
    expected = 1 + (len(pairs) + 5) // 6
    if len(text) != expected:
        raise DataError(f"graph6 for n={n} needs {expected} characters, got {len(text)}: {text!r}")
    edges = []
    for c, value in enumerate(codes[1:]):
        for b in range(6):
            if value & (32 >> b):
                k = 6 * c + b
                if k >= len(pairs):
                    raise DataError(f"graph6 padding bits must be zero: {text!r}")
                edges.append(pairs[k])
    return n, edges


def _parse_lines(data: bytes, source: str) -> list[tuple[int, _Edges]]:
    """Decode graph6 lines; errors name ``source`` and the 1-based line number."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    parsed = []
    for number, raw in enumerate(lines, start=1):
        try:
            parsed.append(_decode(raw.rstrip(b"\r").decode("ascii")))
        except (UnicodeDecodeError, DataError) as err:
            reason = "non-ASCII bytes" if isinstance(err, UnicodeDecodeError) else err
            raise DataError(f"{source}, line {number}: {reason}") from err
    return parsed


def _undirected(edges: _Edges) -> Tensor:
    """Both directions of each edge, sorted by (source, target): int64 of shape (2, 2m)."""
    both = sorted(edges + [(j, i) for i, j in edges])
    return torch.tensor([[i for i, _ in both], [j for _, j in both]], dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# loading, fetching, generating


def load_graph8c(data_dir: str | os.PathLike[str], *, download: bool = True) -> list[Data]:
    """Load and validate GRAPH8c from ``<data_dir>/graph8c.g6``.

    Args:
        data_dir: Directory that holds (or will receive) ``graph8c.g6``.
        download: Fetch the public file into ``data_dir`` when it is missing.

    Returns:
        11,117 graphs in file order, each with ``x`` ``(8, 2)`` = ``[1, degree]`` (float32) and an
        undirected ``edge_index`` ``(2, 2m)``.

    Raises:
        MissingDataError: If the file is absent and cannot be downloaded; names the path and URL.
        DataError: If a line is malformed, a graph is not connected on 8 nodes, a line repeats,
            or the file does not hold exactly 11,117 graphs.
    """
    path = ensure_file(Path(data_dir) / GRAPH8C_FILE, GRAPH8C_URL, download=download)
    parsed = _parse_lines(path.read_bytes(), str(path))
    _validate_graph8c(parsed, str(path))
    return [_with_features(n, edges) for n, edges in parsed]


def generate_graph8c() -> list[Data]:
    """Generate GRAPH8c with nauty (``geng -c 8``) instead of reading the file.

    The graphs are the same up to isomorphism as the public file, but in nauty's order and
    labelling; compare them with :func:`same_up_to_isomorphism`.

    Returns:
        11,117 graphs with the same features and layout as :func:`load_graph8c`.

    Raises:
        MissingDataError: If nauty's ``geng`` is not installed; says how to install it.
        DataError: If ``geng`` fails or its output does not validate.
    """
    geng = find_nauty("geng")
    if geng is None:
        raise MissingDataError(f"generate_graph8c needs nauty's geng; {_NAUTY_INSTALL}")
    output = _run_nauty([geng, "-c", "-q", str(GRAPH8C_NODES)], "")
    parsed = _parse_lines(output.encode("ascii"), "geng output")
    _validate_graph8c(parsed, "geng output")
    return [_with_features(n, edges) for n, edges in parsed]


def ensure_file(path: Path, url: str, *, download: bool = True, timeout: float = 10.0) -> Path:
    """Return ``path`` if it exists, else download ``url`` to it (atomically).

    Args:
        path: Where the file must be.
        url: Its public location.
        download: If False, never touch the network.
        timeout: Seconds for the connection and each read.

    Returns:
        ``path``, now present.

    Raises:
        MissingDataError: If the file is absent and downloading is off or fails; the message
            names ``path`` and ``url`` so the user can place the file by hand.
    """
    if path.is_file():
        return path
    hint = f"expected the file {path}; download it from {url} and place it there"
    if not download:
        raise MissingDataError(f"{hint} (download=False)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A partial download must never look like the real file: write a temp file, then rename.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, ValueError) as err:  # URLError and timeouts are OSErrors
        raise MissingDataError(f"{hint} (download failed: {err})") from err
    log.info("downloaded %s to %s", url, path)
    return path


def _validate_graph8c(parsed: list[tuple[int, _Edges]], source: str) -> None:
    """Check every graph is connected on 8 nodes, no line repeats, and the count is 11,117."""
    seen: dict[tuple[tuple[int, int], ...], int] = {}
    for number, (n, edges) in enumerate(parsed, start=1):
        if n != GRAPH8C_NODES:
            raise DataError(f"{source}, line {number}: expected {GRAPH8C_NODES} nodes, got {n}")
        if not _is_connected(n, edges):
            raise DataError(f"{source}, line {number}: graph is not connected")
        key = tuple(edges)
        if key in seen:
            raise DataError(f"{source}, line {number}: same graph as line {seen[key]}")
        seen[key] = number
    if len(parsed) != GRAPH8C_COUNT:
        raise DataError(f"{source}: expected {GRAPH8C_COUNT} graphs, found {len(parsed)}")


def _is_connected(n: int, edges: _Edges) -> bool:
    """Breadth-first search from node 0 (tiny graphs: plain Python beats tensor ops here)."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for i, j in edges:
        neighbours[i].append(j)
        neighbours[j].append(i)
    reached, frontier = {0}, [0]
    while frontier:
        frontier = [v for u in frontier for v in neighbours[u] if v not in reached]
        reached.update(frontier)
    return len(reached) == n


def _with_features(n: int, edges: _Edges) -> Data:
    """GRAPH8c features: a constant 1, then the degree (LPS ``adddegree=True``).

    Same result as :func:`add_degree_feature` on ``x = ones(n, 1)``, built directly because one
    ``Data`` per graph instead of two halves the load time of 11,117 graphs.
    """
    deg = [0] * n
    for i, j in edges:
        deg[i] += 1
        deg[j] += 1
    x = torch.tensor([[1.0, float(d)] for d in deg], dtype=torch.float32)
    return Data(x=x, edge_index=_undirected(edges))


# ---------------------------------------------------------------------------------------------
# isomorphism


def find_nauty(program: str) -> str | None:
    """Locate a nauty program on PATH under its plain or Debian name.

    Args:
        program: ``"geng"``, ``"labelg"``, ...; Debian installs them as ``nauty-<program>``.

    Returns:
        The executable's path, or None when nauty is not installed.
    """
    return shutil.which(program) or shutil.which(f"nauty-{program}")


def canonical_forms(graphs: Sequence[Data]) -> list[str]:
    """Canonical graph6 string of each graph, from nauty's ``labelg``.

    Two graphs are isomorphic if and only if their strings are equal. Canonical labellings are
    only comparable within one nauty version, so compare forms computed in the same run.

    Args:
        graphs: Undirected simple graphs with at most 62 nodes.

    Returns:
        One string per graph, in input order.

    Raises:
        MissingDataError: If ``labelg`` (or ``nauty-labelg``) is not installed.
        DataError: If ``labelg`` fails.
    """
    labelg = find_nauty("labelg")
    if labelg is None:
        raise MissingDataError(f"canonical_forms needs nauty's labelg; {_NAUTY_INSTALL}")
    if not graphs:
        return []
    text = "".join(encode_graph6(g.num_nodes, g.edge_index) + "\n" for g in graphs)
    forms = _run_nauty([labelg, "-q"], text).split()
    if len(forms) != len(graphs):
        raise DataError(f"labelg returned {len(forms)} forms for {len(graphs)} graphs")
    return forms


def same_up_to_isomorphism(first: Sequence[Data], second: Sequence[Data]) -> bool:
    """Whether two graph collections are equal as multisets of isomorphism classes.

    Uses nauty's canonical forms when ``labelg`` is installed. Otherwise it buckets graphs by
    networkx's Weisfeiler-Lehman hash (equal for isomorphic graphs) and matches each graph to an
    isomorphic partner inside its bucket with ``networkx.is_isomorphic``; greedy matching is exact
    because isomorphism is an equivalence relation. Both paths ignore node features.

    Args:
        first: Undirected graphs with ``edge_index`` and ``num_nodes``.
        second: The same.

    Returns:
        True if there is a bijection pairing each graph with an isomorphic one.

    Raises:
        ModuleNotFoundError: If neither nauty nor networkx is installed.
    """
    if len(first) != len(second):
        return False
    if find_nauty("labelg") is not None:
        return sorted(canonical_forms(first)) == sorted(canonical_forms(second))
    try:
        import networkx as nx
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"same_up_to_isomorphism needs nauty's labelg or networkx; {_NAUTY_INSTALL}, or "
            "`pip install networkx`"
        ) from err

    def to_nx(graph: Data) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(range(graph.num_nodes))
        g.add_edges_from(graph.edge_index.t().tolist())
        return g

    buckets: defaultdict[str, list[nx.Graph]] = defaultdict(list)
    for graph in second:
        g = to_nx(graph)
        buckets[nx.weisfeiler_lehman_graph_hash(g)].append(g)
    for graph in first:
        g = to_nx(graph)
        bucket = buckets[nx.weisfeiler_lehman_graph_hash(g)]
        match = next((k for k, h in enumerate(bucket) if nx.is_isomorphic(g, h)), None)
        if match is None:
            return False
        bucket.pop(match)
    return True


def _run_nauty(command: list[str], stdin: str) -> str:
    """Run a nauty program on graph6 text and return its stdout."""
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, check=True, timeout=300
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        stderr = getattr(err, "stderr", None) or ""
        raise DataError(f"{' '.join(command)} failed: {err} {stderr.strip()}") from err
    return done.stdout
