"""Courses: presets resolve as documented, bad course files get one line naming the problem, the commands that take
`--course` refuse them with that line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autograder.course import Course, CourseError, load, presets, resolve
from autograder.parts import AUDIT, BY_KEY, PARTS, SECTIONS

ROOT = Path(__file__).resolve().parent.parent


def test_presets_are_the_documented_ones():
    assert presets() == ("all", "classic", "hw1", "hw2", "hw3", "no-recurrent")


def test_all_is_every_part_and_100_points():
    course = load()
    assert course.name == "all" and course.parts == tuple(p.key for p in PARTS) and course.solved == ()
    assert list(course.points) == [s.name for s in SECTIONS if s.points]  # every graded section, in report order
    assert sum(course.points.values()) == 100


def test_classic_keeps_the_original_assignments_parts_and_points():
    course = load("classic")
    assert course.parts == ("preprocess", "recurrent", "samplers", "transformer", "train")
    assert course.points == {"preprocess": 15, "rnn": 10, "lstm": 10, "samplers": 15, "transformer": 25, "train": 20,
                             "audit": 5}


def test_no_recurrent_leaves_part_2_out_and_renumbers():
    course = load("no-recurrent")
    assert "recurrent" not in course.parts + course.solved
    assert {"rnn", "lstm"} <= set(course.left_out_modules)
    assert [course.number(k) for k in ("preprocess", "samplers", "transformer", "train")] == [1, 2, 3, 4]
    assert sum(course.points.values()) == 100


def test_required_parts_ship_solved_and_unneeded_ones_are_left_out():
    hw2 = load("hw2")
    assert hw2.solved == ("preprocess",)  # the training loop cuts windows; the transformer is a selected model
    assert {"rnn", "lstm"} <= set(hw2.left_out_modules) and "preprocess" not in hw2.left_out_modules
    hw3 = load("hw3")  # the modern decoder and fine-tuning: part 4's attention, the samplers and training solved
    assert hw3.parts == ("modern", "finetune") and hw3.solved == ("preprocess", "samplers", "transformer", "train")
    assert "finetuner" not in hw3.left_out_modules and "finetuner" in load("hw2").left_out_modules
    assert {"rnn", "lstm"} <= set(hw3.left_out_modules)
    hw1 = load("hw1")  # the n-gram baseline generates through the samplers, which ship solved
    assert hw1.parts == ("preprocess", "recurrent", "ngram") and hw1.solved == ("samplers",)
    assert {"transformer", "train", "loop", "trainer"} <= set(hw1.left_out_modules)
    assert "samplers" not in hw1.left_out_modules and "baseline" not in hw1.left_out_modules
    assert set(hw1.points) == {"preprocess", "rnn", "lstm", "ngram", "audit"}


def test_a_model_of_the_course_satisfies_training_and_given_parts_ship_solved():
    course = resolve("x", {"parts": ["recurrent", "train"], "given": ["transformer"]})
    assert course.parts == ("recurrent", "train") and course.solved == ("preprocess", "samplers", "transformer")
    course = resolve("x", {"parts": ["recurrent", "train"]})
    assert course.solved == ("preprocess", "samplers")  # the recurrent models are the course's own


def test_points_scale_to_the_total_unless_given():
    course = resolve("x", {"parts": ["samplers"], "total": 40})
    table = BY_KEY["samplers"].sections[0].points + AUDIT.points
    assert course.points == {"samplers": round(15 * 40 / table, 2), "audit": round(5 * 40 / table, 2)}
    course = resolve("x", {"parts": ["samplers"], "points": {"samplers": 7}})
    assert course.points == {"samplers": 7.0, "audit": 5.0}


def test_a_resolved_course_survives_its_json():
    course = load("hw2")
    assert Course.from_json(course.to_json()) == course


@pytest.mark.parametrize("spec, message", [
    ({"parts": ["samplers", "tokenizer"]}, "unknown part 'tokenizer' in parts"),
    ({"parts": []}, "parts is empty"),
    ({"parts": "samplers"}, "parts must be a list of part names"),
    ({"parts": ["samplers", "samplers"]}, "part 'samplers' is listed twice"),
    ({"parts": ["samplers"], "given": ["samplers"]}, "part 'samplers' is both in parts and in given"),
    ({"parts": ["samplers"], "points": {"samplers": 0}}, "points for 'samplers' must be a positive number"),
    ({"parts": ["samplers"], "points": {"samplers": -3}}, "points for 'samplers' must be a positive number"),
    ({"parts": ["samplers"], "points": {"samplers": True}}, "points for 'samplers' must be a positive number"),
    ({"parts": ["samplers"], "points": {"rnn": 10}}, "points for 'rnn', which this course does not grade"),
    ({"parts": ["samplers"], "total": 0}, "total must be a positive number"),
    ({"parts": ["samplers"], "total": 50, "points": {"samplers": 10}}, "either total"),
    ({"parts": ["samplers"], "deadline": "Friday"}, "unknown key 'deadline'"),
    ({"parts": ["samplers"], "title": 3}, "title and due must be strings"),
])
def test_bad_course_files_get_one_line_naming_the_problem(spec, message):
    with pytest.raises(CourseError) as info:
        resolve("bad", spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_preset_missing_file_and_bad_toml_name_the_problem(tmp_path):
    with pytest.raises(CourseError, match="no course preset 'hw9'"):
        load("hw9")
    with pytest.raises(CourseError, match="no course file"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('parts = ["samplers"\n')
    with pytest.raises(CourseError, match="bad.toml is not valid TOML"):
        load(bad)


@pytest.mark.parametrize("command", [["tools.make_release"], ["autograder", "build"], ["tools.make_handout"],
                                     ["autograder", "fixtures"]])
def test_commands_refuse_a_bad_course_file_with_one_line(command, tmp_path):
    course = tmp_path / "mine.toml"
    course.write_text('parts = ["samplers", "ngrams"]\n')
    done = subprocess.run([sys.executable, "-m", *command, "--course", str(course), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "out").exists()
    assert done.stderr.strip().count("\n") == 0 and "unknown part 'ngrams' in parts" in done.stderr, done.stderr
