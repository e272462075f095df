"""A PostgreSQL server of the test's own, that the test may stop and start again.

The machine's shared server (127.0.0.1:5432) is never stopped by a test: a fault test runs its
own, made with `initdb` in a temporary folder and started as a child process on a free loopback
port (as the `postgres` user when the test runs as root, which PostgreSQL refuses to run as).
The child gets the parent-death signal, so a killed test run leaves no server behind; the data
folders of killed runs are removed by the next run (`remove_leftovers`).

It runs with `fsync=off`: a server process that dies loses nothing with it (the operating
system still has every write); only a crash of the machine could, and then the test is lost
anyway. `synchronous_commit` stays on, so a commit the client saw is in the WAL.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cli.processes import die_with_parent
from tests.support.stack import free_port

PREFIX = "bofault-pg-"
SETTINGS = [
    "listen_addresses=127.0.0.1",
    "unix_socket_directories=",
    "fsync=off",
    "full_page_writes=off",
    "max_connections=200",
    # Each line stamped by the server with its clock (Unix time) and the session's pid: what
    # a test reads to learn when and why PostgreSQL ended a session, whatever its own loop did.
    "log_line_prefix=%n [%p] ",
]


def binaries() -> Path | None:
    """The folder with `initdb` and `postgres`: Debian's layout, else `pg_config --bindir`."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists() and Path(folder, "postgres").exists():
            return Path(folder)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)  # noqa: S603
        folder = done.stdout.strip()
        if folder and Path(folder, "initdb").exists() and Path(folder, "postgres").exists():
            return Path(folder)
    return None


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def unavailable() -> str | None:
    if binaries() is None:
        return "the PostgreSQL server programs (initdb, postgres) are not installed"
    if _server_user() is None:
        return "running as root, and there is no `postgres` user to run PostgreSQL as"
    return None


def remove_leftovers() -> None:
    """Data folders of earlier runs whose process has ended (their server died with it)."""
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}*")):
        pid = Path(folder).name.removeprefix(PREFIX).split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class PrivatePostgres:
    folder: Path
    port: int
    bindir: Path
    user: pwd.struct_passwd
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb in a new temporary folder (about a second); not started yet."""
        bindir, user = binaries(), _server_user()
        assert bindir is not None and user is not None, unavailable()
        remove_leftovers()
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        os.chown(folder, user.pw_uid, user.pw_gid)
        server = cls(folder, free_port(), bindir, user)
        initdb = [str(bindir / "initdb"), "-D", str(server.data), "-U", "postgres"]
        initdb += ["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"]
        subprocess.run(  # noqa: S603 - our own argv
            initdb, user=user.pw_uid, group=user.pw_gid, capture_output=True, check=True
        )
        return server

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def fatal_of(self, pid: int) -> tuple[float, str] | None:
        """When (Unix time) and why the server ended session `pid`, from its log."""
        pattern = re.compile(rf"^(\d+\.\d+) \[{pid}\] FATAL:\s+(.*)$", re.MULTILINE)
        found = pattern.search(self.log.read_text(errors="replace"))
        return None if found is None else (float(found[1]), found[2])

    def url(self, database: str = "postgres", *, host: str = "127.0.0.1", port: int = 0) -> str:
        return f"postgresql://postgres@{host}:{port or self.port}/{database}"

    def start(self, within: float = 30.0, *, flags: Sequence[str] = ()) -> None:
        """Start the server with this module's settings, then `flags` (more `-c name=value`)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for setting in SETTINGS:
            command += ["-c", setting]
        command += flags
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                command,
                user=self.user.pw_uid,
                group=self.user.pw_gid,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        deadline = time.monotonic() + within
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"PostgreSQL did not start:\n{self.log.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.1)

    def stop(self, *, immediate: bool = False, within: float = 30.0) -> None:
        """A fast shutdown (SIGINT: sessions ended, transactions rolled back), or an immediate
        one (SIGQUIT: the server just stops, as in a crash, and recovers from its WAL on the
        next start)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
