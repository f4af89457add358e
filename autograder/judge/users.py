"""The unprivileged users the worker runs as (judge side): looking them up, creating and removing them, checking that
one can run the grading interpreter, and holding one for a grading.

As root the judge starts the worker as a dedicated user: `student` on Gradescope (created by setup.sh with the options
of `create_user`), `lmkit-worker1` ... `lmkit-workerN` for the jobs of `grade-all` (created by `prepare_worker_user`).
The kit tests that grade as root create and remove their users with the same functions. Run as a normal user, the
worker runs as the judge's user and nothing here applies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class WorkerUser:
    uid: int
    gid: int
    name: str
    dedicated: bool
    """True when no other process runs as this user, so all of its processes may be killed."""


def lookup(name: str) -> WorkerUser | None:
    """The user `name`, or None when there is none. Every user but `nobody` counts as dedicated to the worker."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return WorkerUser(entry.pw_uid, entry.pw_gid, name, dedicated=name != "nobody")


def user_exists(name: str) -> bool:
    return lookup(name) is not None


def create_user(name: str) -> None:
    """Create `name` as a system user with no home and no login shell (needs root); RuntimeError when useradd fails."""
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                           "/usr/sbin/nologin", name], capture_output=True, text=True)
    if made.returncode != 0:
        raise RuntimeError(f"could not create the worker user {name}: {made.stderr.strip() or 'useradd failed'}")


def ensure_user(name: str) -> bool:
    """Create the user `name` when it does not exist (`create_user`); True when this call created it."""
    if user_exists(name):
        return False
    create_user(name)
    return True


def remove_user(name: str) -> None:
    """Remove the user `name` (userdel; nothing happens when there is no such user)."""
    subprocess.run(["userdel", name], capture_output=True, check=False)


def can_run(user: WorkerUser | str, python: str) -> bool:
    """Whether `user` (or the user of that name) can start the interpreter `python` and import numpy, with the groups
    and environment the worker gets (not when the interpreter lives in root's home, as pyenv's does)."""
    found = lookup(user) if isinstance(user, str) else user
    if found is None:
        return False
    try:
        return subprocess.run([python, "-c", "import numpy"], user=found.uid, group=found.gid, extra_groups=[],
                              cwd="/", env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                              timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def resolve_user(spec: str | None, python: str | None = None) -> WorkerUser | None:
    """The user the worker runs as: None (same user) unless the judge is root.

    spec: "auto" (root: the user `student` when it exists and can run the grading interpreter `python`, else no
    privilege drop), a user name (required to exist), or "" / "none" (no privilege drop).
    """
    if os.geteuid() != 0 or spec in ("", "none", None):
        return None
    name = "student" if spec == "auto" else spec
    user = lookup(name)
    if user is None:
        if spec == "auto":
            return None
        raise RuntimeError(f"the worker user {name!r} does not exist (create it in setup.sh)")
    if spec == "auto" and not can_run(user, python or sys.executable):
        return None
    return user


def prepare_worker_user(name: str, python: str | None = None,
                        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> str | None:
    """Create the worker user `name` when missing and check that it can run `python` (default: this interpreter);
    None when it is ready, else why not (one line)."""
    python = python or sys.executable
    try:
        if ensure_user(name):
            log(f"created the worker user {name} (system user, no home, no login shell)")
    except RuntimeError as exc:
        return str(exc)
    if not can_run(name, python):
        return (f"the worker user {name} cannot run {python}: install the requirements in a virtual "
                "environment outside root's home (see the README), or pass --worker-user none")
    return None


def sweep_user(user: WorkerUser | None, python: str | None = None) -> None:
    """Kill every process of the dedicated worker user (escaped children, fork bombs, a worker left behind by a judge
    that was killed). Only call it while holding the user (`hold_worker_user`)."""
    if user is None or not user.dedicated:
        return
    try:
        subprocess.run([python or sys.executable, "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"],
                       user=user.uid, group=user.gid, extra_groups=[], env={"PATH": "/usr/bin:/bin"},
                       cwd="/", check=False, timeout=30, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        pass


def _lock_directory() -> Path:
    """A directory only the judge's user can write, for the worker-user locks."""
    directory = Path(tempfile.gettempdir()) / f"lmkit-worker-locks-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeError(f"{directory} must be a directory of user {os.geteuid()} with mode 700")
    return directory


@contextlib.contextmanager
def hold_worker_user(user: WorkerUser | None, log: Callable[[str], None] = lambda line: None) -> Iterator[None]:
    """Hold `user` for one grading (an exclusive lock; a second grading with the same user waits for the first).

    After a crash a grading kills every process of its worker user, so two gradings that share a user would kill each
    other's workers. `grade-all --jobs N` gives each job its own user; this lock makes any other overlap safe. The
    user's leftover processes are swept once the lock is held.
    """
    if user is None or not user.dedicated:
        yield
        return
    fd = os.open(_lock_directory() / f"{user.name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another grading that uses the worker user {user.name} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        sweep_user(user)
        yield
    finally:
        os.close(fd)
