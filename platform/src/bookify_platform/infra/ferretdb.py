"""FerretDB v1 (MongoDB wire protocol, SQLite backend) built from infra/ferretdb/."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bookify_platform.infra import paths
from bookify_platform.infra.errors import StartupError
from bookify_platform.infra.fsutil import tail
from bookify_platform.infra.gobuild import Progress, SourcePatch, build_go_program, no_progress
from bookify_platform.infra.process import spawn, wait_for_log_line
from bookify_platform.infra.ready import client_error

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
READY_LINE = r"^(mongodb://\S+)\s*$"

# FerretDB v1's SQLite backend looks documents up by _id with a full table scan, which makes
# every view read and every consumer write slower with each document ever stored (a
# pending-booking poll misses, so it reads the whole table); and one `update` command of many
# statements holds a connection for each statement that matched until it ends, so a command
# of ~100 matching statements waits for good for a connection of its own database's pool (100)
# and every other read or write of that database then waits behind it. Three build-time
# fixes, each checked by tests/integration/test_mongo_server.py:
UPDATE_STATEMENT = 'result, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n'
SQLITE_PATCHES = (
    SourcePatch(
        FERRETDB_MODULE,
        "internal/backends/sqlite/metadata/metadata.go",
        old="IDColumn = DefaultColumn + \"->'$._id'\"",
        new="IDColumn = DefaultColumn + \"->'_id'\"",
        # SQLite matches index expressions by their text: the unique _id index is on
        # `_ferretdb_sjson->"_id"`, so filtering on `->'$._id'` (same value) never uses it.
        why="filter on the expression the _id index is built on",
    ),
    SourcePatch(
        FERRETDB_MODULE,
        "internal/backends/sqlite/collection.go",
        old="if params.Filter.Len() == 1 {",
        new="if params.Filter.Len() > 0 {",  # then Get("_id") decides, as before
        # Every caller filters the rows again in full (FilterIterator / FilterDocument), so
        # narrowing by _id is safe for {_id, <guard>} filters too, not only for {_id} alone.
        why="push the _id equality down even when the filter has other fields",
        count=2,  # Query and Explain
    ),
    SourcePatch(
        FERRETDB_MODULE,
        "internal/handler/msg_update.go",
        old=UPDATE_STATEMENT,
        new=UPDATE_STATEMENT + "\t\tcloser.Close()\n",
        # The statement's query rows were closed by a `defer` inside the loop over statements,
        # so only when the whole command returned; closing twice is harmless.
        why="close each update statement's query when the statement is done",
    ),
)


def build_ferretdb(
    *, root: Path | None = None, cache: Path | None = None, progress: Progress = no_progress
) -> Path:
    """The wrapper binary, built on first use into <cache>/ferretdb/<version>/ferretdb."""
    return build_go_program(
        "ferretdb",
        pinned_module=FERRETDB_MODULE,
        # The pgx backend is never used here; leaving it out saves build time.
        tags=("ferretdb_no_postgresql",),
        patches=SQLITE_PATCHES,
        expected="~1-2 min",
        root=root,
        cache=cache,
        progress=progress,
    )


class LocalFerretDB:
    """One FerretDB whose files live in <run dir>/ferretdb: data/ (SQLite), ferretdb.log."""

    name = "mongo"

    def __init__(
        self,
        run_dir: Path,
        *,
        port: int,
        root: Path | None = None,
        cache: Path | None = None,
        progress: Progress = no_progress,
    ) -> None:
        self.root = root or paths.repo_root()
        self.cache = cache or paths.cache_dir(self.root)
        self.home = run_dir / "ferretdb"
        self.port = port
        self.progress = progress
        self.data_dir = self.home / "data"
        self.log_path = self.home / "ferretdb.log"
        self._binary: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    @property
    def ports(self) -> dict[str, int]:
        return {"mongo": self.port}

    def port_options(self) -> list[tuple[int, str, str]]:
        return [(self.port, "--mongo-port", "BOOKIFY_MONGO_PORT")]

    def install(self) -> None:
        self._binary = build_ferretdb(root=self.root, cache=self.cache, progress=self.progress)

    def spawn(self, *, attached: bool) -> subprocess.Popen[bytes]:
        if self._binary is None:
            self.install()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return spawn(
            [str(self._binary), "-listen", f"127.0.0.1:{self.port}", "-dir", str(self.data_dir)],
            log_path=self.log_path,
            attached=attached,
            cwd=self.home,
        )

    def wait_ready(self, proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
        """Ready = the URI line on stdout AND a successful `ping` through PyMongo."""
        deadline = time.monotonic() + timeout
        wait_for_log_line(self.log_path, READY_LINE, proc=proc, what="FerretDB", timeout=timeout)
        last_error = client_error("mongo", self.endpoint, max(1.0, deadline - time.monotonic()))
        if last_error is None:
            return
        raise StartupError(
            f"FerretDB printed its URI but {self.endpoint} does not answer ping: {last_error}. "
            f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
        )
