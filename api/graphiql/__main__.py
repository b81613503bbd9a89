"""`python -m api.graphiql [build|status]`: prepare or inspect the self-hosted GraphiQL files.

`ctxgraph serve` builds them by itself; this is for doing it ahead of time
(an image build, a CI step) and for seeing why the page uses the CDN.
"""

from __future__ import annotations

import argparse
import logging
import sys

from api.graphiql.assets import AssetState, GraphiQLAssets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.graphiql", description=__doc__)
    parser.add_argument("command", choices=["build", "status"], nargs="?", default="build")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    assets = GraphiQLAssets()
    state = assets.build() if args.command == "build" else assets.state
    detail = f": {assets.reason}" if assets.reason else ""
    sys.stderr.write(f"GraphiQL assets in {assets.dist_dir}: {state.value}{detail}\n")
    return 0 if state is AssetState.READY else 1


if __name__ == "__main__":
    sys.exit(main())
