"""Runs artjax's commands for the tests as `python -m artjax.<command>` runs them, in processes
forked from a server that has already imported the libraries.

A fresh interpreter spends about ten seconds importing TensorFlow, JAX, Flax and Orbax, and the
suite starts dozens of commands. The server (one per pytest run, shared by its workers and started
by the first that needs it: `tests/conftest.py`) imports the command modules once, without
starting a JAX backend or running anything, and listens on a UNIX socket. For each request (a JSON
line: arguments, working directory, environment, output files) it forks; the child takes the
request's directory, environment and output files and runs the module as `__main__` (`runpy`), or
the code of `python -c`, as a new interpreter would, and the server answers with its exit status
(negative: killed by that signal, as `subprocess` reports it).
Requests run concurrently (the two-process test's processes, a script's commands).

`python tests/command_server.py ARGS...` is a stand-in for `python ARGS...` (`-m MODULE ...` or
`-c CODE ...`) that runs them through the server named by $ARTJAX_TEST_COMMAND_SERVER, for scripts
the tests run (`experiments/run_study_on_gpu.sh` with PYTHON set to it). Tests that need a fresh
interpreter (what importing does, memory settings applied before the first import, a process
without JAX) start one themselves.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import signal
import socket
import sys
import tempfile

ADDRESS_VARIABLE = "ARTJAX_TEST_COMMAND_SERVER"
# Imported once by the server, so that every forked command starts with them loaded.
PRELOADED = (
    "artjax.train",
    "artjax.evaluate",
    "artjax.predict",
    "artjax.explain",
    "artjax.export",
    "artjax.port",
    "artjax.eda",
    "artjax.bench",
    "artjax.cv",
    "artjax.prepare",
    "artjax.serve",
)


def _run_child(request: dict) -> None:
    """In the forked child: becomes the requested command and exits with its status."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    streams = [(os.devnull, os.O_RDONLY), (request["stdout"], write), (request["stderr"], write)]
    for fd, (path, flags) in enumerate(streams):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    # as a new interpreter would: the working directory first, then $PYTHONPATH, then the rest
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [request["cwd"], *extra, *sys.path[1:]]
    status = 0
    try:
        if "module" in request:
            sys.argv = ["-m", *request["args"]]
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        elif "script" in request:
            sys.argv = [request["script"], *request["args"]]
            sys.path[0] = os.path.dirname(os.path.abspath(request["script"]))
            runpy.run_path(request["script"], run_name="__main__")
        else:  # `python -c CODE ARGS`
            sys.argv = ["-c", *request["args"]]
            exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__"})
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            status = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            status = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    sys.exit(status)  # interpreter shutdown as after `python -m`: atexit handlers, flushed output


def _handle(connection: socket.socket) -> None:
    """In a forked handler: runs one request in a child of its own and reports on it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's SIG_IGN would hide the child
    stream = connection.makefile("rw")
    request = json.loads(stream.readline())
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        stream.close()
        connection.close()
        _run_child(request)
    stream.write(json.dumps({"pid": pid}) + "\n")
    stream.flush()
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    stream.write(json.dumps({"returncode": code}) + "\n")
    stream.flush()
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def serve(address: str, owner: int) -> None:
    """Serves until the process `owner` (the pytest run) ends, then removes the directory of its
    socket (the run's: socket, lock and log)."""
    import importlib

    for name in PRELOADED:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished handlers are reaped by the kernel
    server = os.getpid()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(address)
        listener.listen(8)
        listener.settimeout(1.0)
        print("ready", flush=True)
        try:
            while _alive(owner):
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                if os.fork() == 0:
                    listener.close()
                    _handle(connection)
                connection.close()
        finally:
            if os.getpid() == server:  # not in a forked command leaving through here
                shutil.rmtree(os.path.dirname(address))


def request(address: str, request: dict, timeout: float) -> tuple[int, str, str]:
    """Runs `request` (`module`, `code` or `script`, with `args`, `cwd`, `env`) through the server
    at `address`; (exit status, stdout, stderr). On timeout the command is killed."""
    with tempfile.TemporaryDirectory(prefix="artjax_command_") as files:
        out, err = os.path.join(files, "stdout"), os.path.join(files, "stderr")
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(address)
            stream = connection.makefile("rw")
            stream.write(json.dumps(dict(request, stdout=out, stderr=err)) + "\n")
            stream.flush()
            connection.settimeout(60)
            pid = json.loads(stream.readline())["pid"]
            connection.settimeout(timeout)
            try:
                code = json.loads(stream.readline())["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                raise
        with open(out) as o, open(err) as e:
            return code, o.read(), e.read()


def python_arguments(argv: list[str]) -> dict:
    """The request for `python ARGV` (`-m MODULE ...`, `-c CODE ...` or `SCRIPT ...`)."""
    if argv[0] == "-m":
        return dict(module=argv[1], args=argv[2:])
    if argv[0] == "-c":
        return dict(code=argv[1], args=argv[2:])
    return dict(script=argv[0], args=argv[1:])


def stand_in(argv: list[str]) -> int:
    """`python ARGV` through the server: its output copied to ours, its status returned."""
    found = dict(python_arguments(argv), cwd=os.getcwd(), env=dict(os.environ))
    code, out, err = request(os.environ[ADDRESS_VARIABLE], found, timeout=3600)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(stand_in(sys.argv[1:]))
