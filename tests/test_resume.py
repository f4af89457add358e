"""Exact resume of the training command line after Ctrl-C (SIGINT) and after kill -9 (SIGKILL), run as a user runs it.

`python -m assignment.trainer` trains a tiny rnn in a subprocess; one run goes straight to the end, another is
interrupted with SIGINT at a step drawn from a seeded RNG, resumed with the same command, killed with SIGKILL at a
later drawn step, and resumed again to the end. Progress is read from the command's own output lines (with
--log-every 1 it prints a plain line per step when its stdout is not a terminal). Every variable of the final
checkpoint and of the best checkpoint must be bit-identical to the straight run's, the data iterator must yield the
same next batches, and every printed step must show the same loss.

Where in a step an external signal lands depends on timing (right after a progress line, mostly in the short Python
code between two training steps). The in-process tests send SIGINT from inside the compiled training step itself,
the moment a Ctrl-C during a long step lands in, and check the checkpoint it saves.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from assignment import console, loop, train, trainer
from assignment.preprocess import CharTokenizer

ROOT = Path(__file__).resolve().parent.parent
STEPS = 120
CPU_SECONDS = 120  # per training process (RLIMIT_CPU): a run that never ends is killed, the test then fails
STEP_LINE = re.compile(r"step +(\d+)/(\d+)  (.*?)(?:  \d+ ms/step.*)?$")


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "fables.txt"
    animals = ["fox", "crow", "lion", "mouse", "ant", "grasshopper"]
    lines = [f"{i}: the {animals[i % 6]} met the {animals[(i * 5 + 1) % 6]} by the river.\n" for i in range(240)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def command(text_file: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "assignment.trainer", "--model", "rnn", "--embed-dim", "8", "--hidden-dim", "16",
            "--text", str(text_file), "--splits-dir", str(out.parent / "splits"), "--out", str(out),
            "--steps", str(STEPS), "--batch-size", "4", "--context-length", "16", "--warmup-steps", "5", "--seed", "3",
            "--eval-every", "10", "--eval-batches", "2", "--sample-tokens", "0", "--checkpoint-every", "4",
            "--log-every", "1"]


def _child_setup() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    # As in a terminal: a test run started in the background (`pytest &`) has SIGINT ignored, which children inherit
    # and the command line keeps ignoring.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_handled():
    """Python's own SIGINT handler (KeyboardInterrupt) during the test, also when the test run ignores SIGINT."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_child_setup)


def run_until(process: subprocess.Popen, step: int, signum: int) -> tuple[list[str], str]:
    """Read the process's output lines; send `signum` once it has printed the line of `step`; its output and stderr."""
    lines = []
    for line in process.stdout:  # text mode: universal newlines, a "\r" would end a line too
        lines.append(line.rstrip("\n"))
        match = STEP_LINE.match(lines[-1])
        if match and int(match[1]) >= step:
            process.send_signal(signum)
            break
    lines += process.stdout.read().splitlines()
    err = process.stderr.read()
    process.wait()
    return lines, err


def run_to_end(argv: list[str]) -> list[str]:
    process = start(argv)
    out, err = process.communicate()
    assert process.returncode == 0, err[-3000:]
    assert not any(char in out for char in "\r\b\x1b"), out[-3000:]  # a pipe gets plain lines
    return out.splitlines()


def printed_steps(lines: list[str]) -> dict[int, str]:
    """Step -> the values its progress line shows (loss, grad_norm, lr, valid_loss), without the timing."""
    found = {}
    for line in lines:
        match = STEP_LINE.match(line)
        if match:
            assert int(match[2]) == STEPS, line
            found[int(match[1])] = match[3]
    return found


def variables(prefix: str) -> dict[str, np.ndarray]:
    """Every variable of a checkpoint but the data iterator (a variant that numpy cannot hold) and save_counter
    (how many saves the run directory has seen, not training state)."""
    reader = tf.train.load_checkpoint(prefix)
    names = [name for name, _ in tf.train.list_variables(prefix)]
    return {name: reader.get_tensor(name) for name in names
            if "ITERATOR" not in name and not name.startswith("save_counter/")}


def next_batches(run: Path, prefix: str, count: int = 3) -> list[np.ndarray]:
    """The next `count` batches of the data iterator saved in checkpoint `prefix` of the run in `run`."""
    tokenizer = CharTokenizer.load(run / "tokenizer.json")
    ids = np.asarray(tokenizer.encode((run.parent / "splits" / "train.txt").read_text(encoding="utf-8")), np.int32)
    iterator = iter(loop.training_batches(ids, context_length=16, batch_size=4, seed=3))
    tf.train.Checkpoint(iterator=iterator).read(prefix).expect_partial()
    return [np.concatenate([np.asarray(x), np.asarray(y)]) for x, y in (next(iterator) for _ in range(count))]


def without_names(object_graph: bytes) -> bytes:
    """A checkpoint's serialized object graph without the variables' names, which Keras numbers anew in each model
    built in a process (rnn_language_model_1/...)."""
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(object_graph)
    for node in graph.nodes:
        for attribute in node.attributes:
            attribute.full_name = ""
    return graph.SerializeToString(deterministic=True)


def assert_same_checkpoint(expected: str, actual: str, names: bool = True) -> None:
    """Every variable of checkpoint `actual` equals that of `expected`, bit for bit, and so does the object graph
    (without the variables' names unless `names`)."""
    want, got = variables(expected), variables(actual)
    if not names:
        for found in (want, got):
            found["_CHECKPOINTABLE_OBJECT_GRAPH"] = without_names(found["_CHECKPOINTABLE_OBJECT_GRAPH"])
    assert sorted(want) == sorted(got)
    different = [name for name in want if not np.array_equal(want[name], got[name])]
    assert not different, f"{len(different)} of {len(want)} variables differ, e.g. {different[:3]}"


def test_interrupted_with_sigint_and_killed_with_sigkill_then_resumed_equals_an_uninterrupted_run(tmp_path,
                                                                                                   text_file):
    rng = np.random.default_rng(20240617)
    interrupt_at = int(rng.integers(3, 25))
    kill_after = int(rng.integers(10, 25))  # steps after the SIGINT run's checkpoint

    straight = tmp_path / "straight" / "run"
    straight_lines = run_to_end(command(text_file, straight))

    run = tmp_path / "interrupted" / "run"
    process = start(command(text_file, run))
    lines, err = run_until(process, interrupt_at, signal.SIGINT)
    assert process.returncode == 130 and "Traceback" not in err, err[-3000:]
    match = re.search(r"interrupted at step (\d+); saved (\S+): run the same command to resume", err)
    assert match, err[-3000:]
    stopped = int(match[1])
    assert interrupt_at <= stopped < STEPS
    assert tf.train.latest_checkpoint(str(run)) == match[2] == str(run / f"ckpt-{stopped}")
    saved = variables(match[2])  # the step counter and the optimizer describe the same point
    assert saved["step/.ATTRIBUTES/VARIABLE_VALUE"] == stopped
    assert saved["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == stopped
    first_run = printed_steps(lines)
    assert max(first_run) == stopped

    process = start(command(text_file, run))
    lines, err = run_until(process, stopped + kill_after, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, err[-3000:]
    assert f"resumed at step {stopped} from {run / f'ckpt-{stopped}'}" in lines[0], lines[:2]
    second_run = printed_steps(lines)
    killed = max(second_run)
    assert min(second_run) == stopped + 1 and stopped < killed < STEPS
    resumed_lines = run_to_end(command(text_file, run))
    restart = int(re.search(r"resumed at step (\d+)", resumed_lines[0])[1])
    assert stopped < restart <= killed  # from the last checkpoint before the kill

    final = tf.train.latest_checkpoint(str(run))
    assert final == str(run / f"ckpt-{STEPS}")
    assert_same_checkpoint(tf.train.latest_checkpoint(str(straight)), final)
    assert_same_checkpoint(tf.train.latest_checkpoint(str(straight / "best")),
                           tf.train.latest_checkpoint(str(run / "best")))
    for want, got in zip(next_batches(straight, tf.train.latest_checkpoint(str(straight))), next_batches(run, final),
                         strict=True):
        np.testing.assert_array_equal(want, got)
    expected = printed_steps(straight_lines)
    assert sorted(expected) == list(range(1, STEPS + 1))
    resumed = printed_steps(resumed_lines)
    assert sorted(resumed) == list(range(restart + 1, STEPS + 1))
    for shown in (first_run, second_run, resumed):  # the same values at every step, after each restart too
        assert {step: expected[step] for step in shown} == shown


def dropout_command(text_file: Path, out: Path, steps: int) -> list[str]:
    """A tiny transformer with dropout; the warmup spans the whole run, so that a run stopped at --steps 3 and resumed
    with --steps 6 gets the learning rates of a run straight to step 6 (the schedule's end is --steps)."""
    return [sys.executable, "-m", "assignment.trainer", "--model", "transformer", "--d-model", "16", "--num-heads", "2",
            "--num-layers", "1", "--dropout", "0.1", "--text", str(text_file), "--splits-dir",
            str(out.parent / "splits"), "--out", str(out), "--steps", str(steps), "--batch-size", "4",
            "--context-length", "16", "--warmup-steps", "6", "--seed", "3", "--eval-every", "3", "--eval-batches", "1",
            "--sample-tokens", "0", "--checkpoint-every", "3", "--log-every", "1"]


def test_a_transformer_with_dropout_checkpoints_its_random_state_and_resumes_exactly(tmp_path, text_file):
    straight = tmp_path / "straight" / "run"
    straight_lines = run_to_end(dropout_command(text_file, straight, 6))
    run = tmp_path / "resumed" / "run"
    run_to_end(dropout_command(text_file, run, 3))
    resumed_lines = run_to_end(dropout_command(text_file, run, 6))
    assert f"resumed at step 3 from {run / 'ckpt-3'}" in resumed_lines[0], resumed_lines[:2]
    saved = variables(str(run / "ckpt-3"))
    states = [name for name in saved if name.startswith("random_state/")]
    assert len(states) == 2  # the attention's dropout and the block's
    assert_same_checkpoint(str(straight / "ckpt-6"), str(run / "ckpt-6"))
    assert_same_checkpoint(tf.train.latest_checkpoint(str(straight / "best")),
                           tf.train.latest_checkpoint(str(run / "best")))
    shown = [line.split("  ")[1] for line in resumed_lines if STEP_LINE.match(line)]
    assert shown == [line.split("  ")[1] for line in straight_lines if STEP_LINE.match(line)][3:]


# ---------------------------------------------------------------------------------------------------- in-process
def in_process_args(text_file: Path, out: Path, steps: int) -> list[str]:
    return ["--model", "rnn", "--embed-dim", "8", "--hidden-dim", "16", "--text", str(text_file),
            "--splits-dir", str(out.parent / "splits"), "--out", str(out), "--steps", str(steps), "--batch-size", "4",
            "--context-length", "16", "--warmup-steps", "2", "--eval-every", "3", "--eval-batches", "2",
            "--sample-tokens", "0", "--checkpoint-every", "5"]


def test_sigint_during_a_training_step_saves_a_consistent_checkpoint_of_that_step_and_resumes_exactly(
    tmp_path, text_file, monkeypatch, capsys, sigint_handled
):
    steps = 12
    interrupt_at = int(np.random.default_rng(5).integers(2, steps - 1))
    loss, calls = train.sequence_loss, []

    def loss_that_can_signal(labels, logits):  # SIGINT from inside the compiled step, as a Ctrl-C in a long step
        def count() -> np.float32:
            calls.append(None)
            if len(calls) == interrupt_at:
                os.kill(os.getpid(), signal.SIGINT)
            return np.float32(0)

        return loss(labels, logits) + tf.numpy_function(count, [], tf.float32, stateful=True)

    monkeypatch.setattr(train, "sequence_loss", loss_that_can_signal)
    straight = tmp_path / "straight" / "run"
    calls.extend([None] * steps)  # past interrupt_at: no signal
    assert trainer.main(in_process_args(text_file, straight, steps)) == 0

    calls.clear()
    run = tmp_path / "interrupted" / "run"
    assert trainer.main(in_process_args(text_file, run, steps)) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step {interrupt_at}; saved {run / f'ckpt-{interrupt_at}'}" in err and "Traceback" not in err
    saved = variables(tf.train.latest_checkpoint(str(run)))
    assert saved["step/.ATTRIBUTES/VARIABLE_VALUE"] == interrupt_at
    assert saved["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == interrupt_at

    assert trainer.main(in_process_args(text_file, run, steps)) == 0
    assert f"resumed at step {interrupt_at}" in capsys.readouterr().out
    assert_same_checkpoint(tf.train.latest_checkpoint(str(straight)), tf.train.latest_checkpoint(str(run)), False)
    assert_same_checkpoint(tf.train.latest_checkpoint(str(straight / "best")),
                           tf.train.latest_checkpoint(str(run / "best")), False)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_stop_request_defers_the_first_sigint_and_lets_the_second_one_interrupt(sigint_handled):
    previous = signal.getsignal(signal.SIGINT)
    with console.StopRequest() as stop:
        assert not stop() and signal.getsignal(signal.SIGINT) is not previous
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes of the main thread
            if stop():
                break
        assert stop.requested and signal.getsignal(signal.SIGINT) is previous
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGINT) is previous


def test_stop_request_leaves_an_ignored_sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with console.StopRequest() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
