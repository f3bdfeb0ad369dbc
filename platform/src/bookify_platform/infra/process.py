"""Spawning, identifying and stopping the server processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bookify_platform.infra.errors import PortInUseError, StartupError
from bookify_platform.infra.fsutil import tail

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (SO_REUSEADDR, like the servers themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ensure_port_free(port: int, *, flag: str, env: str) -> None:
    """Raise PortInUseError naming the option and variable that choose another port."""
    if not port_is_free(port):
        raise PortInUseError(f"port {port} is taken (override with {flag} or {env})")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the kernel considers free right now (for tests).

    The sockets are held open together so the ports differ; another process can still
    grab one before the server binds it, which is rare enough for a test harness.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def _die_with_parent() -> Callable[[], None]:
    """preexec_fn: the child gets SIGKILL when the thread that spawned it dies.

    libc is loaded here, in the parent, so the child only makes two syscalls between
    fork and exec. If the parent died before prctl took effect, exit at once.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    attached: bool,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    append: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout+stderr in `log_path` and stdin closed.

    The log is truncated, or appended to with `append` (a supervised restart keeps the
    evidence of the crash that caused it).

    attached: in its own process group (Ctrl-C in the terminal reaches only us; we stop it
    in order) and killed by the kernel if this thread dies (PR_SET_PDEATHSIG) - for tests,
    so a killed pytest leaves no orphan. Spawn from the thread that lives longest (main).
    detached: in a new session, so it outlives the `bookify infra up` that started it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab" if append else "wb") as log:
        if attached:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else dict(env),
                process_group=0,
                preexec_fn=_die_with_parent(),  # only way to set PDEATHSIG
            )
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        # No procfs: fall back to signal 0 (cannot tell zombies apart).
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # Field 3 is the state; the command name in field 2 may contain spaces and parens.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in {"Z", "X"}


def cmdline(pid: int) -> list[str]:
    """argv of `pid`, or [] if it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_ours(pid: int, marker: str) -> bool:
    """True when `pid` is alive and its command line still contains `marker`.

    The marker is a path inside our run directory, so a recycled pid that now belongs to
    an unrelated process is never signalled.
    """
    return is_alive(pid) and any(marker in arg for arg in cmdline(pid))


def terminate(
    pid: int, *, timeout: float = 30.0, popen: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM, wait up to `timeout` s, then SIGKILL. Reaps `popen` if it is our child."""

    def gone() -> bool:
        if popen is not None and popen.poll() is not None:
            return True
        return not is_alive(pid)

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=1)


def wait_for_log_line(
    log_path: Path,
    pattern: str,
    *,
    proc: subprocess.Popen[bytes],
    what: str,
    timeout: float,
) -> re.Match[str]:
    """Poll `log_path` until `pattern` (multiline regex) matches; fail fast if `proc` exits."""
    regex = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        match = regex.search(text)
        if match is not None:
            return match
        code = proc.poll()
        if code is not None:
            raise StartupError(
                f"{what} exited with code {code} before it was ready. "
                f"Last lines of {log_path}:\n{tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise StartupError(
                f"{what} was not ready after {timeout:.0f} s. Last lines of {log_path}:\n"
                f"{tail(log_path)}"
            )
        time.sleep(0.1)
