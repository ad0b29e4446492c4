"""A throw-away local PostgreSQL 15 server for tests and the demo: initdb + postgres from the Debian
package's binaries, listening on a free 127.0.0.1 port, its data, Unix socket and log in one folder,
configured for logical decoding (wal_level=logical, wal2json available when the package
postgresql-15-wal2json is installed).

PostgreSQL refuses to run as root. When this process is root, initdb and postgres run as the `postgres`
system user (created by the Debian package) through `setpriv` (or `runuser -u postgres --` where setpriv
is missing), and the data folder is
given to that user. When that user cannot reach the folder (a parent directory is private, as pytest's
/tmp/pytest-of-root is), the data lives in /tmp/backbone-pg-<digest of the folder path> instead and
`<folder>/DATA_LOCATION` names it; `remove()` deletes it.

The server runs as a devstack.procs.Child. `stop()` asks for a fast shutdown first (SIGINT: connected
clients are disconnected, a shutdown checkpoint is written) with a bounded wait, then does the Child's
stop (SIGTERM, bounded wait, SIGKILL). A bare Child.stop() also works but SIGTERM is PostgreSQL's "smart"
shutdown, which waits for connected clients to leave (up to the Child's stop_timeout, then SIGKILL)."""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from backbone.errors import ConfigError, ServiceUnavailable
from backbone.net import free_port
from devstack.procs import Child

BIN = Path("/usr/lib/postgresql/15/bin")
SYSTEM_USER = "postgres"


def _connect_ok(dsn: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(dsn, connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return False


class LocalPostgres:
    """`start()` returns a libpq DSN for the superuser `user` (LOGIN SUPERUSER REPLICATION, with a
    password, over TCP with scram-sha-256); `stop()` shuts the server down. Data stays between runs."""

    user = "backbone"

    def __init__(
        self,
        folder: Path,
        bin_dir: Path = BIN,
        start_timeout: float = 60.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.settings = dict(settings or {})  # extra server settings (-c name=value), e.g. wal_sender_timeout
        self.bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.child: Child | None = None
        self._as_postgres = os.geteuid() == 0
        self.base = self.folder  # holds data/ and socket/; see _locate()

    # -- layout ----------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "socket"

    @property
    def log_path(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def password(self) -> str:
        """The superuser's password (created on first start, kept in the folder, mode 0600)."""
        path = self.folder / "password"
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(18))
        return path.read_text().strip()

    def dsn(self, database: str = "postgres") -> str:
        if self.port is None:
            raise ServiceUnavailable("LocalPostgres is not started")
        return f"host={self.host} port={self.port} dbname={database} user={self.user} password={self.password}"

    def _run_as(self, argv: list[str]) -> list[str]:
        if not self._as_postgres:
            return argv
        # setpriv execs the command as the user; runuser stays as its parent and SIGKILLs it 2 s after
        # a SIGTERM ("Session terminated, killing shell..."), which could cut a shutdown checkpoint short.
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", "--", *argv]
        return ["runuser", "-u", SYSTEM_USER, "--", *argv]

    def _reachable_by_postgres(self, path: Path) -> bool:
        probe = subprocess.run(self._run_as(["test", "-x", str(path)]), capture_output=True)
        return probe.returncode == 0

    def _locate(self) -> None:
        """Where data/ and socket/ live: in the folder, unless the postgres user cannot reach it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.base = self.folder
        if not self._as_postgres:
            return
        try:
            pw = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise ConfigError(
                "running as root, but there is no `postgres` system user to run PostgreSQL as",
                hint="install the Debian package postgresql-15 (apt-get install postgresql-15)",
            ) from None
        marker = self.folder / "DATA_LOCATION"
        if marker.is_file():
            self.base = Path(marker.read_text().strip())
        elif not self._reachable_by_postgres(self.folder):
            digest = hashlib.sha256(str(self.folder).encode()).hexdigest()[:16]
            self.base = Path("/tmp") / f"backbone-pg-{digest}"
            marker.write_text(str(self.base) + "\n")
        self.base.mkdir(parents=True, exist_ok=True)
        for path in (self.base, self.base / "data", self.base / "socket"):
            path.mkdir(exist_ok=True)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        self.base.chmod(0o700)
        self.data_dir.chmod(0o700)
        if not self._reachable_by_postgres(self.data_dir):
            raise ConfigError(f"the postgres user cannot use {self.data_dir}", hint="check the parent folders' modes")

    # -- life cycle ------------------------------------------------------------------------------
    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").is_file():
            return
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            pw = pwd.getpwnam(SYSTEM_USER)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        try:
            proc = subprocess.run(
                self._run_as(
                    [
                        str(self.bin_dir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        self.user,
                        f"--pwfile={pwfile}",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise ServiceUnavailable(f"initdb in {self.data_dir} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")

    def start(self) -> str:
        """Start the server (initdb first when the folder is new); returns the superuser's DSN."""
        if self.child is not None and self.child.alive():
            return self.dsn()
        if not (self.bin_dir / "postgres").is_file():
            raise ConfigError(f"PostgreSQL binaries not found in {self.bin_dir}", hint="apt-get install postgresql-15")
        self._locate()
        self._initdb()
        self.port = free_port()
        self.child = Child(
            "postgres",
            self._run_as(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    f"listen_addresses={self.host}",
                    "-c",
                    "wal_level=logical",
                    "-c",
                    "max_replication_slots=16",
                    "-c",
                    "max_wal_senders=16",
                    "-c",
                    "max_connections=100",
                    "-c",
                    "shared_buffers=64MB",
                    "-c",
                    "TimeZone=UTC",
                    "-c",
                    "log_min_messages=warning",
                    *[arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")],
                ]
            ),
            self.log_path,
            stop_timeout=30,
        ).start()
        dsn = self.dsn()
        deadline = time.monotonic() + self.start_timeout
        while not _connect_ok(dsn):
            if not self.child.alive():
                raise ServiceUnavailable(
                    f"PostgreSQL exited during start-up; its log {self.log_path} ends with:\n{self.child.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.child.stop()
                raise ServiceUnavailable(
                    f"PostgreSQL did not accept connections within {self.start_timeout:.0f}s; "
                    f"see {self.log_path}:\n{self.child.log_tail()}"
                )
            time.sleep(0.2)
        return dsn

    def create_database(self, name: str) -> str:
        """Create a database (if missing); returns its DSN."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.dsn())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.dsn(name)

    def stop(self, fast_timeout: float = 15.0) -> int | None:
        """Fast shutdown (SIGINT: clients disconnected, shutdown checkpoint) with a bounded wait, then the
        Child's own stop (SIGTERM, bounded wait, SIGKILL) for whatever is left."""
        if self.child is None:
            return None
        if self.child.alive():
            self.child.signal(signal.SIGINT)
            try:
                self.child.process.wait(fast_timeout)
            except subprocess.TimeoutExpired:
                pass
        code = self.child.stop()
        self.child = None
        return code

    def remove(self) -> None:
        """Stop and delete the data (the folder's and, if used, the one under /tmp)."""
        self.stop()
        if self.base != self.folder:
            shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.folder, ignore_errors=True)
