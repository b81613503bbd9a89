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
