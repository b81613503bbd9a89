"""The committed schema.graphql is the code's schema, holds the contract, and is documented."""

from __future__ import annotations

import subprocess
import sys

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
)

from api.graphql.schema import build_schema
from tests.dbutil import REPO

CONTRACT_CHECK = REPO.parent / "shared" / "tools" / "contract_check.py"


def test_committed_schema_matches_code() -> None:
    committed = (REPO / "schema.graphql").read_text()
    assert committed == build_schema().as_str() + "\n", (
        "schema.graphql is stale: run `.venv/bin/ctxgraph export-schema` and commit it"
    )


@pytest.mark.skipif(not CONTRACT_CHECK.exists(), reason="../shared/tools is not beside this clone")
def test_schema_holds_the_public_contract() -> None:
    result = subprocess.run(
        [sys.executable, str(CONTRACT_CHECK), str(REPO / "schema.graphql")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 difference(s)" in result.stdout


def test_every_type_field_and_argument_is_described() -> None:
    schema = build_schema()._schema
    missing: list[str] = []
    for name, type_ in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Float", "Boolean", "ID"}:
            continue
        if not type_.description:
            missing.append(name)
        if isinstance(type_, (GraphQLObjectType, GraphQLInterfaceType)):
            for field_name, field in type_.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing += [
                    f"{name}.{field_name}({a})"
                    for a, arg in field.args.items()
                    if not arg.description
                ]
        elif isinstance(type_, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, field in type_.fields.items() if not field.description]
        elif isinstance(type_, GraphQLEnumType):
            pass  # values are described in the enum's description
    assert missing == []
