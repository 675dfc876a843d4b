"""A ``mesc serve`` on this machine's loopback, as the served tests and the load benchmark run
it: free ports, the server as a child process in its own session (so a kill of the group
reaches Triton's processes too), and waiting until the model answers. Also a stock
``tritonserver`` over a model repository (``mesc serve --model-repository``), with the binary,
Python backend and stub that PyTriton's wheel bundles."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import signal
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

    def wait_ready(self, timeout_s: float = 180.0, models=None) -> None:
        """Until the model (or each of ``models``) answers ready over HTTP; ServerDidNotStart
        when the process exits or the time runs out first (the server is stopped then)."""
        from mesc.serving.client import Client

        deadline = time.monotonic() + timeout_s
        for model in models or [self.model]:
            with Client(self.urls["http"], model) as c:
                while not c.ready():
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        why = (f"exited with {self.proc.returncode}" if self.proc.poll() is not None
                               else f"model '{model}' not ready after {timeout_s:.0f} s")
                        self.stop(timeout_s=10)
                        raise ServerDidNotStart(f"the server did not come up ({why})")
                    time.sleep(0.5)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM to the server's process group (Triton finishes what is in flight), SIGKILL
        after ``timeout_s``, then SIGKILL to whatever of the group is left (the Python-backend
        stubs share it); the exit status, None where the server could not be reaped."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.proc.pid, signal.SIGKILL)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None


def session_processes(sid: int) -> list[int]:
    """The live (not zombie) processes of session ``sid``: what a server started with
    ``start_new_session`` left behind."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _signal_group(pgid: int, sig) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start_local(package: Path, *options: str, log=subprocess.DEVNULL, python: str = sys.executable) -> LocalServer:
    """``mesc serve PACKAGE`` on free loopback ports with ``options``; stdout and stderr to
    ``log``. Returns at once: call :meth:`LocalServer.wait_ready`."""
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen([python, "-m", "mesc.cli", "serve", str(package), "--address", HOST,
                             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
                             *options], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return LocalServer(proc, Path(package).resolve().name, http, grpc, metrics)


@dataclasses.dataclass
class BundledTriton:
    """The ``tritonserver`` that PyTriton's wheel bundles, with its Python backend."""

    binary: Path
    python_backend: Path  # the folder with libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # the Python-backend stub built for this Python's minor version
    libs: Path  # the wheel's shared libraries (libtritonserver and the rest)


def bundled_tritonserver():
    """``(BundledTriton, "")``, or ``(None, why)`` where PyTriton or a part of it is absent."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None, "nvidia-pytriton is not installed here (make test runs the served tests in .venv-serve)"
    root = Path(list(spec.submodule_search_locations)[0])
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = BundledTriton(binary=dist / "bin" / "tritonserver", python_backend=dist / "backends" / "python",
                          stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
                          libs=root.parent / "nvidia_pytriton.libs")
    for what, path in (("tritonserver binary", found.binary),
                       ("Python backend", found.python_backend / "libtriton_python.so"),
                       (f"Python-backend stub for Python {version}", found.stub)):
        if not path.is_file():
            return None, f"PyTriton's wheel has no {what} at {path}"
    return found, ""


def backend_directory(triton: BundledTriton, workdir: Path) -> Path:
    """A Triton ``--backend-directory`` in ``workdir``: the bundled Python backend with the stub
    for this Python beside it, where the backend looks for it (PyTriton assembles the same)."""
    backends = Path(workdir) / "backends"
    python = backends / "python"
    python.mkdir(parents=True, exist_ok=True)
    for item in triton.python_backend.iterdir():
        if item.is_file():
            shutil.copy2(item, python / item.name)
    shutil.copy2(triton.stub, python / "triton_python_backend_stub")
    return backends


def start_tritonserver(repository: Path, workdir: Path, model: str, log=subprocess.DEVNULL,
                       triton: BundledTriton | None = None) -> LocalServer:
    """The bundled ``tritonserver`` over ``repository`` on free loopback ports, in its own
    session; its Python backend runs this interpreter (its ``bin`` first on PATH, its shared
    libpython preloaded as :mod:`mesc.serving.libpython` explains). Returns at once: call
    :meth:`LocalServer.wait_ready`, and :meth:`LocalServer.stop` in any case."""
    from mesc.serving.libpython import preload_env

    if triton is None:
        triton, why = bundled_tritonserver()
        if triton is None:
            raise ServerDidNotStart(why)
    env = preload_env()
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), str(triton.libs)) if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    http, grpc, metrics = free_ports(3)
    cmd = [str(triton.binary), "--model-repository", str(repository),
           "--backend-directory", str(backend_directory(triton, workdir)),
           "--http-address", HOST, "--http-port", str(http), "--grpc-address", HOST, "--grpc-port", str(grpc),
           "--metrics-address", HOST, "--metrics-port", str(metrics), "--exit-timeout-secs", "5"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return LocalServer(proc, model, http, grpc, metrics)
