"""A deterministic, clustered 1536-d data set for the similarity-search benchmark.

The generator is the one ../shared/notes.md describes (its recall curve came
close to published figures on real OpenAI embeddings): 1,000 random unit
centroids; each row = centroid + 0.15 x (a unit vector in a 16-d subspace
specific to that cluster) + 0.25 x (isotropic gaussian noise of unit norm),
normalized. Contexts hold 50 rows each; a context's home cluster supplies
half of its rows, the other half come from random clusters. The first
`tree_rows` rows form one fork tree (a root plus forks of earlier members of
the tree at random versions, 50 own rows each). About 1% of the messages and
1% of the contexts are soft-deleted (two contexts of the tree among them), so
the scope filters have something to remove. Queries are held out: drawn from
the same distribution, never inserted.

Roles: user 48%, assistant 25%, tool 25%, system 2% — filtering on ASSISTANT
selects 25% of the rows, on SYSTEM 2% ("a role that is 1 in 50 rows").
Everything is a pure function of (rows, seed).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

DIMENSIONS = 1536
CLUSTERS = 1_000
SUBSPACE = 16
SUBSPACE_SCALE = 0.15
NOISE_SCALE = 0.25
CONTEXT_ROWS = 50
ROLE_NAMES = ("user", "assistant", "tool", "system")
ROLE_WEIGHTS = (0.48, 0.25, 0.25, 0.02)
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class ContextSpec:
    id: uuid.UUID
    parent: int | None  # index into Dataset.contexts
    fork_version: int | None
    created_at: datetime
    deleted: bool
    rows: list[int] = field(default_factory=list)  # indices of its own rows, version order
    latest_version: int = 0
    message_count: int = 0
    total_tokens: int = 0


@dataclass
class Dataset:
    seed: int
    vectors: np.ndarray  # (n, 1536) float32, unit norm
    ids: list[uuid.UUID]
    roles: np.ndarray  # (n,) int index into ROLE_NAMES
    context_of: np.ndarray  # (n,) int index into contexts
    version: np.ndarray  # (n,) int64
    tokens: np.ndarray  # (n,) int32
    deleted: np.ndarray  # (n,) bool
    contexts: list[ContextSpec]
    tree: list[int]  # context indices of the fork tree, root first
    queries: np.ndarray  # (q, 1536) float32, unit norm, not in the table

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])

    def created_at(self, row: int) -> datetime:
        ctx = self.contexts[int(self.context_of[row])]
        return ctx.created_at + timedelta(milliseconds=int(self.version[row]))

    @property
    def deleted_at(self) -> datetime:
        """When the deleted messages and contexts were deleted: after every fork."""
        return BASE_TIME + timedelta(days=30)


class ClusteredVectors:
    """The clustered rows of `seed`: centroids and subspaces fixed, noise drawn per call."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        centroids = rng.standard_normal((CLUSTERS, DIMENSIONS), dtype=np.float32)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        self.centroids = centroids
        # Nearly orthonormal in 1536-d; each cluster gets its own 16-d subspace.
        self.bases = rng.standard_normal((CLUSTERS, SUBSPACE, DIMENSIONS), dtype=np.float32)
        self.bases /= np.sqrt(DIMENSIONS, dtype=np.float32)

    def rows(self, clusters: np.ndarray) -> np.ndarray:
        n = len(clusters)
        out = np.empty((n, DIMENSIONS), dtype=np.float32)
        for start in range(0, n, 1024):
            c = clusters[start : start + 1024]
            m = len(c)
            coeffs = self.rng.standard_normal((m, SUBSPACE), dtype=np.float32)
            coeffs /= np.linalg.norm(coeffs, axis=1, keepdims=True)
            sub = np.einsum("rs,rsd->rd", coeffs, self.bases[c])
            sub /= np.linalg.norm(sub, axis=1, keepdims=True)
            noise = self.rng.standard_normal((m, DIMENSIONS), dtype=np.float32)
            noise /= np.linalg.norm(noise, axis=1, keepdims=True)
            v = self.centroids[c] + SUBSPACE_SCALE * sub + NOISE_SCALE * noise
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            out[start : start + m] = v
        return out


def generate(rows: int, seed: int = 20250101, queries: int = 200) -> Dataset:
    """The data set of `rows` messages (a multiple of 50) and `queries` held-out queries."""
    if rows % CONTEXT_ROWS or rows < 20 * CONTEXT_ROWS:
        raise ValueError(f"rows must be a multiple of {CONTEXT_ROWS} and >= 1000")
    gen = ClusteredVectors(seed)
    rng = gen.rng
    pyrng = random.Random(seed)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=pyrng.getrandbits(128), version=4)

    n_contexts = rows // CONTEXT_ROWS
    tree_contexts = max(2, n_contexts // 20)  # ~5% of the rows: ~5,000 at 100k
    homes = rng.integers(0, CLUSTERS, n_contexts)
    own_home = rng.random(rows) < 0.5
    context_of = np.repeat(np.arange(n_contexts), CONTEXT_ROWS)
    clusters = np.where(own_home, homes[context_of], rng.integers(0, CLUSTERS, rows))
    vectors = gen.rows(clusters)
    roles = rng.choice(len(ROLE_NAMES), size=rows, p=ROLE_WEIGHTS)
    tokens = rng.integers(5, 500, rows).astype(np.int32)
    deleted = rng.random(rows) < 0.01

    contexts: list[ContextSpec] = []
    version = np.zeros(rows, dtype=np.int64)
    for i in range(n_contexts):
        parent: int | None = None
        fork_version: int | None = None
        if 0 < i < tree_contexts:
            parent = pyrng.randrange(i)
            fork_version = pyrng.randint(1, contexts[parent].latest_version)
        spec = ContextSpec(
            id=new_id(),
            parent=parent,
            fork_version=fork_version,
            created_at=BASE_TIME + timedelta(minutes=i),
            deleted=False,
            rows=list(range(i * CONTEXT_ROWS, (i + 1) * CONTEXT_ROWS)),
        )
        base = fork_version or 0
        version[spec.rows] = np.arange(base + 1, base + CONTEXT_ROWS + 1)
        spec.latest_version = base + CONTEXT_ROWS
        contexts.append(spec)
    # Two non-root members of the tree and ~1% of the other contexts are deleted.
    for i in pyrng.sample(range(1, tree_contexts), min(2, tree_contexts - 1)):
        contexts[i].deleted = True
    for i in pyrng.sample(range(tree_contexts, n_contexts), max(1, n_contexts // 100)):
        contexts[i].deleted = True

    ds = Dataset(
        seed=seed,
        vectors=vectors,
        ids=[new_id() for _ in range(rows)],
        roles=roles,
        context_of=context_of,
        version=version,
        tokens=tokens,
        deleted=deleted,
        contexts=contexts,
        tree=list(range(tree_contexts)),
        queries=gen.rows(rng.integers(0, CLUSTERS, queries)),
    )
    for i, spec in enumerate(contexts):
        visible = history_rows(ds, i)
        spec.message_count = len(visible)
        spec.total_tokens = int(ds.tokens[visible].sum())
    return ds


def history_rows(ds: Dataset, context: int) -> np.ndarray:
    """Rows visible in a context's history (the snapshot rule of design.md).

    Deleted messages were deleted after every fork was made, so an inherited
    message stays visible in forks; own deleted messages are hidden.
    """
    out: list[int] = [r for r in ds.contexts[context].rows if not ds.deleted[r]]
    cap: int | None = None
    spec = ds.contexts[context]
    while spec.parent is not None:
        assert spec.fork_version is not None
        cap = spec.fork_version if cap is None else min(cap, spec.fork_version)
        spec = ds.contexts[spec.parent]
        out.extend(r for r in spec.rows if ds.version[r] <= cap)
    return np.array(sorted(out), dtype=np.int64)


def live_rows(ds: Dataset) -> np.ndarray:
    """Rows of scope ALL: not deleted, owned by a live context."""
    live_ctx = np.array([not c.deleted for c in ds.contexts])
    return np.flatnonzero(~ds.deleted & live_ctx[ds.context_of])


def tree_rows(ds: Dataset) -> np.ndarray:
    """Rows of scope TREE for the tree: owned by its live contexts, not deleted."""
    members = np.zeros(len(ds.contexts), dtype=bool)
    members[[i for i in ds.tree if not ds.contexts[i].deleted]] = True
    return np.flatnonzero(~ds.deleted & members[ds.context_of])


def similarities(ds: Dataset, queries: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row to every query: (rows, queries), one matrix product."""
    sims: np.ndarray = ds.vectors @ queries.T
    return sims


def exact_neighbours(sims: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k nearest candidates (the ground truth), given one query's
    similarities to every row (a column of `similarities`)."""
    s = sims[candidates]
    if len(candidates) <= k:
        return candidates[np.argsort(-s, kind="stable")]
    top = np.argpartition(-s, k)[:k]
    return candidates[top[np.argsort(-s[top], kind="stable")]]
