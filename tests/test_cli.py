"""The training and generation command lines end to end, on a small text file and tiny models.

`trainer.main(argv)` (`python -m assignment.trainer`) and `generate.main(argv)` run in-process: train a few steps,
resume, generate, and every kind of bad input ends with exit status 2 and one line on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from assignment import baseline, generate, train, trainer
from data import prepare

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "rnn": ["--embed-dim", "8", "--hidden-dim", "16"],
    "lstm": ["--embed-dim", "8", "--hidden-dim", "16"],
    "transformer": ["--d-model", "16", "--num-heads", "2", "--num-layers", "1"],
    "modern": ["--d-model", "16", "--num-heads", "4", "--kv-heads", "2", "--num-layers", "1"],
}


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "fables.txt"
    animals = ["fox", "crow", "lion", "mouse", "ant", "grasshopper"]
    lines = [f"{i}: the {animals[i % 6]} met the {animals[(i * 5 + 1) % 6]} by the river.\n" for i in range(240)]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def train_args(text_file, out, model="lstm", steps=4, *extra) -> list[str]:
    return ["--model", model, "--text", str(text_file), "--splits-dir", str(out.parent / "splits"), "--out", str(out),
            "--steps", str(steps), "--batch-size", "4", "--context-length", "16", "--eval-every", "2",
            "--eval-batches", "2", "--sample-tokens", "5", "--warmup-steps", "1", *TINY[model], *extra]


def checkpoints(directory) -> list[int]:
    return sorted(int(p.name[len("ckpt-") : -len(".index")]) for p in directory.glob("ckpt-*.index"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("model", ["rnn", "lstm", "transformer"])
def test_train_writes_config_tokenizer_checkpoints_and_logs_then_generate_continues_the_prompt(
    model, text_file, tmp_path, capsys
):
    out = tmp_path / "run"
    assert trainer.main(train_args(text_file, out, model)) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == model and config["tokenizer"] == "char" and config["context_length"] == 16
    characters = sorted(set(text_file.read_text()))
    assert config["vocab_size"] == len(characters)
    assert json.loads((out / config["tokenizer_file"]).read_text())["chars"] == characters
    assert checkpoints(out) == [4] and checkpoints(out / "best")
    assert list((out / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((out / "logs" / "valid").glob("events.out.tfevents.*"))
    printed = capsys.readouterr().out  # not a terminal: plain progress lines, no carriage return or escape code
    assert "step 4/4  loss " in printed and not any(char in printed for char in "\r\b\x1b")

    argv = ["--checkpoint", str(out), "--prompt", "3: the", "--max-new-tokens", "12", "--seed", "1"]
    assert generate.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("3: the") and len(printed) == len("3: the") + 12 + 1  # one character per token + "\n"
    assert generate.main(argv) == 0 and capsys.readouterr().out == printed  # same seed, same text


def test_modern_model_with_its_own_optimizer_trains_then_generates_past_its_context(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert trainer.main(train_args(text_file, out, "modern", 3, "--optimizer", "own")) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["num_heads"], config["num_kv_heads"]) == ("modern", 4, 2)
    assert config["training"]["optimizer"] == "own" and checkpoints(out) == [3]
    capsys.readouterr()
    argv = ["--checkpoint", str(out), "--prompt", "3: the", "--max-new-tokens", "30", "--seed", "1"]
    assert generate.main(argv) == 0  # 36 tokens through a context of 16
    printed = capsys.readouterr().out
    assert printed.startswith("3: the") and len(printed) == len("3: the") + 30 + 1
    # Resuming needs the same optimizer and key/value heads.
    assert trainer.main(train_args(text_file, out, "modern", 4)) == 2
    assert "--optimizer own" in one_error_line(capsys)
    assert trainer.main(train_args(text_file, out, "modern", 4, "--optimizer", "own", "--kv-heads", "1")) == 2
    assert "num_kv_heads" in one_error_line(capsys)
    assert checkpoints(out) == [3]


@pytest.mark.parametrize("extra, words", [
    (["--kv-heads", "3"], ["--num-heads 4", "--kv-heads 3"]),
    (["--kv-heads", "0"], ["--kv-heads"]),
    (["--num-heads", "8", "--kv-heads", "8", "--d-model", "24"], ["head size", "even"]),
    (["--optimizer", "own", "--warmup-steps", "5"], ["--warmup-steps 5", "--steps 3", "warmup longer than the run"]),
])
def test_bad_modern_or_optimizer_options_are_one_error_line(extra, words, text_file, tmp_path, capsys):
    assert trainer.main(train_args(text_file, tmp_path / "run", "modern", 3, *extra)) == 2
    line = one_error_line(capsys)
    assert all(word in line for word in words), line
    assert not (tmp_path / "run").exists()


def test_running_the_same_command_again_resumes_from_the_latest_checkpoint(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert trainer.main(train_args(text_file, out, "lstm", 4, "--checkpoint-every", "3")) == 0
    assert checkpoints(out) == [3, 4]
    capsys.readouterr()
    assert trainer.main(train_args(text_file, out, "lstm", 7, "--checkpoint-every", "3")) == 0
    assert "resumed at step 4" in capsys.readouterr().out
    assert checkpoints(out) == [4, 6, 7]  # the fourth save drops the oldest (--keep 3)
    assert trainer.main(train_args(text_file, out, "lstm", 7)) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_bpe_tokenizer_run(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert trainer.main(train_args(text_file, out, "lstm", 2, "--tokenizer", "bpe", "--vocab-size", "270")) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["tokenizer"] == "bpe" and config["vocab_size"] == 270
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(out), "--prompt", "the fox", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("the fox")


def test_jit_on_a_training_step_xla_cannot_compile_is_one_error_line(text_file, tmp_path, monkeypatch, capsys):
    import numpy as np
    import tensorflow as tf

    loss = train.sequence_loss

    def loss_through_numpy(labels, logits):  # tf.numpy_function runs Python, which XLA cannot compile
        return loss(labels, logits) + tf.numpy_function(lambda: np.float32(0), [], tf.float32, stateful=False)

    monkeypatch.setattr(train, "sequence_loss", loss_through_numpy)
    assert trainer.main(train_args(text_file, tmp_path / "run", "lstm", 2, "--jit")) == 2
    line = one_error_line(capsys)
    assert "XLA" in line and "without --jit" in line


def test_help_lists_the_options():
    with pytest.raises(SystemExit) as exit_info:
        trainer.main(["--help"])
    assert exit_info.value.code == 0


def test_missing_text_file(tmp_path, capsys):
    assert trainer.main(train_args(tmp_path / "nope.txt", tmp_path / "run")) == 2
    assert "nope.txt" in one_error_line(capsys)


def test_empty_corpus(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    assert trainer.main(train_args(empty, tmp_path / "run")) == 2
    assert "empty" in one_error_line(capsys)


def test_text_too_short_for_the_context_length(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("".join(f"line {i}\n" for i in range(40)), encoding="utf-8")
    assert trainer.main(train_args(short, tmp_path / "run")) == 2
    assert "--context-length" in one_error_line(capsys)


def test_unknown_model(text_file, tmp_path, capsys):
    argv = train_args(text_file, tmp_path / "run")
    argv[argv.index("lstm")] = "gru"
    with pytest.raises(SystemExit) as exit_info:
        trainer.main(argv)
    assert exit_info.value.code == 2
    assert "gru" in one_error_line(capsys)


def test_bad_number(text_file, tmp_path, capsys):
    assert trainer.main(train_args(text_file, tmp_path / "run", "lstm", 0)) == 2
    assert "--steps" in one_error_line(capsys)


@pytest.fixture(scope="module")
def lstm_run(text_file, tmp_path_factory):
    """A one-step lstm run directory, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("lstm") / "run"
    assert trainer.main(train_args(text_file, out, "lstm", 1)) == 0
    return out


def test_resuming_a_run_of_another_model_or_size_is_refused(lstm_run, text_file, capsys):
    capsys.readouterr()
    assert trainer.main(train_args(text_file, lstm_run, "rnn", 2)) == 2
    assert "'lstm'" in one_error_line(capsys)
    assert trainer.main(train_args(text_file, lstm_run, "lstm", 2, "--hidden-dim", "32")) == 2
    assert "hidden_dim" in one_error_line(capsys)
    assert checkpoints(lstm_run) == [1]


def test_generate_without_a_run_directory(tmp_path, capsys):
    assert generate.main(["--checkpoint", str(tmp_path / "missing"), "--prompt", "a"]) == 2
    assert "missing" in one_error_line(capsys)
    (tmp_path / "empty").mkdir()
    assert generate.main(["--checkpoint", str(tmp_path / "empty"), "--prompt", "a"]) == 2
    assert "config.json" in one_error_line(capsys)


def test_generate_before_any_checkpoint(lstm_run, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    shutil.copytree(lstm_run, fresh, ignore=shutil.ignore_patterns("ckpt-*", "checkpoint", "best"))
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(fresh), "--prompt", "the"]) == 2
    assert "no checkpoint" in one_error_line(capsys)


def test_generate_with_a_character_outside_the_vocabulary(lstm_run, capsys):
    capsys.readouterr()
    assert generate.main(["--checkpoint", str(lstm_run), "--prompt", "Zebra"]) == 2
    assert "'Z'" in one_error_line(capsys)


# ---------------------------------------------------------------------------------------------------- no overwrite
def split_files(directory) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_train_on_splits_prepared_with_other_fractions_uses_them_and_never_overwrites_them(text_file, tmp_path, capsys):
    import subprocess
    import sys

    splits = tmp_path / "splits"
    prepared = subprocess.run([sys.executable, "-m", "data.prepare", "--text", str(text_file), "--out", str(splits),
                               "--fractions", "0.7", "0.2", "0.1"], cwd=ROOT, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    before = split_files(splits)

    # The default corpus in that folder, as a user runs it: refused in one line, the splits are left alone.
    done = subprocess.run([sys.executable, "-m", "assignment.trainer", "--model", "rnn", "--splits-dir", str(splits),
                           "--out", str(tmp_path / "default"), "--steps", "1"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line == (f"error: {splits} holds the splits of {text_file.resolve()} with fractions 0.7/0.2/0.1, not of "
                    f"the default corpus: pass --text {text_file.resolve()} to use them, or another --splits-dir for "
                    f"the default corpus (or delete {splits} to replace them)")
    assert split_files(splits) == before and not (tmp_path / "default").exists()

    other = tmp_path / "other.txt"
    other.write_text(text_file.read_text(encoding="utf-8").replace("fox", "wolf"), encoding="utf-8")
    assert trainer.main(train_args(other, tmp_path / "run", "lstm", 1)) == 2
    assert f"holds the splits of {text_file.resolve()}" in one_error_line(capsys)
    assert split_files(splits) == before

    assert trainer.main(train_args(text_file, tmp_path / "run", "lstm", 1)) == 0  # the same file: its fractions
    assert split_files(splits) == before
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["splits"]["dir"] == str(splits.resolve())


def test_text_too_short_advice_names_only_options_of_train(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("first line\nsecond line\n", encoding="utf-8")
    assert trainer.main(train_args(short, tmp_path / "run")) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: the valid split would be empty")  # train has no --fractions to suggest
    assert line.rsplit(": ", 1)[1] == "use a longer text (it needs several lines)"


def test_a_run_that_failed_before_training_leaves_nothing_that_stops_a_retry_with_other_settings(
    text_file, tmp_path, capsys
):
    out = tmp_path / "run"
    assert trainer.main(train_args(text_file, out, "lstm", 2, "--context-length", "20000")) == 2
    assert "the train split has only" in (line := one_error_line(capsys)) and "smaller --context-length" in line
    assert not (out / "tokenizer.json").exists() and not (out / "config.json").exists()
    assert trainer.main(train_args(text_file, out, "lstm", 1, "--tokenizer", "bpe", "--vocab-size", "260")) == 0
    assert json.loads((out / "tokenizer.json").read_text())["type"] == "bpe"


def test_a_run_directory_without_a_checkpoint_is_a_new_run_and_one_with_checkpoints_is_kept(
    text_file, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"

    def crash(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(trainer, "fit", crash)  # a run that dies in training, before its first checkpoint
    with pytest.raises(RuntimeError):
        trainer.main(train_args(text_file, out, "lstm", 2))
    assert json.loads((out / "config.json").read_text())["hidden_dim"] == 16 and not checkpoints(out)
    monkeypatch.undo()
    capsys.readouterr()
    assert trainer.main(train_args(text_file, out, "rnn", 2, "--tokenizer", "bpe", "--vocab-size", "260")) == 0
    assert "holds no checkpoint" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "rnn" and config["tokenizer"] == "bpe" and checkpoints(out) == [2]
    tokenizer = (out / "tokenizer.json").read_bytes()

    assert trainer.main(train_args(text_file, out, "lstm", 3)) == 2  # now it has trained: refused, left alone
    assert "'rnn'" in one_error_line(capsys)
    assert (out / "tokenizer.json").read_bytes() == tokenizer and checkpoints(out) == [2]


def test_resuming_on_other_splits_is_refused(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert trainer.main(train_args(text_file, out, "lstm", 1)) == 0
    capsys.readouterr()
    argv = train_args(text_file, out, "lstm", 2)
    other_splits = tmp_path / "other-splits"
    assert prepare.main(["--text", str(text_file), "--out", str(other_splits), "--fractions", "0.8", "0.1", "0.1"]) == 0
    argv[argv.index("--splits-dir") + 1] = str(other_splits)
    assert trainer.main(argv) == 2
    line = one_error_line(capsys)
    assert "trained on other train/valid/test splits" in line and "--splits-dir" in line
    assert checkpoints(out) == [1]


# ---------------------------------------------------------------------------------------------------- n-gram baseline
def baseline_args(text_file, tmp_path, *extra) -> list[str]:
    return ["--text", str(text_file), "--splits-dir", str(tmp_path / "splits"), *extra]


def test_baseline_command_prints_counts_memory_perplexities_and_a_sample(text_file, tmp_path):
    import subprocess
    import sys

    argv = baseline_args(text_file, tmp_path, "--order", "3", "--choose-epsilon", "0.01", "0.1", "1",
                         "--sample", "20", "--prompt", "7: the", "--temperature", "0")
    done = subprocess.run([sys.executable, "-m", "assignment.baseline", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    vocab = len(set(text_file.read_text()))
    assert lines[0].startswith("3-gram model of ") and f"(V = {vocab})" in lines[0] and " s, peak memory +" in lines[0]
    assert [line.split(":")[0] for line in lines[1:4]] == ["  epsilon 0.01", "  epsilon 0.1", "  epsilon 1"]
    chosen = min(lines[1:4], key=lambda line: float(line.split()[-3])).split()[1].rstrip(":")
    assert lines[4] == f"chose epsilon {chosen}"
    per_token, per_character = (float(word) for word in lines[5].split(": ")[1].split()[0:4:3])
    assert lines[5].startswith(f"validation perplexity (epsilon {chosen}): ") and 1 < per_token == per_character < vocab
    splits = prepare.load_splits(tmp_path / "splits")  # the splits the training command uses, made by the command
    assert lines[5].endswith(f"({len(splits['valid']) - 2:,} tokens, {len(splits['valid']) - 2:,} characters)")
    sample = done.stdout.split("\n", 6)[6]
    assert sample.startswith("7: the") and len(sample) == len("7: the") + 20 + 1  # one character per token + "\n"


def test_baseline_with_bpe_prints_perplexity_per_token_and_per_character(text_file, tmp_path, capsys):
    assert baseline.main(baseline_args(text_file, tmp_path, "--tokenizer", "bpe", "--vocab-size", "300",
                                       "--order", "2", "--epsilon", "0.1")) == 0
    words = capsys.readouterr().out.splitlines()[-1].split()
    per_token, per_character = float(words[4]), float(words[7])
    assert per_token > per_character > 1  # a BPE token stands for more than one character


@pytest.mark.parametrize(("extra", "words"), [
    (["--order", "0"], "--order"),
    (["--epsilon", "0"], "--epsilon"),
    (["--epsilon", "-0.5"], "--epsilon"),
    (["--epsilon", "nan"], "--epsilon"),
    (["--choose-epsilon", "0.1", "0"], "--choose-epsilon"),
    (["--sample", "-1"], "--sample"),
    (["--top-k", "0", "--sample", "3"], "--top-k"),
    (["--top-p", "1.5", "--sample", "3"], "--top-p"),
    (["--temperature", "-1", "--sample", "3"], "--temperature"),
    (["--tokenizer", "bpe", "--vocab-size", "100"], "--vocab-size"),
    (["--order", "many"], "--order"),
    (["--sample", "3", "--prompt", "\u00e9t\u00e9"], "vocabulary"),
])
def test_baseline_bad_input_is_one_error_line(extra, words, text_file, tmp_path, capsys):
    try:
        status = baseline.main(baseline_args(text_file, tmp_path, *extra))
    except SystemExit as exit_info:  # argparse: a value of the wrong type
        status = exit_info.code
    assert status == 2
    assert words in one_error_line(capsys)


def test_baseline_without_the_text_file_is_one_error_line(tmp_path, capsys):
    assert baseline.main(baseline_args(tmp_path / "nope.txt", tmp_path)) == 2
    assert "nope.txt" in one_error_line(capsys)
