"""Adversarial submissions: the reference solution with hostile code added, to be graded as whole runs.

Every one must still give a valid results.json with the right score, no hidden value in any output and a clear
message. Most attacks sit in samplers.py, either at import time (every samplers test then fails while the other
parts keep their points) or inside `top_k_filter` (only the two top-k tests call it). `{shared}` in the code is
replaced by a directory the grading user can write to, where attacks that start processes record their ids so that
the test can check (and clean up) what survived.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autograder.qa.mutants import REFERENCE_DIR, Edit, write_submission

GREEDY = "greedy and sample(temperature=0)"
TOP_K = "top_k_filter keeps"
TOP_K_LAW = "sample with top_k follows"
TEMPERATURE_LAW = "sample with temperature follows"
TOP_P_LAW = "sample with top_p follows"
SEED = "sample is reproducible"
GENERATE = "generate returns prompt"
RESTART = "generate restarts the cache"
IDS_DTYPE = "greedy and sample return int32 ids"
TOP_K_TOP_P_LAW = "sample with top_k and top_p"
COMPILED = "compiled_sampler"
AUDIT = "from-scratch audit"

PARTS = ("preprocess", "samplers")
"""Parts graded for every adversary (preprocess shows that the other modules keep their points)."""


@dataclass(frozen=True)
class Adversary:
    """A hostile submission and what grading it must give.

    Attributes:
        id: short unique identifier.
        description: one line.
        prelude: code inserted at the top of samplers.py (after `from __future__`), run at import time.
        edits: functions replaced (source may use `{shared}`).
        delete: modules removed from the submission.
        broken_source: replaces samplers.py entirely (e.g. with a syntax error).
        fails: starts of the names of the tests that must fail ("samplers" alone: every samplers test); every other
            test of the graded parts must pass.
        message: a regular expression the output of the first failing test must match.
        parts: graded parts.
        needs_drop: the property only holds with the privilege drop (judge as root, worker as another user).
    """

    id: str
    description: str
    prelude: str = ""
    edits: tuple[Edit, ...] = ()
    delete: tuple[str, ...] = ()
    broken_source: str | None = None
    fails: tuple[str, ...] = ()
    message: str = ""
    parts: tuple[str, ...] = PARTS
    needs_drop: bool = False

    def write(self, directory: Path, shared: Path) -> Path:
        """Write the submission into `directory` (created) and return it."""
        edits = tuple(Edit(e.module, e.target, e.patch, None if e.replacement is None else
                           e.replacement.replace("{shared}", str(shared))) for e in self.edits)
        write_submission(edits, directory, REFERENCE_DIR)
        path = directory / "samplers.py"
        if self.prelude:
            source = path.read_text(encoding="utf-8")
            marker = "from __future__ import annotations\n"
            head, _, tail = source.partition(marker) if marker in source else ("", "", source)
            prelude = self.prelude.replace("{shared}", str(shared)).strip("\n") + "\n"
            path.write_text(head + marker + prelude + tail, encoding="utf-8")
        if self.broken_source is not None:
            path.write_text(self.broken_source, encoding="utf-8")
        for module in self.delete:
            (directory / f"{module}.py").unlink()
        return directory


def _in_top_k(body: str) -> Edit:
    """top_k_filter that runs `body` once per grading run (a marker file in the worker's home), after its argument
    checks, then filters as the reference: only the first test that calls it (the top-k kept-set test) fails, and a
    restarted worker does not attack again."""
    lines = "\n".join("        " + line for line in body.strip("\n").splitlines())
    return Edit("samplers", "top_k_filter", replacement=f'''
def top_k_filter(logits, k):
    import os
    logits = _check_logits(logits)
    _check_k(k)
    marker = os.path.join(os.path.expanduser("~"), "attacked")
    if not os.path.exists(marker):
        open(marker, "w").close()
{lines}
    k = tf.minimum(int(k), tf.shape(logits)[-1])
    kth_largest = tf.math.top_k(logits, k=k).values[:, -1:]
    return tf.where(logits >= kth_largest, logits, -np.inf)
''')


_FIND_SECRETS = '''
import os as _os


def _hidden_files():
    """Fixture files and hidden test sources anywhere this process can read them."""
    found = []
    roots = ["/autograder", "/tmp", "/root", "/home", _os.getcwd(), _os.path.dirname(__file__)]
    for root in roots:
        for dirpath, dirnames, filenames in _os.walk(root):
            if dirpath.count(_os.sep) - root.count(_os.sep) >= 5:
                dirnames[:] = []
            for name in filenames:
                path = _os.path.join(dirpath, name)
                if name in ("fixtures.json", "fixtures.npz") or (name.endswith(".py") and "hidden" in dirpath):
                    try:
                        with open(path, "rb") as f:
                            found.append((path, f.read(3000)))
                    except OSError:
                        pass
            if len(found) > 20:
                return found
    return found


_SECRETS = _hidden_files()
for _path, _data in _SECRETS:
    print("LEAK", _path, _data.decode("utf-8", "replace"))
print(f"looked for hidden files: {len(_SECRETS)} readable")
'''

_DAEMON = '''
def _escape():
    """Double fork into a new session (out of the worker's process group), then keep overwriting results.json."""
    import json
    import os
    import time

    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    try:
        with open(os.path.join("{shared}", f"daemon-{os.getpid()}.pid"), "w") as f:
            f.write(str(os.getpid()))
        deadline = time.time() + 25
        while time.time() < deadline:
            for root in ("/autograder/results", "/tmp"):
                for dirpath, dirnames, filenames in os.walk(root):
                    if dirpath.count(os.sep) - root.count(os.sep) >= 6:
                        dirnames[:] = []
                    if "results.json" in filenames:
                        try:
                            with open(os.path.join(dirpath, "results.json"), "w") as f:
                                json.dump({"score": 1000, "output": "hacked", "tests": []}, f)
                        except OSError:
                            pass
            time.sleep(0.2)
    finally:
        os._exit(0)


_escape()
'''

_FORK = '''
import os
import time

for _ in range(30):
    pid = os.fork()
    if pid == 0:
        try:
            with open(os.path.join("{shared}", f"child-{os.getpid()}.pid"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(20)
        finally:
            os._exit(0)
'''

_RESULTS_VANDAL = '''
import os as _os

for _root in ("/autograder/results", "/tmp"):
    for _dirpath, _dirnames, _filenames in _os.walk(_root):
        if _dirpath.count(_os.sep) - _root.count(_os.sep) >= 6:
            _dirnames[:] = []
        if "results.json" in _filenames:
            try:
                _os.remove(_os.path.join(_dirpath, "results.json"))
            except OSError:
                pass
for _path in ("/autograder/results/results.json", "results.json", "../results.json"):
    try:
        with open(_path, "w") as _f:
            _f.write('{"score": 1000, "tests": []}')
    except OSError:
        pass
'''

_MONKEYPATCH = '''
import numpy as _np
import tensorflow as _tf

_np.array_equal = lambda *args, **kwargs: True
_np.allclose = lambda *args, **kwargs: True
_np.isclose = lambda a, b, *args, **kwargs: _np.ones_like(_np.asarray(a), dtype=bool)
_tf.random.stateless_categorical = lambda logits, num_samples, seed, dtype=_tf.int64, name=None: _tf.zeros(
    [_tf.shape(logits)[0], num_samples], dtype)
'''

ADVERSARIES = [
    Adversary("sys-exit-at-import", "samplers.py calls sys.exit(0) when imported",
              prelude="import sys\nsys.exit(0)", fails=("samplers",), message=r"sys\.exit\(0\)"),
    Adversary("os-exit-at-import", "samplers.py calls os._exit(0) when imported, killing the worker",
              prelude="import os\nos._exit(0)", fails=("samplers",),
              message=r"samplers\.py could not be imported: the worker exited with status 0"),
    Adversary("sys-exit-in-probe", "top_k_filter calls sys.exit(0)",
              edits=(_in_top_k("import sys\nsys.exit(0)"),), fails=(TOP_K,), message=r"sys\.exit\(0\)"),
    Adversary("os-exit-in-probe", "top_k_filter calls os._exit(0), killing the worker mid-test",
              edits=(_in_top_k("import os\nos._exit(0)"),), fails=(TOP_K,),
              message=r"exited with status 0"),
    Adversary("infinite-loop", "top_k_filter never returns",
              edits=(_in_top_k("while True:\n    pass"),), fails=(TOP_K,),
              message=r"did not finish within"),
    Adversary("allocate-10gb", "top_k_filter allocates and touches 10 GB",
              edits=(_in_top_k("big = np.ones(10 * 2**30 // 8)\nbig += 1"),), fails=(TOP_K,),
              message=r"MemoryError|memory"),
    Adversary("fork-30-children", "samplers.py forks 30 sleeping children at import (bounded), then works",
              prelude=_FORK),
    Adversary("escaped-daemon", "samplers.py double-forks a daemon in a new session that overwrites results.json",
              prelude=_DAEMON, needs_drop=True),
    Adversary("print-100mb", "top_k_filter prints 100 MB (in 1 MB pieces)",
              edits=(_in_top_k('import sys\nfor _ in range(100):\n    print("x" * 1_000_000, flush=True)'),),
              fails=(TOP_K,), message=r"File too large|SIGXFSZ|larger than"),
    Adversary("keyboard-interrupt", "top_k_filter raises KeyboardInterrupt",
              edits=(_in_top_k("raise KeyboardInterrupt"),), fails=(TOP_K,), message=r"KeyboardInterrupt"),
    Adversary("print-hidden-files", "samplers.py searches for fixtures and hidden tests, prints them, and fails greedy",
              prelude=_FIND_SECRETS,
              edits=(Edit("samplers", "greedy", replacement='''
                  def greedy(logits):
                      for path, data in _SECRETS:
                          print("LEAK", path, data.decode("utf-8", "replace"))
                      raise RuntimeError(f"printed {len(_SECRETS)} hidden files")
              '''),),
              fails=(GREEDY, IDS_DTYPE, GENERATE, RESTART), message=r"printed 0 hidden files", needs_drop=True),
    Adversary("vandalize-results", "samplers.py deletes and overwrites every results.json it can find at import",
              prelude=_RESULTS_VANDAL, needs_drop=True),
    Adversary("monkeypatch-numpy-tf", "samplers.py makes numpy comparisons always true and sampling always token 0",
              prelude=_MONKEYPATCH,
              fails=(TEMPERATURE_LAW, TOP_K_LAW, TOP_P_LAW, TOP_K_TOP_P_LAW, COMPILED, SEED, GENERATE, RESTART),
              message=r"do not follow|should have probability zero|identical tokens|new tokens|outside the kept set"),
    Adversary("syntax-error", "samplers.py does not parse",
              broken_source="def greedy(logits:\n    return 0\n", fails=("samplers",), message=r"SyntaxError"),
    Adversary("missing-module", "the submission has no samplers.py", delete=("samplers",), fails=("samplers",),
              message=r"no samplers\.py"),
    Adversary("forbidden-layer", "samplers.py imports keras.layers.MultiHeadAttention",
              prelude="from keras.layers import MultiHeadAttention  # noqa: F401", fails=(AUDIT,),
              message=r"MultiHeadAttention", parts=PARTS + ("audit",)),
    Adversary("optim-keras-adamw", "optim.py's AdamW hands its update to keras.optimizers.AdamW",
              edits=(Edit("optim", "AdamW.update_step", replacement='''
                  def update_step(self, gradient, variable, learning_rate):
                      return keras.optimizers.AdamW.update_step(self, gradient, variable, learning_rate)
              '''),), fails=(AUDIT,), message=r"optim\.py, line \d+: uses keras\.optimizers\.AdamW",
              parts=PARTS + ("audit",)),
]
