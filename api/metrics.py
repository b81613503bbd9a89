"""Prometheus metrics at /metrics (prometheus-client, one registry per app).

- ctxgraph_http_requests_total{route,method,status} and
  ctxgraph_http_request_duration_seconds{route}: every HTTP request (and
  WebSocket connection), routes folded to a fixed set.
- ctxgraph_graphql_operations_total{type,name,outcome} and
  ctxgraph_graphql_operation_duration_seconds{type,name}: by GraphQL operation;
  outcome is `ok` or the first error code. Operation names come from clients,
  so at most MAX_OPERATION_NAMES distinct names get their own label; the rest
  are counted as `other`.
- ctxgraph_plan_answers_total: operations answered by their plan;
  ctxgraph_plan_fallbacks_total{reason}: operations with a plan that graphql-core
  answered instead (api/graphql/plans.py says when).
- ctxgraph_db_pool_*: the connection pool of this process, read at scrape time;
  ctxgraph_db_queue_waiting / ctxgraph_db_connections_in_use (the line in front of it,
  api/store/gate.py), ctxgraph_db_queue_wait_seconds and ctxgraph_db_queue_refused_total.
- ctxgraph_http_connections*, ctxgraph_http_requests_cut_total{reason}: this process's
  connections, its cap, and what the limits of api/http_protocol.py refused.
- process_*: memory, CPU and file descriptors of this process.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import Scope

MAX_OPERATION_NAMES = 200
ROUTES = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")


class PoolCollector(Collector):
    """Pool gauges of the engine behind `app.state.connector`, read when scraped."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        engine = getattr(getattr(self.state, "connector", None), "engine", None)
        pool = getattr(engine, "pool", None)
        if pool is None or not hasattr(pool, "checkedout"):
            return
        gate = getattr(getattr(self.state, "connector", None), "gate", None)
        if gate is not None:
            yield GaugeMetricFamily(
                "ctxgraph_db_queue_waiting",
                "Requests waiting in line for a database connection now.",
                value=float(gate.waiting),
            )
            yield GaugeMetricFamily(
                "ctxgraph_db_connections_in_use",
                "Database connections held by requests now (at most pool_size).",
                value=float(gate.in_use),
            )
        for name, doc, value in (
            ("ctxgraph_db_pool_size", "Connections the pool keeps open.", pool.size()),
            ("ctxgraph_db_pool_checked_out", "Connections in use by requests.", pool.checkedout()),
            ("ctxgraph_db_pool_checked_in", "Idle connections in the pool.", pool.checkedin()),
            (
                "ctxgraph_db_pool_overflow",
                "Connections open beyond pool_size.",
                max(0, pool.overflow()),
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=float(value))


class ConnectionCollector(Collector):
    """The protocol's connection counts (api/http_protocol.py), read when scraped."""

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        from api.http_protocol import COUNTS

        yield GaugeMetricFamily(
            "ctxgraph_http_connections", "Open connections of this process.", value=COUNTS.open
        )
        yield GaugeMetricFamily(
            "ctxgraph_http_connections_max",
            "Connections this process accepts at once (CTXGRAPH_MAX_CONNECTIONS).",
            value=COUNTS.max_connections,
        )
        yield CounterMetricFamily(
            "ctxgraph_http_connections_refused",
            "Connections answered 503 because the process held its maximum.",
            value=COUNTS.refused,
        )
        cut = CounterMetricFamily(
            "ctxgraph_http_requests_cut",
            "Requests refused by their head's size (431) or cut by a timeout (408), by reason.",
            labels=["reason"],
        )
        for reason in ("head_too_large", "too_many_headers", "head_timeout", "body_timeout"):
            cut.add_metric([reason], getattr(COUNTS, reason))
        yield cut


class Metrics:
    def __init__(self, state: Any) -> None:
        # The *_created series only double the output (process-wide switch).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ctxgraph_http_requests",
            "HTTP requests and WebSocket connections by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "ctxgraph_http_request_duration_seconds",
            "Time from request to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ctxgraph_http_requests_in_flight",
            "Requests being served now.",
            registry=self.registry,
        )
        self.operations = Counter(
            "ctxgraph_graphql_operations",
            "GraphQL operations by type, name and outcome (ok or the first error code).",
            ["type", "name", "outcome"],
            registry=self.registry,
        )
        self.operation_latency = Histogram(
            "ctxgraph_graphql_operation_duration_seconds",
            "Time to run one GraphQL query or mutation, by type and name.",
            ["type", "name"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "ctxgraph_db_queue_wait_seconds",
            "Time requests waited in line for a database connection (those that waited).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_refused = Counter(
            "ctxgraph_db_queue_refused",
            "Uses of the database refused with 503 because the line was full or too slow.",
            ["reason"],
            registry=self.registry,
        )
        self.plan_answers = Counter(
            "ctxgraph_plan_answers",
            "Queries and mutations answered by their plan, without graphql-core's field walk "
            "(api/graphql/plans.py).",
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "ctxgraph_plan_fallbacks",
            "Operations with a plan that graphql-core answered instead, by reason (arguments: "
            "the services refused them, graphql-core reports it; shape: no plan for these "
            "values of the @include/@skip variables).",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(PoolCollector(state))
        self.registry.register(ConnectionCollector())
        ProcessCollector(registry=self.registry)
        self._names: set[str] = set()
        self._lock = threading.Lock()
        # labelled children by (metric, labels): `labels()` validates and locks on
        # every call (~1.5% of a planned read's CPU); the label sets are bounded
        # (routes, methods, statuses, MAX_OPERATION_NAMES names, error codes)
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _name_label(self, name: str | None) -> str:
        if name is None:
            return "anonymous"
        if name in self._names:  # most requests: a name already labelled, no lock needed
            return name
        if not _NAME.fullmatch(name):
            return "other"
        with self._lock:
            if name in self._names:
                return name
            if len(self._names) < MAX_OPERATION_NAMES:
                self._names.add(name)
                return name
        return "other"

    def observe_request(self, scope: Scope, status: int, duration: float) -> None:
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        method = "WS" if scope["type"] == "websocket" else str(scope.get("method", "other"))
        if method not in ("GET", "POST", "OPTIONS", "HEAD", "WS"):
            method = "other"
        self._child(self.requests, route, method, str(status)).inc()
        self._child(self.request_latency, route).observe(duration)

    def observe_operation(
        self, operation_type: str, name: str | None, codes: Sequence[str], duration: float
    ) -> None:
        label = self._name_label(name)
        outcome = codes[0] if codes else "ok"
        if not _NAME.fullmatch(outcome):
            outcome = "other"
        self._child(self.operations, operation_type, label, outcome).inc()
        if operation_type in ("query", "mutation"):
            self._child(self.operation_latency, operation_type, label).observe(duration)

    def observe_queue(self, waited: float | None, refused: str | None) -> None:
        """The gate's observer (api/store/gate.py)."""
        if waited is not None:
            self.queue_wait.observe(waited)
        if refused is not None:
            self._child(self.queue_refused, refused).inc()

    def observe_plan_answer(self) -> None:
        self.plan_answers.inc()

    def observe_fallback(self, reason: str) -> None:
        self._child(self.fallbacks, reason).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
