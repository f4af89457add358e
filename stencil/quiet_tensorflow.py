"""Keep TensorFlow's start-up banner off the console (given; the package imports it before anything else).

Importing TensorFlow 2.21 loads two libraries (libtensorflow_framework and the profiler plugin) that each log while
they load, before absl's logging is initialised and so whatever TF_CPP_MIN_LOG_LEVEL says:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796159359.716396    3144 port.cc:153] oneDNN custom operations are on. You may see ...

Importing this module sets TF_CPP_MIN_LOG_LEVEL to 2 unless it is set and installs a meta path finder that runs the
first import of `tensorflow` with file descriptor 2 going through a small filter process. The filter passes every
other line on as it comes (also when the import crashes) and drops that notice and the log records below
TF_CPP_MIN_LOG_LEVEL (0 keeps everything).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.machinery import ModuleSpec
    from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's log records below errors stay off the console

_STDERR_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
level = int(sys.argv[1])
notice = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
record = re.compile(rb"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
def keep(line):
    found = record.match(line)
    return line.rstrip(b"\r") != notice and (found is None or "IWEF".index(found.group(1).decode()) >= level)
def write(data):
    while data:
        data = data[os.write(1, data):]
pending = b""
try:
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        write(b"".join(line + b"\n" for line in lines if keep(line)))
    if pending and keep(pending):
        write(pending)
except OSError:
    pass
"""


def _min_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _run_with_stderr_filtered(run: Callable[[], Any]) -> Any:
    """`run()` with file descriptor 2 going through the filter process; plainly when the filter cannot start."""
    level = _min_log_level()
    if level < 1 or not sys.executable:
        return run()
    import subprocess

    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        return run()
    try:
        read_end, write_end = os.pipe()
    except OSError:
        os.close(saved)
        return run()
    try:
        command = [sys.executable, "-I", "-S", "-c", _STDERR_FILTER, str(level)]
        child = subprocess.Popen(command, stdin=read_end, stdout=saved, stderr=saved)
    except (OSError, ValueError, subprocess.SubprocessError):
        for fd in (read_end, write_end, saved):
            os.close(fd)
        return run()
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        return run()
    finally:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the filter's input: it writes what is left and exits
        os.close(saved)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # something started during the import still holds the pipe; the filter goes on passing lines


class _QuietTensorFlowImport:
    """Meta path finder that runs the first import of `tensorflow` with standard error filtered."""

    quiets_tensorflow_start_up = True

    def __init__(self) -> None:
        self.used = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if name != "tensorflow" or self.used:
            return None
        self.used = True
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader:
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = module.__loader__ = self.loader  # the module keeps its own loader
        _run_with_stderr_filtered(lambda: self.loader.exec_module(module))


if "tensorflow" not in sys.modules and not any(getattr(f, "quiets_tensorflow_start_up", False) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietTensorFlowImport())
