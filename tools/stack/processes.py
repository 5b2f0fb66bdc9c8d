"""Starting and stopping the stack's server processes, each in a process group of its own.

A server runs in a new session (so its group id is its pid and its workers are in the same group); it is
stopped with SIGTERM to the whole group, then SIGKILL after a grace period. A process is identified by its
pid *and* its start time, so a pid that the system has reused for another program is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from gateway.testing.servers import free_port


class PortInUseError(RuntimeError):
    """A fixed port the stack was asked to use is already taken."""


# A process is known by its pid and its start in seconds after boot, from the kernel's start ticks.
# Not psutil's create_time alone: that adds the boot time, which moves with the system clock, and the
# clock here jumped 14 s during one test run (Prometheus's own log said 04:30:27 for a start that
# create_time put at 04:30:41); records no longer matched their live processes and stop() left them
# running (an S3 server that kept answering through its "outage", a Prometheus that outlived its test).
START_TOLERANCE_SECONDS = 0.05  # the kernel counts in ticks of 10 ms


def started_after_boot(pid: int) -> float:
    """Seconds from boot to the start of process `pid` (psutil.NoSuchProcess when there is none)."""
    while True:
        boot = psutil.boot_time()
        started = psutil.Process(pid).create_time() - boot
        if psutil.boot_time() == boot:  # the clock did not move between the two reads
            return started


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find (and only find) a started process again, e.g. from a state file."""

    name: str
    pid: int
    started_after_boot: float
    command: tuple[str, ...]
    log_path: str

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["command"] = list(self.command)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProcessRecord:
        command = data["command"]
        if not isinstance(command, list):
            raise ValueError(f"process record {data.get('name')!r}: command must be a list")
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),  # type: ignore[call-overload]
            started_after_boot=float(data["started_after_boot"]),  # type: ignore[arg-type]
            command=tuple(str(part) for part in command),
            log_path=str(data["log_path"]),
        )

    def is_alive(self) -> bool:
        """True when the pid still belongs to the process that was started (same start time)."""
        try:
            moved = abs(started_after_boot(self.pid) - self.started_after_boot)
            same_start = moved <= START_TOLERANCE_SECONDS
            return same_start and psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def resolve_port(port: int, service: str) -> int:
    """`port`, or a free one when it is 0; raises PortInUseError when a fixed port is taken."""
    if port == 0:
        return free_port()
    if not port_is_free(port):
        raise PortInUseError(f"port {port} for {service} is already in use on 127.0.0.1")
    return port


def start_process(
    name: str,
    command: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start `command` in a new session with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        started = started_after_boot(popen.pid)
    except psutil.NoSuchProcess:
        started = 0.0
    record = ProcessRecord(
        name=name, pid=popen.pid, started_after_boot=started, command=tuple(command), log_path=str(log_path)
    )
    return popen, record


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def describe_group(pgid: int) -> str:
    """One line per live member of process group `pgid`: what the kernel says it is doing.

    For error messages about a group that does not start or does not stop: the scheduler state, the CPU
    time it has had, the CPU it last ran on and the kernel function it waits in tell a process that
    works slowly from one that never runs or is blocked in the kernel.
    """
    lines = []
    for process in group_members(pgid):
        try:
            with process.oneshot():
                times = process.cpu_times()
                line = (f"pid {process.pid} {process.name()}: {process.status()}, "
                        f"{times.user + times.system:.1f} s CPU, last on CPU {process.cpu_num()}")
            with contextlib.suppress(OSError):
                line += f", waits in {Path(f'/proc/{process.pid}/wchan').read_text() or '-'}"
        except psutil.NoSuchProcess:
            continue
        lines.append(line)
    return "\n".join(lines) or "(no live process)"


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop_group(
    record: ProcessRecord, *, grace: float = 15.0, popen: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the process group `record` leads, then SIGKILL what is left after `grace` seconds.

    Does nothing when the leader is gone or its pid now belongs to another process; with `popen` (our own
    child) the leader is reaped too.
    """
    if not record.is_alive():
        if popen is not None:
            popen.poll()
        return
    pgid = record.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()
        if not group_members(pgid):
            return
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)
    # SIGKILL cannot be refused, but a process of many GiB (a vLLM engine) takes a while to release its
    # memory on a machine whose cores are busy (over 60 s seen with two vLLMs stopping on two cores).
    deadline = time.monotonic() + 180.0
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()
        if not group_members(pgid):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{record.name} (process group {pgid}) did not exit after SIGKILL:\n{describe_group(pgid)}"
    )


def session_log_dir(parent: Path, *, keep: int = 5) -> Path:
    """A new `session-*` directory under `parent`; only the `keep` most recent ones are kept."""
    parent.mkdir(parents=True, exist_ok=True)
    sessions = sorted(parent.glob("session-*"), key=lambda path: path.stat().st_mtime)
    for old in sessions[: max(0, len(sessions) - keep + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"session-{time.strftime('%Y%m%dT%H%M%S')}-", dir=parent))


def log_tail(log_path: Path | str, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    path = Path(log_path)
    if not path.is_file():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])
