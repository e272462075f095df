"""Processes the embedded stack starts, and how it recognises them later.

- `die_with_parent()`: a `preexec_fn` that ties a child to this process on Linux
  (`PR_SET_PDEATHSIG`): the kernel kills the child when this process ends, however it ends,
  `kill -9` included. The signal fires when the *thread* that forked the child ends, so it is
  only set for children started from the main thread (where `backorders dev` runs its event
  loop); elsewhere, and on systems without it, the state folder's record of children
  (`cli.state_folder`) is what finds a leftover on the next start.
- `ProcessIdentity`: a pid plus what makes it that process and not a later one that reuses the
  number (its start time and its command line), so that a leftover is stopped only if it really
  is the process that was recorded.
- `open_by` and `listening_on`: which processes hold a file open, or listen on a TCP port
  (Linux `/proc`; elsewhere they find nothing and the callers fall back to plainer messages).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when this process ends; None where
    that is not possible (not Linux, or not called from the main thread)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    # Loaded here, in the parent: the child, between fork and exec, only calls it.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def tie_to_parent() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between the fork and the prctl: then no signal will come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return tie_to_parent


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as it was when recorded: another process reusing the pid differs in `started`
    (and usually in `command`)."""

    pid: int
    started: str
    """Linux: the start time in clock ticks since boot (`/proc/PID/stat`); elsewhere `ps`'s
    `lstart`."""
    command: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ProcessIdentity | None:
        """None for anything that is not a recorded identity (a damaged or foreign file)."""
        if not isinstance(data, dict):
            return None
        pid, started, command = data.get("pid"), data.get("started"), data.get("command")
        if not isinstance(pid, int) or not isinstance(started, str):
            return None
        if not isinstance(command, str):
            return None
        return cls(pid, started, command)

    def describe(self, width: int = 80) -> str:
        """`pid 123: backorders dev`: the program's name without its folder or the Python
        that runs it, cut to `width` characters."""
        words = self.command.split()
        if len(words) > 1 and Path(words[0]).name.startswith("python"):
            words = words[1:]
        if words:
            words[0] = Path(words[0]).name
        command = " ".join(words)
        if len(command) > width:
            command = command[: width - 3] + "..."
        return f"pid {self.pid}: {command}"


def identify(pid: int) -> ProcessIdentity | None:
    """The process now running as `pid`, or None if there is none (a zombie counts as none:
    it has ended and holds nothing but its number)."""
    if pid <= 0:
        return None
    if PROC.joinpath("self").exists():
        return _identify_proc(pid)
    return _identify_ps(pid)


def _identify_proc(pid: int) -> ProcessIdentity | None:
    base = PROC / str(pid)
    try:
        stat = (base / "stat").read_text()
        raw = (base / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    state, started = fields[0], fields[19]
    if state in ("Z", "X"):
        return None
    command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return ProcessIdentity(pid, started, command)


def _identify_ps(pid: int) -> ProcessIdentity | None:
    ps = shutil.which("ps")
    if ps is None:
        return None
    done = subprocess.run(  # noqa: S603 - a fixed argv
        [ps, "-ww", "-o", "stat=,lstart=,command=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    line = done.stdout.strip()
    if done.returncode != 0 or not line:
        return None
    state, _, rest = line.partition(" ")
    if state.startswith("Z"):
        return None
    # lstart is five words: "Mon Nov 30 12:39:01 2026".
    words = rest.split()
    return ProcessIdentity(pid, " ".join(words[:5]), " ".join(words[5:]))


def alive_as(identity: ProcessIdentity) -> bool:
    """Whether the recorded process still runs: the same pid, started at the same time, with
    the same command."""
    return identify(identity.pid) == identity


def stop_process(identity: ProcessIdentity, *, grace: float = 10.0) -> bool:
    """Stop the recorded process (and its process group when it leads one): SIGTERM, then
    SIGKILL after `grace` seconds. Does nothing unless it really is the recorded process.
    Returns whether it was running."""
    if not alive_as(identity):
        return False

    def send(sig: signal.Signals) -> None:
        # Re-checked before each signal: the pid could have been freed and reused meanwhile.
        if not alive_as(identity):
            return
        try:
            if os.getpgid(identity.pid) == identity.pid:
                os.killpg(identity.pid, sig)
            else:
                os.kill(identity.pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive_as(identity):
            return True
        time.sleep(0.05)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while alive_as(identity) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _pids() -> Iterator[int]:
    try:
        entries = os.listdir(PROC)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.isdigit():
            yield int(entry)


def _fd_targets(pid: int) -> Iterator[str]:
    """Where each open file descriptor of `pid` points; nothing for a process we may not see."""
    fds = PROC / str(pid) / "fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return
    for name in names:
        try:
            yield os.readlink(fds / name)
        except OSError:
            continue


def open_by(*paths: Path) -> list[ProcessIdentity]:
    """Other processes that hold any of `paths` open (Linux; empty elsewhere)."""
    wanted = {str(path.resolve()) for path in paths}
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        if any(target in wanted for target in _fd_targets(pid)):
            identity = identify(pid)
            if identity is not None:
                found.append(identity)
    return found


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP `port`, any address (from /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def listening_on(port: int) -> list[ProcessIdentity]:
    """Processes with a socket listening on TCP `port` (Linux; empty elsewhere or when the
    process is not ours to inspect)."""
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not sockets:
        return []
    found = []
    for pid in _pids():
        if any(target in sockets for target in _fd_targets(pid)):
            identity = identify(pid)
            if identity is not None:
                found.append(identity)
    return found
