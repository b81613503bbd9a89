"""The GraphiQL files: which ones, where they come from, and preparing them.

The page loads five files from npm packages pinned by graphiql/package-lock.json
(`VENDOR_ASSETS`). Self-hosted, they are copied out of graphiql/node_modules
(after `npm ci`) into graphiql/dist/ and served by this server; without Node.js
the page loads the very same files from a CDN, checked by subresource
integrity. The sha384 digests below are those of the files inside the npm
tarballs, so one list serves both modes, and a build refuses a file whose
digest differs.

Preparing runs at most once per process, in a background thread (`start`), and
never raises: on any failure the state says why and the page falls back to the
CDN. A file lock keeps several worker processes from running `npm ci` at once.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

log = logging.getLogger("ctxgraph.graphiql")

CDN_BASE = "https://cdn.jsdelivr.net/npm/"
"""Serves each file of an npm tarball byte for byte at `<package>@<version>/<file>`."""


@dataclass(frozen=True)
class VendorAsset:
    """One file of a pinned npm package."""

    package: str
    version: str
    file: str
    integrity: str
    kind: Literal["script", "style"]

    @property
    def key(self) -> str:
        """`package@version/file`: the path under dist/ and under the CDN base."""
        return f"{self.package}@{self.version}/{self.file}"

    @property
    def cdn_url(self) -> str:
        return CDN_BASE + self.key


# In load order: GraphiQL's UMD build expects the React globals; graphql-ws is
# the graphql-transport-ws client for subscriptions.
VENDOR_ASSETS: tuple[VendorAsset, ...] = (
    VendorAsset(
        "react",
        "18.3.1",
        "umd/react.production.min.js",
        "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
        "script",
    ),
    VendorAsset(
        "react-dom",
        "18.3.1",
        "umd/react-dom.production.min.js",
        "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
        "script",
    ),
    VendorAsset(
        "graphiql",
        "4.1.2",
        "graphiql.min.js",
        "sha384-9XdHu7ajgGJziD4J1zNBKQ842Q/+zZfDv+ib1eMhZWBH6hPAs806x+Jbcf0yNO6B",
        "script",
    ),
    VendorAsset(
        "graphiql",
        "4.1.2",
        "graphiql.min.css",
        "sha384-1el1QShFBnnXTx9x/Cprg82hZWKt0ry29OAYIXt05swbi0KcZDFoj0CWguMpopJr",
        "style",
    ),
    VendorAsset(
        "graphql-ws",
        "6.4.2",
        "umd/graphql-ws.min.js",
        "sha384-mxvR4Mzbsb6QVx/9xI2gtQikQA6m8zMDBFnu3l//4/ROsWt7y2sUGWd+/tYQqDm7",
        "script",
    ),
)

NPM_PROJECT_DIR = Path(__file__).resolve().parents[2] / "graphiql"
"""graphiql/ at the top of the repository: package.json and package-lock.json."""

DEFAULT_BUILD_TIMEOUT = 300.0


def sri_digest(data: bytes) -> str:
    """The subresource-integrity value (`sha384-<base64>`) of `data`."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def file_matches(path: Path, asset: VendorAsset) -> bool:
    try:
        return sri_digest(path.read_bytes()) == asset.integrity
    except OSError:
        return False


class AssetState(Enum):
    NOT_STARTED = "not started"
    BUILDING = "building"
    READY = "ready"
    UNAVAILABLE = "unavailable"


class BuildError(RuntimeError):
    """Preparing the self-hosted files failed; the message is one line for the log."""


@dataclass
class GraphiQLAssets:
    """Where the self-hosted files are, and the one build of this process.

    `project_dir` holds package.json and package-lock.json; `npm ci` fills its
    node_modules/, and the pinned files are copied to `project_dir/dist/`.
    `npm` is the npm command (a name looked up on PATH, or a path; None: `npm`,
    and Node.js must be on PATH too).
    """

    project_dir: Path = NPM_PROJECT_DIR
    npm: str | None = None
    build_timeout: float = DEFAULT_BUILD_TIMEOUT
    assets: Sequence[VendorAsset] = VENDOR_ASSETS

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._future: concurrent.futures.Future[None] | None = None
        # None until first asked: checking dist/ reads the files.
        self._state: AssetState | None = None
        self.reason = ""

    @property
    def dist_dir(self) -> Path:
        return self.project_dir / "dist"

    @property
    def state(self) -> AssetState:
        with self._lock:
            return self._checked_state()

    def _checked_state(self) -> AssetState:
        if self._state is None:
            complete = self._dist_is_complete()
            self._state = AssetState.READY if complete else AssetState.NOT_STARTED
        return self._state

    @property
    def ready(self) -> bool:
        return self.state is AssetState.READY

    def _dist_is_complete(self) -> bool:
        return all(file_matches(self.dist_dir / a.key, a) for a in self.assets)

    # --- the build --------------------------------------------------------

    def start(self) -> concurrent.futures.Future[None]:
        """Start preparing the files in a background thread (once); return its future."""
        with self._lock:
            if self._future is None:
                self._future = concurrent.futures.Future()
                if self._checked_state() is AssetState.READY:
                    self._future.set_result(None)
                else:
                    self._state = AssetState.BUILDING
                    threading.Thread(
                        target=self._run, name="ctxgraph-graphiql-build", daemon=True
                    ).start()
            return self._future

    def build(self) -> AssetState:
        """Prepare the files and wait for the outcome (the command-line path); the final state."""
        self.start().result()
        return self.state

    def _run(self) -> None:
        assert self._future is not None
        started = time.monotonic()
        try:
            ran_npm = self._build()
        except Exception as exc:  # never let the IDE's assets take the API down
            self.reason = str(exc) if isinstance(exc, BuildError) else repr(exc)
            self._state = AssetState.UNAVAILABLE
            log.warning(
                "GraphiQL: self-hosted assets unavailable (%s); the page loads them from %s",
                self.reason,
                CDN_BASE,
            )
        else:
            self._state = AssetState.READY
            if ran_npm:
                log.info(
                    "GraphiQL: self-hosted assets ready in %s (%.1f s)",
                    self.dist_dir,
                    time.monotonic() - started,
                )
        finally:
            self._future.set_result(None)

    def _build(self) -> bool:
        """Fill dist/; True when npm had to run. Raises BuildError with the reason."""
        if not (self.project_dir / "package-lock.json").is_file():
            raise BuildError(f"no package-lock.json in {self.project_dir}")
        with self._file_lock():
            # Another process may have finished while this one waited.
            if self._dist_is_complete():
                return False
            node_modules = self.project_dir / "node_modules"
            ran_npm = False
            if not all(file_matches(node_modules / a.package / a.file, a) for a in self.assets):
                self._npm_ci()
                ran_npm = True
            self._copy_to_dist(node_modules)
            return ran_npm

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        try:
            handle = (self.project_dir / ".build.lock").open("a")
        except OSError as exc:
            raise BuildError(f"{self.project_dir} is not writable: {exc}") from exc
        with handle:
            # Bounded by the other process's own npm timeout.
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _npm_ci(self) -> None:
        npm = shutil.which(self.npm or "npm")
        if npm is None or (self.npm is None and shutil.which("node") is None):
            raise BuildError("Node.js/npm not found on PATH")
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        env = {**os.environ, "npm_config_update_notifier": "false"}
        # A session of its own, so a timeout ends npm's children too.
        process = subprocess.Popen(
            command,
            cwd=self.project_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=self.build_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise BuildError(f"`npm ci` took longer than {self.build_timeout:g} s") from None
        if process.returncode != 0:
            lines = output.decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else "no output"
            raise BuildError(f"`npm ci` exited with {process.returncode}: {last}")

    def _copy_to_dist(self, node_modules: Path) -> None:
        staging = self.project_dir / f"dist.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        for asset in self.assets:
            source = node_modules / asset.package / asset.file
            if not file_matches(source, asset):
                raise BuildError(
                    f"{source} does not match its pinned digest (package-lock.json and "
                    "api/graphiql/assets.py disagree)"
                )
            target = staging / asset.key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        shutil.rmtree(self.dist_dir, ignore_errors=True)
        staging.rename(self.dist_dir)


@functools.cache
def default_assets() -> GraphiQLAssets:
    """The process's one GraphiQLAssets for graphiql/ (every app shares its build)."""
    return GraphiQLAssets()
