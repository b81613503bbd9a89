"""Schemathesis strategies for ctxgraph's custom scalars (JSON, DateTime), as GraphQL
literals: loaded by .ci/schemathesis.sh through SCHEMATHESIS_HOOKS."""

from __future__ import annotations

import graphql
import schemathesis
from hypothesis import strategies as st
from schemathesis.graphql import nodes

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
leaves = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(nodes.Int),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.text(max_size=20).map(nodes.String),
    st.booleans().map(nodes.Boolean),
    st.just(nodes.Null),
)
json_literals = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(nodes.List),
        st.lists(
            st.builds(
                lambda key, value: graphql.ObjectFieldNode(
                    name=graphql.NameNode(value=key), value=value
                ),
                names,
                inner,
            ),
            max_size=4,
            unique_by=lambda f: f.name.value,
        ).map(nodes.Object),
    ),
    max_leaves=12,
)

schemathesis.graphql.scalar("JSON", json_literals)
schemathesis.graphql.scalar(
    "DateTime",
    st.one_of(st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30)).map(nodes.String),
)


# Every error ctxgraph returns carries `extensions.code`. Domain refusals
# (NOT_FOUND, VERSION_CONFLICT, CONTEXT_DELETED, ...) answer a request that
# was well-formed but not applicable to the data it named: fuzzing hits them
# constantly (a context the stateful phase deleted, a stale expectedVersion)
# and they are correct answers. Schemathesis's own `not_a_server_error` only
# knows Apollo's client codes and so counts them as server errors. This check
# is the server-error rule for this API: a 5xx, an error without a code, or
# an error coded as the server's own failure.
SERVER_FAILURE_CODES = frozenset({"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"})


@schemathesis.check
def ctxgraph_server_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}")
    try:
        payload = response.json()
    except ValueError:
        raise AssertionError(f"HTTP {response.status_code} with a body that is not JSON") from None
    errors = payload.get("errors") if isinstance(payload, dict) else None
    for error in errors or ():
        code = (error.get("extensions") or {}).get("code")
        if code is None or code in SERVER_FAILURE_CODES:
            raise AssertionError(f"server error {code or '(no code)'}: {error.get('message')}")
