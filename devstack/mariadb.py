"""A throwaway MariaDB server in a folder, for tests and the demo: row-based binary log on, bound to
127.0.0.1 on a free port, with a least-privilege replication account for the binlog adapter and a
writer account for the simulated departmental application.

    db = LocalMariaDB(tmp_path / "mariadb")
    params = db.start()   # host, port, database, user/password (adapter), writer_user/writer_password
    ...
    db.stop()

The server's own configuration files are ignored (--no-defaults): everything it needs is given on
its command line, so a system-wide my.cnf cannot move its data, socket or port."""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pymysql

from backbone.errors import ServiceUnavailable
from backbone.net import free_port
from devstack.procs import Child, wait_started

MARIADBD = "/usr/sbin/mariadbd"


def _binary(name: str, fallback: str | None = None) -> str:
    found = shutil.which(name) or (fallback if fallback and Path(fallback).exists() else None)
    if found is None:
        raise ServiceUnavailable(f"{name} is not installed", hint="apt-get install mariadb-server")
    return found


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class LocalMariaDB:
    """One MariaDB server whose data, socket, binlog and log live in `folder`."""

    def __init__(
        self,
        folder: Path,
        database: str = "licensing",
        user: str = "backbone_cdc",
        writer_user: str = "backbone_app",
        start_timeout: float = 60.0,
    ) -> None:
        self.folder = Path(folder)
        self.datadir = self.folder / "data"
        self.socket = self.folder / "mysqld.sock"
        self.database = database
        self.user = user
        self.writer_user = writer_user
        self.start_timeout = start_timeout
        self.password = secrets.token_hex(12)
        self.writer_password = secrets.token_hex(12)
        self.port: int | None = None
        self.child: Child | None = None
        self.params: dict[str, Any] = {}

    def _admin_user(self) -> str:
        # mariadb-install-db gives the OS account running it a unix_socket login with all privileges.
        return "root" if os.geteuid() == 0 else getpass.getuser()

    def _install(self) -> None:
        if (self.datadir / "mysql").is_dir():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            _binary("mariadb-install-db", "/usr/bin/mariadb-install-db"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        else:
            argv.append(f"--auth-root-socket-user={getpass.getuser()}")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise ServiceUnavailable(f"mariadb-install-db into {self.datadir} failed:\n{tail}")

    def admin_sql(self, sql: str) -> str:
        """Run SQL as the server's administrator (unix socket login); returns the tab-separated output."""
        proc = subprocess.run(
            [
                _binary("mariadb", "/usr/bin/mariadb"),
                "--no-defaults",
                f"--socket={self.socket}",
                f"--user={self._admin_user()}",
                "--batch",
                "--skip-column-names",
                "-e",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise ServiceUnavailable(f"MariaDB in {self.folder}: {proc.stderr.strip()}")
        return proc.stdout

    def _ready(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.admin_sql("SELECT 1")
            return True
        except ServiceUnavailable:
            return False

    def start(self) -> dict[str, Any]:
        """Install (first time), start, create the accounts and database; returns connection parameters."""
        if self.child is not None and self.child.alive():
            return self.params
        self._install()
        self.port = free_port()
        argv = [
            _binary("mariadbd", MARIADBD),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.folder / 'mysqld.pid'}",
            "--skip-networking=0",
            "--skip-name-resolve",
            f"--log-bin={self.folder / 'binlog'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            # Column names in the binlog's table maps: rows decode correctly after an ALTER TABLE.
            "--binlog-row-metadata=FULL",
            "--server-id=1",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=100",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        self.child = Child("mariadb", argv, self.folder / "mariadb.log", stop_timeout=30).start()
        wait_started(self.child, self._ready, self.start_timeout, "MariaDB", stop=self.stop)
        db = f"`{self.database}`"
        self.admin_sql(
            f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4;"
            f"CREATE OR REPLACE USER {_quote(self.user)}@'127.0.0.1' IDENTIFIED BY {_quote(self.password)};"
            f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {_quote(self.user)}@'127.0.0.1';"
            f"GRANT SELECT ON {db}.* TO {_quote(self.user)}@'127.0.0.1';"
            f"CREATE OR REPLACE USER {_quote(self.writer_user)}@'127.0.0.1' IDENTIFIED BY "
            f"{_quote(self.writer_password)};"
            f"GRANT ALL PRIVILEGES ON {db}.* TO {_quote(self.writer_user)}@'127.0.0.1';"
        )
        self.params = {
            "host": "127.0.0.1",
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "password": self.password,
            "writer_user": self.writer_user,
            "writer_password": self.writer_password,
            "socket": str(self.socket),
        }
        # Bounded: the adapter's account answers over TCP before we hand the parameters out.
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                pymysql.connect(
                    host="127.0.0.1", port=self.port, user=self.user, password=self.password, connect_timeout=2
                ).close()
                break
            except pymysql.MySQLError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServiceUnavailable(f"MariaDB on port {self.port} refuses {self.user}: {exc}") from None
                time.sleep(0.2)
        return self.params

    def stop(self) -> None:
        """SIGTERM (MariaDB shuts down cleanly on it), bounded wait, then SIGKILL."""
        if self.child is not None:
            self.child.stop()
            self.child = None
