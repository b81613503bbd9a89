from tests.conftest import GraphQLClient
from tests.helpers import append, assistant, create_context, fork, history, user


async def test_create_append_fork(client: GraphQLClient) -> None:
    ctx = await create_context(client, messages=[user("a"), assistant("b")])
    assert ctx["latestVersion"] == 2
    appended = await append(client, ctx["id"], [user("c")])
    assert [m["version"] for m in appended] == [3]
    child = await fork(client, ctx["id"], 2)
    await append(client, child["id"], [user("d")])
    assert await history(client, child["id"]) == ["a", "b", "d"]
    assert await history(client, ctx["id"]) == ["a", "b", "c"]
