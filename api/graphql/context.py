"""The per-request GraphQL context: database access, limits and loaders."""

from __future__ import annotations

import functools
import secrets
from typing import Any

from strawberry.types import Info as StrawberryInfo

from api.db import Connector
from api.graphql.loaders import Loaders
from api.realtime import Realtime
from api.store.inputs import Limits


class RequestContext:
    """What every resolver can reach through `info.context`.

    `db.read()` gives a short-lived connection (one per loader batch, so sibling
    resolvers never share one); `db.transaction()` is the one transaction of a
    mutation, committed when the resolver returns and rolled back on any error.
    """

    def __init__(
        self,
        db: Connector,
        limits: Limits,
        request_id: str | None = None,
        realtime: Realtime | None = None,
        request: Any = None,
    ) -> None:
        self.db = db
        self.limits = limits
        self.request_id = request_id or secrets.token_hex(8)
        # For a WebSocket this context lives as long as the connection.
        self.realtime = realtime
        self.subscriptions = 0
        """Subscriptions running on this connection (capped by the realtime settings)."""
        self.request = request
        """The HTTP request or WebSocket (the WebSocket check reads the app's keys)."""
        self.connection_params: Any = None
        """A WebSocket's connection_init payload, set by Strawberry."""
        self.identity: Any = None
        """Who the request or connection acts for, once authenticated
        (api/security/auth.py, `Authenticator`)."""

    @functools.cached_property
    def loaders(self) -> Loaders:
        """The request's DataLoaders, made when a resolver first asks: a planned read
        (api/graphql/plans.py) never does, and a dozen loaders cost ~2% of its CPU."""
        return Loaders(self.db)


Info = StrawberryInfo[RequestContext, None]
