"""Root subscription fields."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry

from api.errors import NotImplementedYet
from api.graphql.context import Info
from api.graphql.types import Message


@strawberry.type(description="Live updates.")
class Subscription:
    @strawberry.subscription(
        description="Every message appended to this context from now on, in version order. With "
        "afterVersion, first replays the history after that version, so a client that "
        "reconnects misses nothing."
    )
    async def message_appended(
        self,
        info: Info,
        context_id: strawberry.ID,
        after_version: Annotated[
            int | None,
            strawberry.argument(description="Replay the history after this version first."),
        ] = None,
    ) -> AsyncGenerator[Message, None]:
        raise NotImplementedYet("Subscriptions are not available in this version yet.")
        yield  # pragma: no cover - makes this an async generator
