"""Child processes for the benchmark: start pinned, wait until they answer, read RSS, stop."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class BenchError(RuntimeError):
    """A benchmark step that cannot go on (a server that won't start, a bad probe)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """``argv`` under ``taskset -c cpu`` when pinning is on (and taskset exists)."""
    if cpu is None:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:
        raise BenchError("taskset not found: install util-linux, or run with --no-pin")
    return [taskset, "-c", str(cpu), *argv]


def _status_kb(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 256:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in task.read_text().split()]
                found.extend(kids)
                todo.extend(kids)
    return found


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_kb(self) -> int:
        """Resident memory of the process and its children (``VmRSS``)."""
        return sum(_status_kb(p, "VmRSS") for p in [self.pid, *_descendants(self.pid)])

    def peak_rss_kb(self) -> int:
        """High-water mark of resident memory since start (``VmHWM``, summed likewise)."""
        return sum(_status_kb(p, "VmHWM") for p in [self.pid, *_descendants(self.pid)])

    def cpu_s(self) -> float:
        """User plus system CPU seconds used so far by the process and its children."""
        total = 0
        for p in [self.pid, *_descendants(self.pid)]:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def start(
    name: str, argv: list[str], *, port: int, cpu: int | None, log_dir: Path, env: dict[str, str]
) -> Proc:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            pinned(argv, cpu),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return Proc(name, popen, port, log)


def wait_listening(proc: Proc, timeout: float) -> None:
    """Wait until ``proc`` accepts TCP connections on its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(
                f"{proc.name} exited with {proc.popen.returncode} before listening; "
                f"log:\n{proc.log_tail()}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", proc.port), 0.5):
            return
        time.sleep(0.05)
    raise BenchError(
        f"{proc.name} not listening on {proc.port} after {timeout:.0f}s:\n{proc.log_tail()}"
    )


@dataclass
class Probe:
    status: int
    headers: dict[str, str]
    body: bytes


def post(port: int, path: str, body: bytes, timeout: float = 30.0) -> Probe:
    """One blocking POST (a fresh connection), whole answer read."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return Probe(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def core_busy_s(cpu: int) -> float:
    """Busy seconds of one core so far, all processes (``/proc/stat``)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(v) for v in line.split()[1:]]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    return 0.0


def raise_nofile() -> int:
    """Raise the open-files soft limit to the hard limit (1,000 streams need 3,000+ fds)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def set_priority(nice: int) -> None:
    """Niceness for this process and the children it starts, against other sessions too.

    With the kernel's autogroup scheduling on (most distributions), niceness only weighs
    processes of one session against each other; the session's own weight is the autogroup's
    nice value, so that is set as well.
    """
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    autogroup = Path("/proc/self/autogroup")
    if autogroup.exists():
        with contextlib.suppress(OSError):
            autogroup.write_text(str(nice))


def pin_self(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
