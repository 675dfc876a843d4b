"""A ``mesc serve`` on this machine's loopback, as the served tests and the load benchmark run
it: free ports, the server as a child process in its own session (so a kill of the group
reaches Triton's processes too), and waiting until the model answers."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"


def free_ports(n: int, host: str = HOST) -> list[int]:
    """``n`` distinct ports nothing listens on now (all sockets held open at once, so the OS
    cannot hand out one twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ServerDidNotStart(RuntimeError):
    pass


@dataclasses.dataclass
class LocalServer:
    proc: subprocess.Popen
    model: str
    http: int
    grpc: int
    metrics: int

    @property
    def urls(self) -> dict:
        return {"http": f"http://{HOST}:{self.http}", "grpc": f"grpc://{HOST}:{self.grpc}",
                "metrics": f"http://{HOST}:{self.metrics}/metrics"}

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until the model answers ready over HTTP; ServerDidNotStart when the process exits or
        the time runs out first (the server is killed then)."""
        from mesc.serving.client import Client

        deadline = time.monotonic() + timeout_s
        with Client(self.urls["http"], self.model) as c:
            while not c.ready():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    why = (f"exited with {self.proc.returncode}" if self.proc.poll() is not None
                           else f"not ready after {timeout_s:.0f} s")
                    self.proc.kill()
                    raise ServerDidNotStart(f"mesc serve did not come up ({why})")
                time.sleep(0.5)


def start_local(package: Path, *options: str, log=subprocess.DEVNULL, python: str = sys.executable) -> LocalServer:
    """``mesc serve PACKAGE`` on free loopback ports with ``options``; stdout and stderr to
    ``log``. Returns at once: call :meth:`LocalServer.wait_ready`."""
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen([python, "-m", "mesc.cli", "serve", str(package), "--address", HOST,
                             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                             *options], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return LocalServer(proc, Path(package).resolve().name, http, grpc, metrics)
