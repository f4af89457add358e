"""The worker process: `python -m autograder.worker --request-fd R --reply-fd W [limits]`.

1. Applies its resource limits (address space or data segment, CPU seconds, file size, processes, no core files)
   before any student code runs.
2. Reads the init message {"package_dir": str, "modules": [names], "blocked": {name: reason}} from the request pipe,
   makes `package_dir` importable as the package `submission` (so the student's relative imports work) and imports
   each module in `modules`, announcing {"event": "importing", "module": name} before each one, then replies
   {"event": "ready", "import_errors": {name: message}}. A module that kills the process while importing is blocked
   by the judge on the next start, so one bad module costs only the tests that need it.
3. Serves requests {"probe": name, "kwargs": {...}} with {"ok": true, "value": ...} or {"ok": false, "error":
   {"type", "message", "where"}} until the request pipe closes. Any exception of the student's code, including
   SystemExit and KeyboardInterrupt, becomes an error reply.

The student's prints go to stdout/stderr, which the judge redirects to files; replies travel on the reply pipe only.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import importlib
import importlib.abc
import importlib.util
import os
import resource
import sys
import traceback
import types
from pathlib import Path
from typing import Any

from .protocol import ChannelClosed, ProtocolError, read_message, write_message

PACKAGE = "submission"
MAX_MESSAGE_CHARS = 800


class ModuleImportFailed(ImportError):
    """A submission module is missing, failed to import, or was blocked after it killed the worker."""


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 20] + f" ... [{len(text) - limit + 20} more characters]"


def describe(exc: BaseException, package_dir: Path | None) -> dict:
    """{"type", "message", "where"} of an exception, `where` being the last line of the submission it went through."""
    if isinstance(exc, SystemExit):
        message = f"your code called sys.exit({exc.code!r})"
    elif isinstance(exc, KeyboardInterrupt):
        message = "your code raised KeyboardInterrupt"
    elif isinstance(exc, SyntaxError) and exc.filename:
        message = exc.msg  # str(exc) repeats the file and line that `where` gives
    else:
        message = str(exc)
    where = None
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{Path(exc.filename).name}, line {exc.lineno}"
    elif package_dir is not None:
        for frame in traceback.extract_tb(exc.__traceback__):
            path = Path(frame.filename)
            if path.is_relative_to(package_dir):
                where = f"{path.relative_to(package_dir).as_posix()}, line {frame.lineno}, in {frame.name}"
    return {"type": type(exc).__name__, "message": truncate(message), "where": where}


class _Blocker(importlib.abc.MetaPathFinder):
    """Refuses to import the submission modules that killed the worker during an earlier import."""

    def __init__(self, blocked: dict[str, str]):
        self.blocked = blocked

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 - MetaPathFinder signature
        prefix = PACKAGE + "."
        if fullname.startswith(prefix) and fullname[len(prefix) :] in self.blocked:
            raise ModuleImportFailed(self.blocked[fullname[len(prefix) :]])
        return None


class Submission:
    """The probes' accessor: `module(name)` returns the submission's module `name` or raises ModuleImportFailed."""

    def __init__(self, package_dir: Path, blocked: dict[str, str]):
        self.package_dir = package_dir
        self.blocked = dict(blocked)
        self.errors: dict[str, str] = {}
        sys.meta_path.insert(0, _Blocker(self.blocked))

    def _bare_package(self) -> None:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(self.package_dir)]
        package.__package__ = PACKAGE
        sys.modules[PACKAGE] = package

    def load_package(self) -> None:
        """Import `package_dir/__init__.py` as `submission` (a bare package when it is missing or fails)."""
        init = self.package_dir / "__init__.py"
        if "__init__" in self.blocked or not init.is_file():
            self._bare_package()
            return
        spec = importlib.util.spec_from_file_location(PACKAGE, init, submodule_search_locations=[str(self.package_dir)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything, even SystemExit
            self.errors["__init__"] = failure_text("__init__.py", exc, self.package_dir)
            self._bare_package()

    def module(self, name: str) -> Any:
        if name in self.errors:
            raise ModuleImportFailed(self.errors[name])
        if name in self.blocked:
            raise ModuleImportFailed(self.blocked[name])
        if not (self.package_dir / f"{name}.py").is_file():
            raise ModuleImportFailed(f"the submission has no {name}.py (expected next to the other modules)")
        return importlib.import_module(f"{PACKAGE}.{name}")

    def import_module(self, name: str) -> None:
        """Import one module at start-up, recording a failure instead of raising."""
        if not (self.package_dir / f"{name}.py").is_file():
            return
        try:
            self.module(name)
        except ModuleImportFailed as exc:
            self.errors.setdefault(name, str(exc))
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything, even SystemExit
            self.errors[name] = failure_text(f"{name}.py", exc, self.package_dir)


def failure_text(filename: str, exc: BaseException, package_dir: Path) -> str:
    info = describe(exc, package_dir)
    where = f" (at {info['where']})" if info["where"] else ""
    hint = ""
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in ("stencil", "assignment"):
        hint = "; import your own modules relatively, e.g. `from .samplers import sample`"
    return f"{filename} failed to import: {info['type']}: {info['message']}{where}{hint}"


def apply_limits(args: argparse.Namespace) -> None:
    """Lower this process's resource limits (never raised again: hard and soft limits are both set)."""
    mb = 1024 * 1024
    limits = [(resource.RLIMIT_CORE, 0)]
    if args.address_space_mb:
        limits.append((resource.RLIMIT_AS, args.address_space_mb * mb))
    if args.data_mb:
        limits.append((resource.RLIMIT_DATA, args.data_mb * mb))
    if args.cpu_seconds:
        limits.append((resource.RLIMIT_CPU, args.cpu_seconds))
    if args.file_mb:
        limits.append((resource.RLIMIT_FSIZE, args.file_mb * mb))
    if args.nproc:
        limits.append((resource.RLIMIT_NPROC, args.nproc))
    for which, value in limits:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m autograder.worker", description="Autograder worker (untrusted).")
    parser.add_argument("--request-fd", type=int, required=True, help="pipe to read requests from")
    parser.add_argument("--reply-fd", type=int, required=True, help="pipe to write replies to")
    parser.add_argument("--address-space-mb", type=int, default=0, help="RLIMIT_AS in MB (0: unchanged)")
    parser.add_argument("--data-mb", type=int, default=0, help="RLIMIT_DATA in MB (0: unchanged)")
    parser.add_argument("--cpu-seconds", type=int, default=0, help="RLIMIT_CPU (0: unchanged)")
    parser.add_argument("--file-mb", type=int, default=0, help="RLIMIT_FSIZE in MB (0: unchanged)")
    parser.add_argument("--nproc", type=int, default=0, help="RLIMIT_NPROC (0: unchanged)")
    return parser.parse_args(argv)


def serve(request_fd: int, reply_fd: int) -> int:
    init = read_message(request_fd)
    if not isinstance(init, dict) or not isinstance(init.get("package_dir"), str):
        raise ProtocolError("invalid init message")
    sys.dont_write_bytecode = True
    from . import probes
    from .probes.registry import PROBES

    del probes
    package_dir = Path(init["package_dir"]).resolve()
    sub = Submission(package_dir, init.get("blocked") or {})
    write_message(reply_fd, {"event": "importing", "module": "__init__"})
    sub.load_package()
    for name in init.get("modules") or []:
        write_message(reply_fd, {"event": "importing", "module": name})
        sub.import_module(name)
        _flush()
    write_message(reply_fd, {"event": "ready", "import_errors": dict(sub.errors)})
    gc.collect()
    gc.freeze()  # TensorFlow's and the submission's objects: the collections after each probe skip them

    while True:
        try:
            request = read_message(request_fd)
        except ChannelClosed:
            return 0
        name = request.get("probe") if isinstance(request, dict) else None
        fn = PROBES.get(name) if isinstance(name, str) else None
        if fn is None or not isinstance(request.get("kwargs"), dict):
            error = {"type": "ProtocolError", "message": f"unknown probe {name!r}", "where": None}
            write_message(reply_fd, {"ok": False, "error": error})
            continue
        try:
            reply = {"ok": True, "value": fn(sub, **request["kwargs"])}
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything, even SystemExit
            reply = {"ok": False, "error": describe(exc, package_dir)}
        _flush()
        try:
            write_message(reply_fd, reply)
        except ProtocolError as exc:
            write_message(reply_fd, {"ok": False, "error": {
                "type": "ProtocolError", "message": f"the probe's result cannot be sent back: {exc}", "where": None}})
        del reply
        gc.collect()  # a probe's models and traced graphs hold reference cycles: free them before the next probe


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the student may have replaced or closed the streams
            pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_limits(args)
    faulthandler.enable()
    os.umask(0o077)
    try:
        return serve(args.request_fd, args.reply_fd)
    except ChannelClosed:
        return 0


if __name__ == "__main__":
    sys.exit(main())
