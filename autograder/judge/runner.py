"""Judge side of the worker: sandbox directory, process start with limits and privilege drop (to a user of
`autograder.judge.users`), calls with timeouts.

The sandbox (a fresh temporary directory) holds

    code/autograder/__init__.py, code/autograder/worker/**   copies of the worker's sources (nothing else)
    submission/                                              a copy of the submission (regular files only)
    home/                                                    the worker's HOME, TMPDIR and working directory
    logs/                                                    the worker's stdout and stderr, one pair per start

When the judge runs as root (Gradescope), the worker runs as an unprivileged user (`student` by default): code/ and
submission/ are root-owned and read-only for it, logs/ is unreadable, only home/ is writable, and everything the
judge keeps (autograder/ sources, fixtures, results) lives outside the sandbox with root-only permissions.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder import parts
from autograder.judge.registry import TestFailure
from autograder.judge.users import WorkerUser, sweep_user
from autograder.worker.protocol import Channel, ChannelClosed, ChannelTimeout, ProtocolError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The autograder package, whose worker/ folder is copied into the sandbox."""
MODULES = parts.MODULES
"""Submission modules imported when the worker starts (others are imported on demand)."""
IMPORT_TIMEOUT = 120.0
"""Seconds one module may take to import (TensorFlow's first import included) before it is blocked."""
MAX_SUBMISSION_BYTES = 200 * 1024 * 1024
OUTPUT_SHOWN = 1500

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

KERNEL_ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": "0"}
"""Environment that fixes TensorFlow's CPU kernels (its oneDNN default depends on the CPU), for the worker and for the
fixtures builder, so that graded values and expected values come from the same kernels on any host."""


@dataclass
class Limits:
    """Resource limits of the worker. memory_mb is enforced on its private memory by a watchdog thread.

    Gradescope's default container has 768 MB for everything. The judge (numpy and the fixtures; no scipy) stays near
    40 MB resident. The worker's resident set is TensorFlow's mapped library pages (about 360 MB, clean and shared,
    which the kernel drops under pressure and whose count varies with the kernel and the CPU) plus its private memory
    (anonymous pages: about 220 MB once TensorFlow is imported, 275 MB at the peak of the reference's probes, the
    worker collecting each probe's garbage before the next). The watchdog stops the worker when its private memory
    passes 400 MB, so judge and worker keep 768 - 60 - 400, about 300 MB, for the library pages in use. RLIMIT_DATA
    makes a huge allocation fail at once with MemoryError; RLIMIT_AS stays off by default because TensorFlow reserves
    much more address space than it uses.
    """

    memory_mb: int = 400
    data_mb: int = 1536
    address_space_mb: int = 0
    cpu_seconds: int = 900
    file_mb: int = 64
    nproc: int = 512


class WorkerFailure(TestFailure):
    """The worker crashed, hung, ran out of memory or broke the protocol during a call (it is restarted)."""


class WorkerStartError(WorkerFailure):
    """The worker could not be started at all (an environment problem, not the submission's fault)."""


# ---------------------------------------------------------------------------------------------------- sandbox
def _copy_tree(src: Path, dst: Path, budget: list[int], skip_pycache: bool = True) -> None:
    """Copy regular files and directories only (never following symlinks) within a byte budget."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.is_symlink() or (skip_pycache and entry.name in ("__pycache__", "__MACOSX")):
            continue
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(Path(entry.path), dst / entry.name, budget, skip_pycache)
        elif entry.is_file(follow_symlinks=False):
            size = entry.stat(follow_symlinks=False).st_size
            budget[0] -= size
            if budget[0] < 0:
                raise ValueError(f"the submission is larger than {MAX_SUBMISSION_BYTES // (1024 * 1024)} MB")
            shutil.copyfile(entry.path, dst / entry.name)


def find_package_dir(submission_dir: Path) -> Path | None:
    """The directory holding the submission's modules: `submission_dir` itself when it has .py files, else its only
    subdirectory with .py files (a zip of the folder), else None."""
    def has_modules(d: Path) -> bool:
        return any(p.suffix == ".py" and p.is_file() and not p.is_symlink() for p in d.iterdir())

    if has_modules(submission_dir):
        return submission_dir
    candidates = [d for d in sorted(submission_dir.iterdir()) if d.is_dir() and not d.is_symlink()
                  and not d.name.startswith((".", "__MACOSX")) and has_modules(d)]
    return candidates[0] if len(candidates) == 1 else None


class Sandbox:
    """The worker's directory tree (see the module docstring); `close()` removes it."""

    def __init__(self, package_dir: Path, user: WorkerUser | None):
        self.user = user
        self.root = Path(tempfile.mkdtemp(prefix="lm-grade-"))
        self.code = self.root / "code"
        self.submission = self.root / "submission"
        self.home = self.root / "home"
        self.logs = self.root / "logs"
        worker_src = PACKAGE_ROOT / "worker"
        (self.code / "autograder").mkdir(parents=True)
        (self.code / "autograder" / "__init__.py").write_text('"""Autograder (worker side only)."""\n')
        _copy_tree(worker_src, self.code / "autograder" / "worker", [1 << 30])
        _copy_tree(package_dir, self.submission, [MAX_SUBMISSION_BYTES])
        (self.home / "tmp").mkdir(parents=True)
        self.logs.mkdir()
        os.chmod(self.root, 0o755)
        os.chmod(self.logs, 0o700)
        for top in (self.code, self.submission):
            for dirpath, _, filenames in os.walk(top):
                os.chmod(dirpath, 0o755)
                for f in filenames:
                    os.chmod(os.path.join(dirpath, f), 0o644)
        os.chmod(self.home, 0o700)
        if user is not None:
            for path in (self.home, self.home / "tmp"):
                os.chown(path, user.uid, user.gid)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- worker
def _memory_mb(pid: int) -> tuple[float, float]:
    """(private memory, resident set) of a process in MB, from /proc/PID/status.

    Private memory is the anonymous and shared-memory part of the resident set (RssAnon + RssShmem): what an allocation
    grows. The rest of the resident set is pages of mapped files, mostly TensorFlow's 790 MB library; how many of them
    are resident depends on the kernel and the CPU, and they are clean pages the kernel can drop under pressure.
    Kernels older than 4.5 have no RssAnon; there the whole resident set counts.
    """
    fields: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "RssAnon", "RssShmem"):
                    fields[name] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = fields.get("VmRSS", 0.0)
    if "RssAnon" not in fields:
        return rss, rss
    return fields["RssAnon"] + fields.get("RssShmem", 0.0), rss


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Worker:
    """One worker process at a time; restarted on demand after a crash, a timeout or running out of memory."""

    def __init__(self, sandbox: Sandbox, limits: Limits, python: str | None = None,
                 modules: Sequence[str] = MODULES):
        self.sandbox = sandbox
        self.modules = tuple(modules)
        self.limits = limits
        self.python = python or sys.executable
        self.blocked: dict[str, str] = {}
        self.import_errors: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        self.channel: Channel | None = None
        self.starts = 0
        self.peak_private_mb = 0.0
        self.peak_rss_mb = 0.0
        self.stdout_path: Path | None = None
        self.stderr_path: Path | None = None
        self._offsets = (0, 0)
        self._killed_for: str | None = None
        self._watchdog: threading.Thread | None = None
        self._start_failures = 0

    # -------------------------------------------------------------------------------- process control
    def _environment(self) -> dict[str, str]:
        import site

        paths = [str(self.sandbox.code)] + [p for p in site.getsitepackages() if os.path.isdir(p)]
        user_site = site.getusersitepackages()
        if isinstance(user_site, str) and os.path.isdir(user_site):
            paths.append(user_site)
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.sandbox.home),
            "TMPDIR": str(self.sandbox.home / "tmp"),
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONIOENCODING": "utf-8",
            "LANG": "C.UTF-8",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **KERNEL_ENVIRONMENT,
            "KERAS_BACKEND": "tensorflow",
            "CUDA_VISIBLE_DEVICES": "-1",
            "OMP_NUM_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
            "TF_NUM_INTRAOP_THREADS": "2",
            "MPLBACKEND": "Agg",
        }

    def _spawn(self) -> None:
        self.starts += 1
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self.stdout_path = self.sandbox.logs / f"stdout-{self.starts}.txt"
        self.stderr_path = self.sandbox.logs / f"stderr-{self.starts}.txt"
        user = self.sandbox.user
        limits = self.limits
        command = [self.python, "-B", "-m", "autograder.worker", "--request-fd", str(request_read),
                   "--reply-fd", str(reply_write), "--cpu-seconds", str(limits.cpu_seconds),
                   "--file-mb", str(limits.file_mb), "--data-mb", str(limits.data_mb),
                   "--address-space-mb", str(limits.address_space_mb)]
        if user is not None and user.dedicated:
            command += ["--nproc", str(limits.nproc)]
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs = {"user": user.uid, "group": user.gid, "extra_groups": []}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            try:
                self.process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.sandbox.home,
                    env=self._environment(), pass_fds=(request_read, reply_write), start_new_session=True,
                    close_fds=True, **kwargs,
                )
            except OSError as exc:
                os.close(request_write)
                os.close(reply_read)
                self._start_failures += 1
                who = f" as user {user.name}" if user else ""
                raise WorkerStartError(f"the worker could not be started{who}: {exc}") from None
            finally:
                os.close(request_read)
                os.close(reply_write)
        self.channel = Channel(reply_read, request_write)
        self._offsets = (0, 0)
        self._killed_for = None
        self._watchdog = threading.Thread(target=self._watch, args=(self.process,), daemon=True)
        self._watchdog.start()

    def _watch(self, process: subprocess.Popen) -> None:
        while process.poll() is None:
            private, rss = _memory_mb(process.pid)
            self.peak_private_mb = max(self.peak_private_mb, private)
            self.peak_rss_mb = max(self.peak_rss_mb, rss)
            if private > self.limits.memory_mb:
                self._killed_for = f"it used more than {self.limits.memory_mb} MB of private memory"
                self._kill(process)
                return
            time.sleep(0.05)

    def _kill(self, process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.kill()
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Stop the current worker process (if any) and everything it started."""
        if self.process is not None:
            self._kill(self.process)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            sweep_user(self.sandbox.user, self.python)
        if self.channel is not None:
            self.channel.close()
        self.process = None
        self.channel = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _death(self, what: str) -> str:
        """Why the worker is gone, in words, with the tail of its stderr."""
        code = None
        if self.process is not None:
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._killed_for:
            why = f"the worker was stopped while {what}: {self._killed_for}"
        elif code is not None and code < 0:
            extra = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": f" (output or files larger than "
                     f"{self.limits.file_mb} MB)", "SIGSEGV": " (the interpreter crashed)"}.get(_signal_name(code), "")
            why = f"the worker was killed by {_signal_name(code)}{extra} while {what}"
        elif code is not None:
            why = f"the worker exited with status {code} while {what} (sys.exit or os._exit in your code?)"
        else:
            why = f"the worker stopped answering while {what}"
        return why

    # -------------------------------------------------------------------------------- start-up
    def ensure_started(self) -> None:
        """Start a worker if none is running, blocking modules that kill it while importing."""
        if self.alive and self.channel is not None:
            return
        self.stop()
        if self._start_failures >= 2:
            raise WorkerStartError("the worker cannot be started (see the autograder output); the test was not run")
        for _ in range(len(self.modules) + 2):
            self._spawn()
            current = None
            try:
                self.channel.send({"package_dir": str(self.sandbox.submission), "modules": list(self.modules),
                                   "blocked": self.blocked}, timeout=IMPORT_TIMEOUT)
                while True:
                    message = self.channel.receive(IMPORT_TIMEOUT)
                    if not isinstance(message, dict):
                        raise ProtocolError("unexpected start-up message")
                    if message.get("event") == "importing" and isinstance(message.get("module"), str):
                        current = message["module"]
                        continue
                    if message.get("event") == "ready" and isinstance(message.get("import_errors"), dict):
                        self.import_errors = {str(k): str(v) for k, v in message["import_errors"].items()}
                        self._start_failures = 0
                        return
                    raise ProtocolError("unexpected start-up message")
            except (ChannelClosed, ChannelTimeout, ProtocolError) as exc:
                if isinstance(exc, ChannelTimeout):
                    self._killed_for = f"it took more than {IMPORT_TIMEOUT:.0f} s"
                self._kill(self.process)
                filename = "__init__.py" if current == "__init__" else f"{current}.py"
                why = self._death(f"importing {filename}" if current else "starting")
                self.stop()
                if current is None or current in self.blocked:
                    self._start_failures += 1
                    tail = self.stderr_tail()
                    raise WorkerStartError(f"{why}.{' Its last output: ' + tail if tail else ''}") from None
                self.blocked[current] = f"{filename} could not be imported: {why}"
        raise WorkerStartError("the worker could not be started")

    # -------------------------------------------------------------------------------- calls
    def call(self, probe: str, kwargs: dict, timeout: float) -> Any:
        """Run one probe; returns its value or raises TestFailure (error reply) / WorkerFailure."""
        self.ensure_started()
        what = f"running the probe '{probe}'"
        try:
            self.channel.send({"probe": probe, "kwargs": kwargs}, timeout=timeout)
            reply = self.channel.receive(timeout)
        except ChannelTimeout:
            self._killed_for = f"it did not finish within {timeout:g} s (an infinite loop, or much too slow?)"
            self._kill(self.process)
            why = self._death(what)
            self.stop()
            raise WorkerFailure(f"{why}. The worker was restarted for the next test.") from None
        except (ChannelClosed, ProtocolError) as exc:
            self._kill(self.process)
            why = self._death(what)
            if isinstance(exc, ProtocolError) and not isinstance(exc, ChannelClosed):
                why += f" (invalid reply: {exc})"
            self.stop()
            raise WorkerFailure(f"{why}. The worker was restarted for the next test.") from None
        if not isinstance(reply, dict) or "ok" not in reply:
            self.stop()
            raise WorkerFailure("the worker sent an invalid reply; it was restarted for the next test.")
        if reply["ok"] is True and "value" in reply:
            return reply["value"]
        error = reply.get("error")
        if not isinstance(error, dict):
            raise WorkerFailure("the worker sent an invalid error reply.")
        kind, message, where = (str(error.get(k)) if error.get(k) is not None else "" for k in
                                ("type", "message", "where"))
        if kind == "ModuleImportFailed":
            raise TestFailure(message)
        location = f" (at {where})" if where else ""
        message = _ANSI_ESCAPE.sub("", message)  # Keras highlights the inner message with terminal colours
        raise TestFailure(f"your code raised {kind}: {message}{location}")

    # -------------------------------------------------------------------------------- captured output
    def mark_output(self) -> None:
        """Remember the current size of the captured output (the start of a test)."""
        self._offsets = (self._size(self.stdout_path), self._size(self.stderr_path))

    @staticmethod
    def _size(path: Path | None) -> int:
        try:
            return path.stat().st_size if path else 0
        except OSError:
            return 0

    @staticmethod
    def _excerpt(path: Path | None, offset: int, limit: int = OUTPUT_SHOWN) -> str:
        if path is None:
            return ""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(limit + 1)
                total = os.fstat(f.fileno()).st_size - offset
        except OSError:
            return ""
        text = data[:limit].decode("utf-8", errors="replace")
        if total > limit:
            text += f"\n... [{total - limit} more bytes not shown]"
        return text

    def output_since_mark(self) -> tuple[str, str]:
        """(stdout, stderr) printed since `mark_output`, truncated."""
        out = [self._excerpt(self.stdout_path, self._offsets[0]), self._excerpt(self.stderr_path, self._offsets[1])]
        for i, path in enumerate((self.stdout_path, self.stderr_path)):
            if self._size(path) >= self.limits.file_mb * 1024 * 1024:
                out[i] += (f"\n[output limit of {self.limits.file_mb} MB reached: further writes fail with OSError "
                           "'File too large'; print less]")
        return out[0], out[1]

    def stderr_tail(self, limit: int = 600) -> str:
        size = self._size(self.stderr_path)
        return self._excerpt(self.stderr_path, max(0, size - limit), limit).strip()
