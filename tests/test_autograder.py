"""Kit tests of the autograder machinery: wire protocol, judge, worker isolation, audit, results.json, CLI and zip.

The reference solution is graded once on two parts (full marks expected). The isolation tests grade small fake
submissions whose preprocess.py needs only numpy (a correct `make_windows`, then one fault each), so the worker starts
in a fraction of a second and only the part "preprocess" runs.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from import_graph import import_cycle, import_graph

from autograder import judge
from autograder.judge import fixture_files
from autograder.judge.audit import audit_source
from autograder.judge.runner import Limits
from autograder.worker import protocol

ROOT = Path(__file__).resolve().parent.parent
SEED = 4321
WINDOWS = "preprocess: make_windows"
INVALID = "preprocess: preprocess rejects invalid input"

GOOD_WINDOWS = '''
import numpy as np


def make_windows(ids, context_length, stride=None):
    ids = np.asarray(ids, dtype=np.int32)
    stride = stride or context_length
    if len(ids) < context_length + 1:
        raise ValueError("ids: need at least context_length + 1 ids")
    starts = range(0, len(ids) - context_length, stride)
    return (np.stack([ids[s : s + context_length] for s in starts]),
            np.stack([ids[s + 1 : s + context_length + 1] for s in starts]))
'''


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory) -> Path:
    from autograder.recording.record import build_fixtures

    parts = ["preprocess", "samplers"]
    out = tmp_path_factory.mktemp("fixtures")
    fixture_files.save(build_fixtures(SEED, parts), out, SEED, parts)
    return out


def fake_submission(tmp_path: Path, preprocess: str, **other_files: str) -> Path:
    directory = tmp_path / "submission"
    directory.mkdir()
    (directory / "__init__.py").write_text("")
    (directory / "preprocess.py").write_text(preprocess)
    for name, text in other_files.items():
        (directory / name).write_text(text)
    return directory


def grade_preprocess(directory: Path, fixtures_dir: Path, **kwargs) -> dict:
    return judge.grade(directory, ["preprocess"], fixtures_dir=fixtures_dir, worker_user=None, **kwargs)


def result_of(results: dict, name_start: str) -> dict:
    matches = [t for t in results["tests"] if t["name"].startswith(name_start)]
    assert len(matches) == 1, name_start
    return matches[0]


# ---------------------------------------------------------------------------------------------------- protocol
def test_protocol_round_trip_of_plain_data_and_arrays() -> None:
    value = {"a": [1, 2.5, None, True, "é🙂"], "nan": float("nan"), "t": (1, 2),
             "arrays": [np.arange(6, dtype=np.int32).reshape(2, 3), np.array([True, False]),
                        np.float32(1.5), np.zeros((0, 4), np.float64), np.asfortranarray(np.ones((2, 3)))]}
    frame = protocol.encode(value)
    back = protocol.decode_payload(frame[protocol.PREFIX.size :])
    assert back["a"] == [1, 2.5, None, True, "é🙂"] and np.isnan(back["nan"]) and back["t"] == [1, 2]
    arrays = back["arrays"]
    assert arrays[0].dtype == np.int32 and arrays[0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert arrays[1].dtype == bool and arrays[2] == 1.5 and isinstance(arrays[2], float)
    assert arrays[3].shape == (0, 4) and arrays[4].shape == (2, 3)


@pytest.mark.parametrize("value", [np.array(["a", "b"]), np.array([object()], dtype=object), b"bytes", {1: 2},
                                   {"__array__": 0}, object()])
def test_protocol_refuses_what_it_cannot_carry_safely(value) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(value)


def test_protocol_never_unpickles_and_rejects_malformed_frames() -> None:
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    blob = pickled.getvalue()
    header = json.dumps({"body": {"__array__": 0}, "blobs": [len(blob)]}).encode()
    payload = struct.pack(">I", len(header)) + header + blob
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_payload(payload)
    with pytest.raises(protocol.ProtocolError):
        protocol.payload_length(b"XXXX" + bytes(8))
    with pytest.raises(protocol.ProtocolError):
        protocol.payload_length(protocol.PREFIX.pack(protocol.MAGIC, protocol.MAX_MESSAGE_BYTES + 1))
    header = json.dumps({"body": {"__array__": 3}, "blobs": []}).encode()
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_payload(struct.pack(">I", len(header)) + header)


def test_points_are_split_in_hundredths_that_add_up() -> None:
    for total, weights in ((15, [2, 1, 1.5, 0.5, 1, 1.5, 0.5, 1, 1]), (10, [1, 1, 1]), (25, [0.5, 1.5, 0.25])):
        split = judge.split_points(total, weights)
        assert round(sum(split), 2) == total and all(abs(round(s * 100) - s * 100) < 1e-9 for s in split)
        ideal = [total * w / sum(weights) for w in weights]
        assert max(abs(a - b) for a, b in zip(split, ideal, strict=True)) < 0.01


def test_points_are_the_courses() -> None:
    from autograder.course import load

    assert judge.load_points() == load("all").points  # the kit's own course
    assert sum(judge.load_points().values()) == 100
    assert judge.PART_ORDER[-1] == "audit"  # its points scale with the points earned before it


# ---------------------------------------------------------------------------------------------------- reference
def test_reference_gets_full_marks_and_results_follow_gradescope_schema(tmp_path: Path, fixtures_dir: Path) -> None:
    submission = tmp_path / "reference"
    submission.mkdir()
    for path in (ROOT / "assignment").glob("*.py"):
        shutil.copy(path, submission)
    results_path = tmp_path / "results.json"
    results = judge.grade(submission, ["preprocess", "samplers", "audit"], fixtures_dir=fixtures_dir,
                          results_path=results_path, worker_user=None)
    failed = [(t["name"], t["output"]) for t in results["tests"] if t["status"] != "passed"]
    assert not failed
    points = judge.load_points()
    maximum = points["preprocess"] + points["samplers"] + points["audit"]
    assert results["score"] == results["extra_data"]["max_score"] == maximum

    written = json.loads(results_path.read_text())
    assert written == json.loads(json.dumps(results))
    assert isinstance(written["output"], str) and isinstance(written["execution_time"], (int, float))
    assert "leaderboard" not in written  # the quality part is off
    numbers = [t["number"] for t in written["tests"]]
    assert len(set(numbers)) == len(numbers)
    for test in written["tests"]:
        assert set(test) >= {"name", "number", "score", "max_score", "status", "output", "visibility"}
        assert test["status"] in ("passed", "failed") and test["visibility"] in ("visible", "hidden",
                                                                                 "after_due_date", "after_published")
        assert 0 <= test["score"] <= test["max_score"]
    assert round(sum(t["score"] for t in written["tests"]), 2) == written["score"]
    assert written["extra_data"]["worker"]["starts"] == 1


def test_broken_reference_loses_exactly_the_windows_test(tmp_path: Path, fixtures_dir: Path) -> None:
    submission = tmp_path / "broken"
    submission.mkdir()
    for path in (ROOT / "assignment").glob("*.py"):
        shutil.copy(path, submission)
    with open(submission / "preprocess.py", "a") as f:
        f.write("\n\n_make_windows = make_windows\n\n\ndef make_windows(ids, context_length, stride=None):\n"
                "    inputs, _ = _make_windows(ids, context_length, stride)\n    return inputs, inputs.copy()\n")
    results = judge.grade(submission, ["preprocess", "audit"], fixtures_dir=fixtures_dir, worker_user=None)
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert [t["name"] for t in failed] == [result_of(results, WINDOWS)["name"]]
    assert "labels" in failed[0]["output"] and "shifted by one" in failed[0]["output"]
    # The audit found nothing forbidden: it passed, worth the fraction of points earned in the other parts.
    audit = results["tests"][-1]
    preprocess = results["extra_data"]["parts"]["preprocess"]
    fraction = preprocess["score"] / preprocess["max_score"]
    assert audit["tags"] == ["audit"] and audit["status"] == "passed" and "scaled" in audit["output"]
    # The judge scales by the unrounded fraction; the report's part scores are rounded to cents, so allow one cent.
    assert abs(audit["score"] - audit["max_score"] * fraction) <= 0.01 and audit["score"] < audit["max_score"]
    assert results["score"] == round(preprocess["score"] + audit["score"], 2)


# ---------------------------------------------------------------------------------------------------- isolation
def test_correct_fake_module_passes_and_missing_functions_fail_clearly(tmp_path: Path, fixtures_dir: Path) -> None:
    results = grade_preprocess(fake_submission(tmp_path, GOOD_WINDOWS), fixtures_dir)
    assert result_of(results, WINDOWS)["status"] == "passed"
    bpe = result_of(results, "preprocess: BPETokenizer.train")
    assert bpe["status"] == "failed" and "AttributeError" in bpe["output"] and "BPETokenizer" in bpe["output"]


def test_sys_exit_at_import_fails_that_module_only(tmp_path: Path, fixtures_dir: Path) -> None:
    results = grade_preprocess(fake_submission(tmp_path, GOOD_WINDOWS + "\nimport sys\nsys.exit(3)\n"), fixtures_dir)
    windows = result_of(results, WINDOWS)
    assert windows["status"] == "failed" and "sys.exit(3)" in windows["output"]
    assert "preprocess.py" in results["output"] and results["score"] == 0
    assert results["extra_data"]["worker"]["starts"] == 1  # SystemExit is caught: no restart needed


def test_os_exit_at_import_blocks_the_module_and_grading_goes_on(tmp_path: Path, fixtures_dir: Path) -> None:
    submission = fake_submission(tmp_path, GOOD_WINDOWS, **{"samplers.py": "import os\nos._exit(4)\n"})
    results = judge.grade(submission, ["preprocess", "samplers"], fixtures_dir=fixtures_dir, worker_user=None)
    assert result_of(results, WINDOWS)["status"] == "passed"  # preprocess is unaffected by the bad samplers.py
    assert results["extra_data"]["worker"]["blocked_modules"] == ["samplers"]
    assert "samplers.py could not be imported: the worker exited with status 4" in results["output"]
    assert all(t["status"] == "failed" for t in results["tests"] if t["name"].startswith("samplers:"))


def test_the_worker_imports_only_the_modules_the_graded_sections_see(tmp_path: Path, fixtures_dir: Path) -> None:
    """A course's submission has the modules of its parts only: a module no graded section sees is not imported."""
    submission = fake_submission(tmp_path, GOOD_WINDOWS, **{"rnn.py": "import os\nos._exit(4)\n"})
    results = grade_preprocess(submission, fixtures_dir)
    assert result_of(results, WINDOWS)["status"] == "passed"
    assert results["extra_data"]["worker"]["blocked_modules"] == [] and "rnn.py" not in results["output"]


def test_infinite_loop_times_out_and_the_worker_restarts(tmp_path: Path, fixtures_dir: Path) -> None:
    looping = GOOD_WINDOWS.replace("    stride = stride or context_length", "    while stride == 7:\n        pass\n"
                                   "    stride = stride or context_length")
    results = grade_preprocess(fake_submission(tmp_path, looping), fixtures_dir, timeout_scale=0.05)
    windows = result_of(results, WINDOWS)
    assert windows["status"] == "failed" and "did not finish within 1.5 s" in windows["output"]
    invalid = result_of(results, INVALID)  # the next test runs in a fresh worker and fails on its own merits
    assert invalid["status"] == "failed" and "BPETokenizer" in invalid["output"]
    assert results["extra_data"]["worker"]["starts"] == 2


def test_syntax_error_is_reported_with_its_line(tmp_path: Path, fixtures_dir: Path) -> None:
    source = GOOD_WINDOWS + "\ndef broken(:\n    pass\n"
    line = source.splitlines().index("def broken(:") + 1
    results = grade_preprocess(fake_submission(tmp_path, source), fixtures_dir)
    windows = result_of(results, WINDOWS)
    assert windows["status"] == "failed"
    assert "preprocess.py failed to import: SyntaxError" in windows["output"] and f"line {line}" in windows["output"]
    assert windows["output"].count(f"line {line}") == 1, windows["output"]  # the location once, not repeated


def test_megabytes_of_output_are_truncated(tmp_path: Path, fixtures_dir: Path) -> None:
    chatty = GOOD_WINDOWS.replace("    stride = stride or context_length",
                                  "    print('x' * 3_000_000)\n    stride = stride or context_length")
    chatty += "\n\nclass BPETokenizer:\n    @classmethod\n    def train(cls, text, vocab_size):\n" \
              "        print('y' * 2_000_000)\n        raise RuntimeError('not done')\n"
    results = grade_preprocess(fake_submission(tmp_path, chatty), fixtures_dir)
    assert result_of(results, WINDOWS)["status"] == "passed"
    bpe = result_of(results, "preprocess: BPETokenizer.train")
    assert "RuntimeError: not done" in bpe["output"] and "more bytes not shown" in bpe["output"]
    assert len(json.dumps(results)) < 100_000


def test_output_beyond_the_file_limit_fails_only_that_test(tmp_path: Path, fixtures_dir: Path) -> None:
    flood = GOOD_WINDOWS.replace("    stride = stride or context_length", "    if stride == 2:\n"
                                 "        print('z' * 3_000_000)\n    stride = stride or context_length")
    results = grade_preprocess(fake_submission(tmp_path, flood), fixtures_dir, limits=Limits(file_mb=1))
    windows = result_of(results, WINDOWS)
    assert windows["status"] == "failed" and "output limit of 1 MB reached" in windows["output"]


def test_interpreter_crash_costs_one_test(tmp_path: Path, fixtures_dir: Path) -> None:
    crashing = GOOD_WINDOWS.replace("    stride = stride or context_length",
                                    "    import ctypes\n    ctypes.string_at(0)\n    stride = stride or context_length")
    results = grade_preprocess(fake_submission(tmp_path, crashing), fixtures_dir)
    windows = result_of(results, WINDOWS)
    assert windows["status"] == "failed" and "SIGSEGV" in windows["output"]
    later = result_of(results, "preprocess: make_dataset without shuffle")  # runs in a fresh worker
    assert "AttributeError" in later["output"] and "make_dataset" in later["output"]


def test_memory_hog_is_stopped_by_the_watchdog(tmp_path: Path, fixtures_dir: Path) -> None:
    # 600 MB held for two seconds: under RLIMIT_DATA (1.5 GB), so only the watchdog on private memory can stop it.
    hog = GOOD_WINDOWS.replace("    stride = stride or context_length",
                               "    import time\n    hog = np.ones(75_000_000)\n    time.sleep(2)\n"
                               "    stride = stride or context_length")
    results = grade_preprocess(fake_submission(tmp_path, hog), fixtures_dir)
    windows = result_of(results, WINDOWS)
    assert windows["status"] == "failed"
    assert f"more than {Limits().memory_mb} MB of private memory" in windows["output"]
    later = result_of(results, "preprocess: make_dataset without shuffle")  # runs in a fresh worker
    assert "AttributeError" in later["output"] and "make_dataset" in later["output"]


def test_huge_allocation_fails_at_once_with_memory_error(tmp_path: Path, fixtures_dir: Path) -> None:
    hog = GOOD_WINDOWS.replace("    stride = stride or context_length",
                               "    hog = np.ones(250_000_000)\n    stride = stride or context_length")
    windows = result_of(grade_preprocess(fake_submission(tmp_path, hog), fixtures_dir), WINDOWS)
    assert windows["status"] == "failed" and "MemoryError" in windows["output"]


def test_submission_in_a_single_folder_is_found(tmp_path: Path, fixtures_dir: Path) -> None:
    inner = fake_submission(tmp_path, GOOD_WINDOWS)
    outer = tmp_path / "upload"
    outer.mkdir()
    shutil.move(inner, outer / "lm-assignment")
    (outer / "__MACOSX").mkdir()
    assert result_of(grade_preprocess(outer, fixtures_dir), WINDOWS)["status"] == "passed"


def test_no_python_files_scores_zero_with_a_message(tmp_path: Path, fixtures_dir: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    results = judge.grade(tmp_path, ["preprocess", "audit"], fixtures_dir=fixtures_dir, worker_user=None)
    assert results["score"] == 0 and "no Python modules found" in results["output"]
    assert all(t["status"] == "failed" for t in results["tests"])


# ---------------------------------------------------------------------------------------------------- audit
@pytest.mark.parametrize("source", [
    "import keras\nlayer = keras.layers.LSTM(8)\n",
    "import tensorflow as tf\ncell = tf.keras.layers.SimpleRNNCell(4)\n",
    "from tensorflow import keras\nkeras.layers.GRU(3)\n",
    "from keras import layers as L\nL.MultiHeadAttention(2, 4)\n",
    "from keras.layers import LSTMCell as Cell\n",
    "import keras\nlayers = keras.layers\nlayers.GRUCell(2)\n",
    "import keras\ngetattr(keras.layers, 'LSTM')(8)\n",
    "import keras_hub\nsampler = keras_hub.samplers.TopPSampler(0.9)\n",
    "from keras_nlp.samplers import TopKSampler\n",
    "import importlib\nimportlib.import_module('keras_hub.samplers')\n",
    "import keras\nkeras.layers.deserialize({'class_name': 'SimpleRNN', 'config': {'units': 3}})\n",
    "import nltk\n",
    "from nltk.lm import Lidstone as Smoothed\nmodel = Smoothed(0.1, 3)\n",
    "from nltk import lm\n",
    "import importlib\nlm = importlib.import_module('nltk.lm')\n",
    "import kenlm\n",
    "def adapt(layer, rank):\n    layer.enable_lora(rank, lora_alpha=2 * rank)\n",
    "def adapt(layer):\n    getattr(layer, 'enable_lora')(4)\n",
])
def test_audit_flags_forbidden_layers(source: str) -> None:
    findings = audit_source(source, "model.py")
    assert findings and all(f.path == "model.py" and f.line >= 1 for f in findings)


@pytest.mark.parametrize("source", [
    '"""Weights laid out as keras.layers.LSTMCell and keras.layers.MultiHeadAttention."""\nimport keras\n'
    "rnn = keras.layers.RNN(cell)\nx = keras.layers.Dense(3)\ny = keras.layers.LayerNormalization()\n",
    "class LSTMCell:\n    pass\n\n\ncell = LSTMCell()\nkind = 'lstm'\n",
    "import tensorflow as tf\nx = tf.keras.layers.Embedding(10, 4)\n",
    "print('counted without nltk')\n",
])
def test_audit_allows_own_classes_docstrings_and_allowed_layers(source: str) -> None:
    assert audit_source(source, "model.py") == []


@pytest.mark.parametrize("source", [
    "import keras\n\n\nclass AdamW(keras.optimizers.AdamW):\n    pass\n",
    "from keras.optimizers import Adam as Base\n",
    "import tensorflow as tf\nSchedule = tf.keras.optimizers.schedules.CosineDecay\n",
    "from keras.optimizers.schedules import CosineDecayRestarts\n",
    "import keras\noptimizer = keras.optimizers.get('adamw')\n",
    "import keras\nkeras.optimizers.deserialize({'class_name': 'AdamW', 'config': {}})\n",
    "import keras\ngetattr(keras.optimizers, 'Adam')\n",
    "import tensorflow as tf\ntf.raw_ops.ResourceApplyAdam(var=v, m=m, v=s)\n",
    "optimizer = eval('tf.keras.optimizers.AdamW(1e-3)')\n",
])
def test_audit_flags_library_adam_and_cosine_decay_in_optim_only(source: str) -> None:
    findings = audit_source(source, "stencil/optim.py")
    assert findings and all(f.path == "stencil/optim.py" and f.line >= 1 for f in findings)
    assert audit_source(source, "stencil/train.py") == []  # the rule is optim.py's own


def test_audit_allows_the_given_train_py_its_keras_adamw() -> None:
    source = (ROOT / "assignment" / "train.py").read_text()
    assert "keras.optimizers.AdamW(" in source  # make_optimizer, given code
    assert audit_source(source, "train.py") == []
    assert [f.what for f in audit_source(source, "optim.py")] == ["uses keras.optimizers.AdamW"]


def test_audit_test_fails_with_the_file_and_line(tmp_path: Path, fixtures_dir: Path) -> None:
    submission = fake_submission(tmp_path, GOOD_WINDOWS, **{"rnn.py": "import keras\n\n\nLAYER = keras.layers.LSTM\n"})
    results = judge.grade(submission, ["preprocess", "audit"], fixtures_dir=fixtures_dir, worker_user=None)
    audit = result_of(results, "audit:")
    assert audit["status"] == "failed" and audit["score"] == 0
    assert "rnn.py, line 4: uses keras.layers.LSTM" in audit["output"]


def test_reference_passes_the_audit() -> None:
    for path in sorted((ROOT / "assignment").glob("*.py")):
        assert audit_source(path.read_text(), path.name) == [], path.name


# ---------------------------------------------------------------------------------------------------- structure
def test_judge_imports_neither_tensorflow_nor_the_submission() -> None:
    # Nor scipy (about 26 MB resident with scipy.special alone, 70 MB with scipy.stats: Gradescope's memory is for
    # judge + worker); the hidden tests record what they need of it with the fixtures.
    code = ("import sys, autograder.judge, autograder.judge.hidden, autograder.judge.audit\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'assignment', 'submission')\n"
            "       or m.split('.')[0] == 'scipy']\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_worker_imports_only_worker_modules() -> None:
    worker = ROOT / "autograder" / "worker"
    for path in worker.rglob("*.py"):
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("autograder") or name.startswith("autograder.worker"), (path, name)


def test_trust_zones_import_only_down_the_trust_order() -> None:
    """judge/ never imports recording/ or qa/; recording/ never imports qa/ (the zip ships judge/ and recording/, not
    qa/)."""
    forbidden = {"autograder.judge": ("autograder.recording", "autograder.qa"),
                 "autograder.recording": ("autograder.qa",)}
    for module, targets in import_graph(ROOT / "autograder").items():
        for zone, banned in forbidden.items():
            if module == zone or module.startswith(zone + "."):
                bad = [t for t in targets if t.startswith(banned)]
                assert not bad, (module, bad)


@pytest.mark.parametrize("package", ["autograder", "assignment", "stencil"])
def test_no_import_cycle(package: str) -> None:
    """Imports in functions and in `__main__` blocks count: `python -m` runs a module as __main__, and a cycle through
    its block's imports runs it a second time under its own name."""
    cycle = import_cycle(import_graph(ROOT / package))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_import_graph_sees_imports_in_functions_and_main_blocks(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "part.py").write_text('if __name__ == "__main__":\n    from .command import main\n\n    main()\n')
    (package / "command.py").write_text("def main():\n    from . import loop\n")
    (package / "loop.py").write_text("from .part import f\n")
    graph = import_graph(package)
    assert graph["pkg.part"] == {"pkg.command"} and graph["pkg.command"] == {"pkg", "pkg.loop"}
    assert import_cycle(graph) == ["pkg.command", "pkg.loop", "pkg.part", "pkg.command"]


def test_cli_grade_and_grade_all_survive_a_crashing_submission(tmp_path: Path, fixtures_dir: Path) -> None:
    submissions = tmp_path / "all"
    submissions.mkdir()
    shutil.move(fake_submission(tmp_path, GOOD_WINDOWS), submissions / "alice")
    (submissions / "bob").mkdir()
    with zipfile.ZipFile(submissions / "carol.zip", "w") as zf:
        zf.writestr("preprocess.py", "import os\nos._exit(1)\n")
    (submissions / "dave.zip").write_bytes(b"not a zip")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / "scores.csv"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade-all", str(submissions), "--jobs", "2", "--csv",
                           str(out), "--parts", "preprocess", "--fixtures", str(fixtures_dir), "--results-dir",
                           str(tmp_path / "r"), "--worker-user", "none"], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 1, done.stderr  # some submissions could not be graded normally
    assert "bob" in done.stderr and "dave" in done.stderr and "alice" not in done.stderr.split("normally:")[-1]
    rows = {row["submission"]: row for row in csv.DictReader(out.open())}
    assert set(rows) == {"alice", "bob", "carol", "dave"}
    assert {name: row["status"] for name, row in rows.items()} == {
        "alice": "ok", "bob": "empty", "carol": "ok", "dave": "unreadable"}
    alice = json.loads((tmp_path / "r" / "alice.json").read_text())
    assert result_of(alice, WINDOWS)["status"] == "passed" and alice["score"] > 0
    assert float(rows["alice"]["preprocess"]) == round(alice["score"], 2)
    assert float(rows["alice"]["preprocess_max"]) == alice["extra_data"]["parts"]["preprocess"]["max_score"]
    assert rows["alice"]["failed_tests"] == "; ".join(t["name"] for t in alice["tests"] if t["status"] != "passed")
    assert float(rows["carol"]["score"]) == 0 and "preprocess: " in rows["carol"]["failed_tests"]
    for name in ("bob", "carol", "dave"):
        assert json.loads((tmp_path / "r" / f"{name}.json").read_text())["score"] == 0
    assert "could not be read" in rows["dave"]["message"] and "no Python modules" in rows["bob"]["message"]


def test_grade_exit_status_says_whether_the_submission_was_graded(tmp_path: Path, fixtures_dir: Path) -> None:
    """Exit 0 for a graded submission whatever its score; exit 1, results.json written, when it could not be graded:
    an internal error (here: no fixtures for a requested part) or no modules at all."""
    def run(submission: Path, *parts: str) -> tuple[int, dict]:
        results = tmp_path / f"{submission.name}-{'-'.join(parts)}.json"
        done = subprocess.run([sys.executable, "-m", "autograder", "grade", "--submission", str(submission),
                               "--results", str(results), "--fixtures", str(fixtures_dir), "--worker-user", "none",
                               "--quiet", "--parts", *parts], cwd=ROOT, capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        return done.returncode, json.loads(results.read_text())

    graded = fake_submission(tmp_path, "def make_windows(ids, context_length, stride=None):\n    return 1\n")
    code, results = run(graded, "preprocess")
    assert (code, results["extra_data"]["status"]) == (0, "ok") and results["score"] < 1
    code, results = run(graded, "rnn")
    assert (code, results["extra_data"]["status"]) == (1, "internal-error")
    assert "no fixtures for part 'rnn'" in results["tests"][0]["output"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, results = run(empty, "preprocess")
    assert (code, results["extra_data"]["status"], results["score"]) == (1, "empty", 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_a_worker_user_that_cannot_run_the_interpreter_is_a_worker_start_failure(tmp_path: Path,
                                                                                  fixtures_dir: Path) -> None:
    try:
        subprocess.run([sys.executable, "-c", "pass"], user="nobody", cwd="/", capture_output=True, check=True)
        pytest.skip("this interpreter can be run by an unprivileged user")
    except (OSError, subprocess.CalledProcessError):
        pass
    submission = fake_submission(tmp_path, GOOD_WINDOWS)
    results = judge.grade(submission, ["preprocess"], fixtures_dir=fixtures_dir, worker_user="nobody")
    assert results["extra_data"]["status"] == "worker-start-failed" and results["score"] == 0
    assert "could not be started as user nobody" in results["tests"][0]["output"]


def test_build_zip_holds_what_gradescope_runs(tmp_path: Path) -> None:
    out = tmp_path / "autograder.zip"
    subprocess.run([sys.executable, "-m", "autograder", "build", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        modes = {info.filename: (info.external_attr >> 16) & 0o777 for info in zf.infolist()}
        requirements = zf.read("requirements-gradescope.txt").decode()
    assert {"setup.sh", "run_autograder", "requirements-gradescope.txt", "autograder/course.json",
            "autograder/judge/__init__.py", "autograder/worker/__main__.py", "autograder/recording/record.py",
            "autograder/recording/edits.py", "autograder/recording/alternatives.py", "assignment/preprocess.py",
            "data/prepare.py"} <= names
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert not [n for n in names if n.startswith(("tests/", "stencil/", "dist/", "autograder/qa/"))
                or n in ("autograder/recording/package.py",) or n.endswith((".npz", ".pyc"))]
    assert all("==" in line for line in requirements.splitlines() if line and not line.startswith("#"))
