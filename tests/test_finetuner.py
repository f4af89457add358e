"""The fine-tuning command line, run as a user runs it: `python -m assignment.finetuner` on a tiny pretrained
transformer (trained once per module with `python -m assignment.trainer`), by LoRA, freezing and full fine-tuning;
generation from the result and from its merged export; exact resume after Ctrl-C (SIGINT) and kill -9 (SIGKILL);
one line and exit status 2 for bad input, with the base run and other runs never overwritten.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_resume import assert_same_checkpoint, run_to_end, run_until, start

from assignment import finetuner, runs

ROOT = Path(__file__).resolve().parent.parent
STEPS = 24


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    animals = ["fox", "crow", "lion", "mouse", "ant", "grasshopper"]
    pretrain = [f"{i}: the {animals[i % 6]} met the {animals[(i * 5 + 1) % 6]} by the river.\n" for i in range(240)]
    finetune = [f"{i}: a {animals[(i * 7) % 6]} sang to the {animals[i % 5]} at night.\n" for i in range(160)]
    (folder / "fables.txt").write_text("".join(pretrain), encoding="utf-8")
    (folder / "songs.txt").write_text("".join(finetune), encoding="utf-8")
    (folder / "greek.txt").write_text("".join(finetune).replace("a", "\u03b1"), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def base(texts):
    out = texts.parent / "base"
    run_to_end([sys.executable, "-m", "assignment.trainer", "--model", "transformer", "--d-model", "16",
                "--num-heads", "2", "--num-layers", "2", "--text", str(texts / "fables.txt"), "--splits-dir",
                str(texts.parent / "base-splits"), "--out", str(out), "--steps", "20", "--batch-size", "4",
                "--context-length", "16", "--warmup-steps", "2", "--eval-every", "10", "--eval-batches", "1",
                "--sample-tokens", "0"])
    return out


def command(base: Path, texts: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "assignment.finetuner", "--from", str(base), "--text", str(texts / "songs.txt"),
            "--splits-dir", str(out.parent / f"{out.name}-splits"), "--out", str(out), "--steps", str(STEPS),
            "--batch-size", "4", "--warmup-steps", "2", "--eval-every", "6", "--eval-batches", "1",
            "--sample-tokens", "0", "--checkpoint-every", "4", "--log-every", "1", "--lr", "0.01", *options]


def generate(run: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "assignment.generate", "--checkpoint", str(run), "--prompt", "3: ",
                             "--max-new-tokens", "30", "--temperature", "0"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    return result.stdout


def test_lora_run_then_generation_from_it_and_from_its_merged_export(base, texts, tmp_path):
    out = tmp_path / "lora"
    lines = run_to_end(command(base, texts, out, "--method", "lora", "--rank", "2", "--alpha", "4"))
    counts = next(line for line in lines if line.startswith("trainable parameters"))
    lora = 2 * 4 * 2 * (16 + 16)  # blocks x kernels x r (d_in + d_out)
    assert f"lora (rank 2) {lora:,}" in counts and f"lora fine-tuning of {base} ({lora:,} trainable" in "\n".join(lines)
    assert (out / "logs" / "train").is_dir() and tf.train.latest_checkpoint(str(out / "best"))
    base_weights = {name: tf.train.load_checkpoint(runs.latest_weights(base)).get_tensor(name)
                    for name, _ in tf.train.list_variables(runs.latest_weights(base))
                    if name.startswith("model/") and "VARIABLE_VALUE" in name}
    tuned = tf.train.load_checkpoint(runs.latest_weights(out))
    for name, value in base_weights.items():  # LoRA leaves every pretrained weight as it was
        np.testing.assert_array_equal(tuned.get_tensor(name), value)
    text = generate(out)
    assert text.startswith("3: ") and text == generate(out / "merged")
    merged = tf.train.load_checkpoint(runs.latest_weights(out / "merged"))
    differs = [name for name, value in base_weights.items() if not np.array_equal(merged.get_tensor(name), value)]
    assert sorted({name.split("/")[4] for name in differs}) == ["key_kernel", "output_kernel", "query_kernel",
                                                                 "value_kernel"]  # model/blocks/i/attention/NAME


@pytest.mark.parametrize("method, changed", [("freeze", "blocks/1/"), ("full", "token_embedding")])
def test_freeze_and_full_fine_tuning_change_the_weights_they_train(base, texts, tmp_path, method, changed):
    out = tmp_path / method
    run_to_end(command(base, texts, out, "--method", method, "--freeze-blocks", "1", "--steps", "6"))
    before = tf.train.load_checkpoint(runs.latest_weights(base))
    after = tf.train.load_checkpoint(runs.latest_weights(out))
    names = [name for name, _ in tf.train.list_variables(runs.latest_weights(base))
             if name.startswith("model/") and "VARIABLE_VALUE" in name]
    differs = {name for name in names if not np.array_equal(before.get_tensor(name), after.get_tensor(name))}
    assert any(changed in name for name in differs)
    if method == "freeze":
        assert not any("token_embedding" in name or "blocks/0/" in name for name in differs)


def test_interrupted_with_sigint_and_killed_with_sigkill_then_resumed_equals_an_uninterrupted_run(base, texts,
                                                                                                   tmp_path):
    options = ("--method", "lora", "--rank", "2", "--seed", "5")
    straight = tmp_path / "straight"
    run_to_end(command(base, texts, straight, *options))
    run = tmp_path / "run"
    _, err = run_until(start(command(base, texts, run, *options)), 7, signal.SIGINT)
    assert "run the same command to resume" in err
    stopped = int(Path(tf.train.latest_checkpoint(str(run))).name.split("-")[1])
    assert 7 <= stopped < STEPS
    process = start(command(base, texts, run, *options))
    lines, _ = run_until(process, stopped + 6, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL and any(f"resumed at step {stopped}" in line for line in lines)
    run_to_end(command(base, texts, run, *options))
    assert_same_checkpoint(tf.train.latest_checkpoint(str(straight)), tf.train.latest_checkpoint(str(run)))
    assert_same_checkpoint(tf.train.latest_checkpoint(str(straight / "best")),
                           tf.train.latest_checkpoint(str(run / "best")))


def test_bad_input_is_one_line_with_status_2_as_a_subprocess(base, texts, tmp_path):
    result = subprocess.run(command(base, texts, tmp_path / "x", "--rank", "0"), cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--rank" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()


def bad(argv: list[str], capsys) -> str:
    assert finetuner.main(argv[3:]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_input_names_the_argument_and_overwrites_nothing(base, texts, tmp_path, capsys):
    out = tmp_path / "out"
    assert "--rank" in bad(command(base, texts, out, "--rank", "17"), capsys)  # min(d_in, d_out) = 16
    assert "--alpha" in bad(command(base, texts, out, "--alpha", "0"), capsys)
    assert "--freeze-blocks" in bad(command(base, texts, out, "--method", "freeze", "--freeze-blocks", "3"), capsys)
    assert "--from" in bad(command(tmp_path / "nothing", texts, out), capsys)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    for name in (runs.CONFIG_FILE, runs.TOKENIZER_FILE):
        (untrained / name).write_bytes((base / name).read_bytes())
    assert "--from" in bad(command(untrained, texts, out), capsys)
    greek = command(base, texts, out)
    greek[greek.index("--text") + 1] = str(texts / "greek.txt")
    err = bad(greek, capsys)
    assert "--text" in err and "encode" in err
    assert "--out" in bad(command(base, texts, base), capsys)
    assert not out.exists()
    before = {path: path.read_bytes() for path in base.rglob("*") if path.is_file()}
    other = tmp_path / "other"
    other.mkdir()
    (other / runs.CONFIG_FILE).write_bytes((base / runs.CONFIG_FILE).read_bytes())
    assert "--out" in bad(command(base, texts, other), capsys)
    assert (other / runs.CONFIG_FILE).read_bytes() == (base / runs.CONFIG_FILE).read_bytes()
    assert before == {path: path.read_bytes() for path in base.rglob("*") if path.is_file()}
