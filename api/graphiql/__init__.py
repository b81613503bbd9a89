"""GraphiQL served by ctxgraph itself: the page and its npm assets.

`GET /graphql` with `Accept: text/html` answers the GraphiQL page. Its
scripts and styles come from this server (`/graphiql/...`) once
`graphiql/node_modules` has been installed from the lockfile, which
`ctxgraph serve` does by itself when Node.js is present; otherwise they come
from a CDN with subresource integrity, and the page says how to get the
self-hosted one.
"""

from api.graphiql.assets import (
    VENDOR_ASSETS,
    AssetState,
    GraphiQLAssets,
    VendorAsset,
    default_assets,
)
from api.graphiql.serve import ASSET_PATH, GraphiQLPage, mount_graphiql_assets

__all__ = [
    "ASSET_PATH",
    "VENDOR_ASSETS",
    "AssetState",
    "GraphiQLAssets",
    "GraphiQLPage",
    "VendorAsset",
    "default_assets",
    "mount_graphiql_assets",
]
