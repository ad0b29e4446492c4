"""A throw-away local PostgreSQL server for tests and the demo: initdb + postgres from the Debian
package's binaries (whichever major version is installed under /usr/lib/postgresql, the newest one with
wal2json preferred), listening on a free 127.0.0.1 port, its data, Unix socket and log in one folder,
configured for logical decoding (wal_level=logical, wal2json available when the matching package
postgresql-<major>-wal2json is installed).

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
import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from backbone.errors import ConfigError, ServiceUnavailable
from backbone.net import free_port
from devstack.procs import Child, wait_started

log = logging.getLogger(__name__)

INSTALL_ROOT = Path("/usr/lib/postgresql")  # Debian's layout: <major>/bin/postgres, <major>/lib/wal2json.so
SYSTEM_USER = "postgres"
INSTALL_HINT = "run `make setup` (it installs the Debian packages postgresql and postgresql-<major>-wal2json)"


def installed_majors(root: Path = INSTALL_ROOT) -> list[int]:
    """The PostgreSQL major versions whose server is installed under `root`, newest first."""
    if not root.is_dir():
        return []
    majors = [int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / "bin" / "postgres").is_file()]
    return sorted(majors, reverse=True)


def has_wal2json(bin_dir: Path) -> bool:
    """Whether the server in `bin_dir` has the wal2json output plugin (in its sibling lib/ folder)."""
    return (bin_dir.parent / "lib" / "wal2json.so").is_file()


def find_bin_dir(root: Path = INSTALL_ROOT) -> Path:
    """The server binaries to use: the newest installed major with wal2json, else the newest installed."""
    dirs = [root / str(major) / "bin" for major in installed_majors(root)]
    if not dirs:
        raise ConfigError(f"no PostgreSQL server found in {root}/<major>/bin", hint=INSTALL_HINT)
    return next((d for d in dirs if has_wal2json(d)), dirs[0])


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
        bin_dir: Path | None = None,
        start_timeout: float = 60.0,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.settings = dict(settings or {})  # extra server settings (-c name=value), e.g. wal_sender_timeout
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None  # None: find_bin_dir() on first use
        self._auto_bin = bin_dir is None
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.child: Child | None = None
        self._as_postgres = os.geteuid() == 0
        self.base = self.folder  # holds data/ and socket/; see _locate()

    # -- layout ----------------------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

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
                hint=INSTALL_HINT,
            ) from None
        marker = self.folder / "DATA_LOCATION"
        if marker.is_file():
            self.base = Path(marker.read_text().strip())
        elif not self._reachable_by_postgres(self.folder):
            digest = hashlib.sha256(str(self.folder).encode()).hexdigest()[:16]
            self.base = Path("/tmp") / f"backbone-pg-{digest}"
            # No marker: the folder is new. Data already there belonged to a folder of the same path
            # that was deleted (`make clean-data`); its password went with it, so start afresh.
            if self.base.exists():
                log.info("removing %s, left behind by a deleted %s", self.base, self.folder)
                shutil.rmtree(self.base)
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
    def _check_data_version(self) -> None:
        """With found (not given) binaries: a data folder made by another major version is served by that
        version's binaries when they are installed; else a clear error (the server would refuse the folder)."""
        marker = self.data_dir / "PG_VERSION"
        if not self._auto_bin or not marker.is_file():
            return
        data_major = marker.read_text().strip()
        if self.bin_dir.parent.name == data_major:
            return
        other = INSTALL_ROOT / data_major / "bin"
        if (other / "postgres").is_file():
            self._bin_dir = other
            return
        raise ConfigError(
            f"{self.data_dir} was made by PostgreSQL {data_major}, but the server in {self.bin_dir} is another version",
            hint=f"install postgresql-{data_major}, or remove {self.folder} to start afresh",
        )

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
            raise ConfigError(f"PostgreSQL binaries not found in {self.bin_dir}", hint=INSTALL_HINT)
        self._locate()
        self._check_data_version()
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
        wait_started(self.child, lambda: _connect_ok(dsn), self.start_timeout, "PostgreSQL")
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
