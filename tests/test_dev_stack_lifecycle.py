"""`backorders dev` dies whole and owns its state folder (README: "Failure modes").

Each test runs the console script as a user does: a subprocess with its own state folder and
free ports. What remains after it ends is read from the kernel, not from the stack's own
record: the processes whose parent was the stack (`/proc/*/stat`), the sockets listening on
its ports (`/proc/net/tcp`), and the processes holding its Temporal database open
(`/proc/*/fd`). Linux only, like the parent-death signal they check.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.dev import PortInUseError, check_ports
from cli.processes import ProcessIdentity, identify
from cli.stack import TemporalDevServer
from cli.state_folder import StackRecord
from config.settings import Settings
from tests.support.stack import free_port

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's"
)

SCRIPT = Path(sys.executable).parent / "backorders"
PORT_SETTINGS = ("API_PORT", "TEMPORAL_PORT", "UI_PORT", "SIMULATOR_PORT")
GONE_WITHIN = 15.0
"""From the stack's end to nothing of it left: the dev server stops in about 3 s on SIGTERM."""


# ---- the kernel's view --------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def running(pid: int, started: str) -> bool:
    """The process that had `pid` and start time `started` still runs (a zombie does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X") and fields[19] == started


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def listening(ports: set[int]) -> set[int]:
    """Those of `ports` on which some socket listens."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and port in ports:
                found.add(port)
    return found


def holding(path: Path) -> list[int]:
    """Pids with `path` open."""
    target = str(path.resolve())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") == target:
                    found.append(int(entry))
                    break
            except OSError:
                continue
    return found


def wait_for(check: Callable[[], Any], what: str, within: float) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} within {within} s; last: {last!r}")


# ---- a stack run as a user runs it -------------------------------------------------------------


@dataclass
class StackEnv:
    """The environment of one state folder's stack: its folder and its free ports."""

    folder: Path
    variables: dict[str, str]

    @classmethod
    def fresh(cls, folder: Path) -> StackEnv:
        variables = {k: v for k, v in os.environ.items() if not k.startswith("BACKORDERS_")}
        variables["BACKORDERS_STATE_DIR"] = str(folder)
        variables["BACKORDERS_SDK_METRICS_ADDRESS"] = ""
        for name in PORT_SETTINGS:
            variables[f"BACKORDERS_{name}"] = str(free_port())
        return cls(folder, variables)

    def with_ports(self, **ports: int) -> StackEnv:
        variables = dict(self.variables)
        for name, port in ports.items():
            variables[f"BACKORDERS_{name.upper()}"] = str(port)
        return StackEnv(self.folder, variables)

    def port(self, name: str) -> int:
        return int(self.variables[f"BACKORDERS_{name}"])

    @property
    def ports(self) -> set[int]:
        return {self.port(name) for name in PORT_SETTINGS}

    @property
    def settings(self) -> Settings:
        return Settings(
            state_dir=self.folder,
            temporal_port=self.port("TEMPORAL_PORT"),
            ui_port=self.port("UI_PORT"),
            api_port=self.port("API_PORT"),
            simulator_port=self.port("SIMULATOR_PORT"),
            sdk_metrics_address="",
        )

    @property
    def temporal_db(self) -> Path:
        return self.folder / "temporal.db"


@dataclass
class DevStack:
    """One `backorders dev`, its output in `log`; on a terminal of its own if asked."""

    env: StackEnv
    process: subprocess.Popen[bytes]
    log: Path
    terminal: int | None = None
    """The pseudo-terminal's master side: closing it hangs the terminal up."""
    _drain: threading.Thread | None = None
    _closing: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def start(cls, env: StackEnv, log: Path, *, terminal: bool = False) -> DevStack:
        if not terminal:
            with log.open("wb") as output:
                process = subprocess.Popen(  # noqa: S603 - our own console script
                    [str(SCRIPT), "dev"], env=env.variables, stdout=output, stderr=subprocess.STDOUT
                )
            return cls(env, process, log)
        master, slave = os.openpty()

        def take_the_terminal() -> None:
            # A session leader opening no tty has none: make the pty its controlling terminal,
            # as a login shell's is, so that closing it sends SIGHUP.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        process = subprocess.Popen(  # noqa: S603 - our own console script
            [str(SCRIPT), "dev"],
            env=env.variables,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=take_the_terminal,
        )
        os.close(slave)
        stack = cls(env, process, log, terminal=master)
        stack._drain = threading.Thread(target=stack._copy_terminal, daemon=True)
        stack._drain.start()
        return stack

    def _copy_terminal(self) -> None:
        """What the terminal shows, into the log (a full pty would block the stack's writes)."""
        import select

        assert self.terminal is not None
        with self.log.open("wb") as output:
            while not self._closing.is_set():
                ready, _, _ = select.select([self.terminal], [], [], 0.1)
                if ready:
                    try:
                        output.write(os.read(self.terminal, 65536))
                    except OSError:
                        return

    def close_terminal(self) -> None:
        assert self.terminal is not None and self._drain is not None
        self._closing.set()
        self._drain.join()
        os.close(self.terminal)
        self.terminal = None

    def wait_healthy(self, within: float = 60.0) -> None:
        url = f"http://127.0.0.1:{self.env.port('API_PORT')}/healthz"

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the stack exited with {self.process.returncode}:\n{self}")
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, f"the stack healthy at {url}", within)

    def temporal_child(self) -> ProcessIdentity:
        """The Temporal dev server, found as the stack's only child process."""
        children = children_of(self.process.pid)
        assert len(children) == 1, f"expected the Temporal dev server alone, found {children}"
        identity = identify(children[0])
        assert identity is not None and " server start-dev " in identity.command, identity
        return identity

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __str__(self) -> str:
        return f"---- {self.log.name}\n{self.output()}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.terminal is not None:
            self.close_terminal()
        return self.process.returncode


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[Callable[..., DevStack]]:
    """Starts `backorders dev` stacks; whatever still runs at the end is stopped, and each
    one's output is printed (pytest shows it for a failed test)."""
    started: list[DevStack] = []

    def start(env: StackEnv, *, terminal: bool = False) -> DevStack:
        stack = DevStack.start(env, tmp_path / f"dev-{len(started) + 1}.log", terminal=terminal)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()
        print(stack)


@pytest.fixture
def env(tmp_path: Path) -> StackEnv:
    return StackEnv.fresh(tmp_path / "state")


def assert_nothing_left(env: StackEnv, temporal: ProcessIdentity) -> None:
    """No process of the ended stack: its Temporal server, anything listening on its ports,
    anything holding its Temporal database."""
    started = temporal.started

    def all_gone() -> bool:
        return (
            not running(temporal.pid, started)
            and not listening(env.ports)
            and not holding(env.temporal_db)
        )

    wait_for(
        all_gone,
        f"the Temporal server (pid {temporal.pid}) gone, ports {sorted(env.ports)} free, "
        f"{env.temporal_db} closed",
        GONE_WITHIN,
    )


def start_leftover_server(env: StackEnv, log: Path) -> subprocess.Popen[bytes]:
    """A Temporal dev server on the folder's database, as a stack starts it but tied to no
    parent: what a stack killed where the parent-death signal does not exist leaves behind."""
    with log.open("wb") as output:
        server = subprocess.Popen(  # noqa: S603 - the stack's own command line
            TemporalDevServer(env.settings).command(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for(
        lambda: env.port("TEMPORAL_PORT") in listening({env.port("TEMPORAL_PORT")}),
        "the leftover Temporal server listening",
        30.0,
    )
    return server


def end(process: subprocess.Popen[Any], within: float = 30.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the tests ------------------------------------------------------------------------------


ENDINGS = {
    "SIGINT": (signal.SIGINT, 0),
    "SIGTERM": (signal.SIGTERM, 0),
    "SIGKILL": (signal.SIGKILL, -signal.SIGKILL),
    "terminal-closed": (signal.SIGHUP, None),
}
"""How the stack is ended -> (the signal it gets, the exit status it must end with). A closed
terminal is a real pseudo-terminal hung up, which sends SIGHUP; the exit status is not checked
then, as Python may fail to flush its output to a terminal that is gone."""


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_dev_stack_ended_any_way_leaves_no_process_and_starts_again(
    ending: str, env: StackEnv, stacks: Callable[..., DevStack]
) -> None:
    sig, status = ENDINGS[ending]
    stack = stacks(env, terminal=ending == "terminal-closed")
    stack.wait_healthy()
    temporal = stack.temporal_child()
    record = StackRecord.read(env.folder.resolve())
    assert record is not None and record.children["Temporal dev server"] == temporal

    began = time.monotonic()
    if ending == "terminal-closed":
        stack.close_terminal()
    else:
        stack.process.send_signal(sig)
    code = stack.process.wait(30)
    assert_nothing_left(env, temporal)
    took = time.monotonic() - began

    if status is not None:
        assert code == status, str(stack)
    # A stop in order removes the record; only `kill -9` leaves it, for the next start.
    left = StackRecord.read(env.folder.resolve())
    assert (left is not None) == (sig == signal.SIGKILL), str(stack)
    again = stacks(env)
    again.wait_healthy()
    restarted = again.temporal_child()
    assert restarted.pid != temporal.pid
    assert again.stop() == 0, str(again)
    assert_nothing_left(env, restarted)
    print(f"\n{ending}: nothing left {took:.1f} s after the end")


def test_a_second_stack_on_a_folder_in_use_is_refused_naming_the_folder_and_pid(
    env: StackEnv, stacks: Callable[..., DevStack]
) -> None:
    first = stacks(env)
    first.wait_healthy()
    temporal = first.temporal_child()
    # Ports of its own: the folder alone is what refuses it.
    other = env.with_ports(**{name.lower(): free_port() for name in PORT_SETTINGS})

    second = subprocess.run(  # noqa: S603 - our own console script
        [str(SCRIPT), "dev"], env=other.variables, capture_output=True, text=True, timeout=60
    )

    assert second.returncode == 2, second.stdout + second.stderr
    assert str(env.folder.resolve()) in second.stderr
    assert f"pid {first.process.pid}" in second.stderr
    assert f"kill {first.process.pid}" in second.stderr
    # The first runs on, and its Temporal server is still the only one on the database.
    first.wait_healthy(5)
    assert sorted(set(holding(env.temporal_db))) == [temporal.pid]


def test_a_stale_record_of_a_killed_stack_is_cleaned_up_and_the_next_start_works(
    env: StackEnv, stacks: Callable[..., DevStack], tmp_path: Path
) -> None:
    # What `kill -9` leaves where the parent-death signal does not work: the record of a stack
    # process that is gone, naming a Temporal server that still runs.
    env.folder.mkdir(parents=True)
    leftover = start_leftover_server(env, tmp_path / "leftover.log")
    bystander = subprocess.Popen(["sleep", "300"])  # noqa: S607 - coreutils on PATH
    try:
        dead_stack = subprocess.Popen(["sleep", "300"])  # noqa: S607
        owner = identify(dead_stack.pid)
        dead_stack.kill()
        dead_stack.wait()
        server = identify(leftover.pid)
        assert owner is not None and server is not None
        children = {
            "Temporal dev server": server,
            # A recorded pid since reused by an unrelated process: another start time.
            "old helper": ProcessIdentity(bystander.pid, "1", "sleep 300"),
        }
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        StackRecord(owner, started_at, children).write(env.folder.resolve())

        stack = stacks(env)
        stack.wait_healthy()

        assert leftover.poll() is not None, "the leftover Temporal server still runs"
        assert bystander.poll() is None, "a process that merely reused a recorded pid was stopped"
        assert f"pid {leftover.pid}" in stack.output()
        assert stack.temporal_child().pid != leftover.pid
        assert sorted(set(holding(env.temporal_db))) == [stack.temporal_child().pid]
    finally:
        end(leftover)
        end(bystander)


def test_a_server_left_on_the_folder_without_a_record_is_named_and_no_other_port_advised(
    env: StackEnv, stacks: Callable[..., DevStack], tmp_path: Path
) -> None:
    # A Temporal server on the folder's database that no record names (left by a release
    # before the record existed): a new stack must neither connect to it nor start a second
    # server on the same file on another port, as the old advice led users to.
    env.folder.mkdir(parents=True)
    leftover = start_leftover_server(env, tmp_path / "leftover.log")
    try:
        for attempt in (env, env.with_ports(temporal_port=free_port())):
            refused = subprocess.run(  # noqa: S603 - our own console script
                [str(SCRIPT), "dev"], env=attempt.variables, capture_output=True, text=True
            )
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert f"kill {leftover.pid}" in refused.stderr
            assert "free port" not in refused.stderr
            assert sorted(set(holding(env.temporal_db))) == [leftover.pid]
        # The port check on its own says the same of the port it holds.
        with pytest.raises(PortInUseError) as taken:
            check_ports(env.settings)
        assert f"kill {leftover.pid}" in str(taken.value)
        assert "free port" not in str(taken.value)
    finally:
        end(leftover)

    stack = stacks(env)
    stack.wait_healthy()
    assert stack.stop() == 0
