"""From-scratch audit (part "audit", judge side, static): the submission must not use the layers and libraries the
handout forbids.

Every .py file of the submission is parsed with `ast` (never imported). Names are resolved through the file's imports
and aliases, so `keras.layers.LSTM`, `tf.keras.layers.LSTM`, `from keras import layers as L; L.LSTM`,
`from tensorflow.keras.layers import LSTMCell as Cell` and `keras_hub.samplers.TopPSampler` after `import keras_hub`
are all found, as are the n-gram libraries (`import nltk`, `from nltk.lm import Lidstone`), `getattr(anything, "LSTM")`,
`{"class_name": "LSTM", ...}` configurations and dotted names in strings passed to calls
(`importlib.import_module("keras_nlp.samplers")`, `eval("keras.layers.GRU(8)")`, `import_module("nltk.lm")`).
Keras's own LoRA (`.enable_lora(...)` on any layer, or looked up with getattr) is found too. Docstrings and comments
are not code and are ignored.

Some modules have rules of their own (MODULE_RULES, by file name): the student's optim.py writes AdamW and the
warmup-cosine schedule, so there Keras's and TensorFlow's Adam, AdamW and cosine-decay schedules are forbidden too
(`keras.optimizers.AdamW`, `tf.keras.optimizers.schedules.CosineDecay`, `tf.raw_ops.ResourceApplyAdam`,
`keras.optimizers.get("adamw")`, ...), while the given train.py keeps using `keras.optimizers.AdamW`.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from autograder.judge.registry import Scaled, TestFailure, hidden_test

FORBIDDEN_LAYERS = ("LSTM", "SimpleRNN", "GRU", "LSTMCell", "SimpleRNNCell", "GRUCell", "MultiHeadAttention",
                    "RMSNormalization", "GroupQueryAttention", "GroupedQueryAttention")
FORBIDDEN_METHODS = ("enable_lora",)
"""Methods of Keras layers that do a part's work: `Dense.enable_lora` / `EinsumDense.enable_lora` (the LoRA of the
fine-tuning part)."""
FORBIDDEN_PACKAGES = ("keras_hub.samplers", "keras_nlp.samplers", "keras_hub.layers", "keras_nlp.layers",
                      "nltk", "kenlm")
"""Packages whose every module is off limits: KerasHub's samplers and layers, and n-gram language-model libraries
(part 7)."""
KERAS_ROOTS = ("keras", "tensorflow.keras", "tf_keras", "tensorflow.python.keras", "keras_core")


@dataclass(frozen=True)
class Rule:
    """Names forbidden under any of `roots` (e.g. `keras.layers.LSTM` for the name LSTM under the root keras)."""

    names: tuple[str, ...]
    roots: tuple[str, ...] = KERAS_ROOTS

    def strings(self) -> re.Pattern:
        """Dotted names under the roots in a string, e.g. "tf.keras.layers.GRU"."""
        short = {"tf" + root.removeprefix("tensorflow") for root in self.roots if root.startswith("tensorflow")}
        roots = "|".join(re.escape(root) for root in sorted({*self.roots, *short}))
        return re.compile(r"\b(?:" + roots + r")(?:\.\w+)*\.(" + "|".join(self.names) + r")\b")


LAYERS_RULE = Rule(FORBIDDEN_LAYERS)
MODULE_RULES = {
    "optim.py": Rule(("Adam", "AdamW", "AdamOptimizer", "AdamWOptimizer", "CosineDecay", "CosineDecayRestarts",
                      "ApplyAdam", "ResourceApplyAdam"), (*KERAS_ROOTS, "tensorflow")),
}
"""File name -> what that module may not use on top of the layers: optim.py is where the student writes AdamW and
the warmup-cosine schedule (part 6), so library optimizers and schedules that do that work are forbidden there."""
_PACKAGES_IN_STRING = re.compile(r"\b(keras_hub|keras_nlp)\.samplers\b|^(nltk|kenlm)(?:\.\w+)*$")
"""KerasHub's samplers, or an n-gram library's module, named in a string (`import_module("nltk.lm")`)."""


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}, line {self.line}: {self.what}"


def _is_forbidden(dotted: str, rules: tuple[Rule, ...] = (LAYERS_RULE,)) -> str | None:
    """The forbidden thing a fully resolved dotted name refers to under `rules` (or a forbidden package), or None."""
    for package in FORBIDDEN_PACKAGES:
        if dotted == package or dotted.startswith(package + "."):
            return dotted
    parts = dotted.split(".")
    prefix = ".".join(parts[:-1])
    for rule in rules:
        if parts[-1] in rule.names and any(prefix == root or prefix.startswith(root + ".") for root in rule.roots):
            return dotted
    return None


class _Auditor(ast.NodeVisitor):
    def __init__(self, path: str):
        self.path = path
        self.aliases: dict[str, str] = {}
        self.findings: list[Finding] = []
        module_rule = MODULE_RULES.get(Path(path).name)
        self.rules = (LAYERS_RULE,) if module_rule is None else (LAYERS_RULE, module_rule)
        self.names = {name for rule in self.rules for name in rule.names}
        self.string_patterns = [rule.strings() for rule in self.rules] + [_PACKAGES_IN_STRING]

    def _forbidden(self, dotted: str) -> str | None:
        return _is_forbidden(dotted, self.rules)

    def _flag(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    # ---------------------------------------------------------------- imports define aliases
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top
            if self._forbidden(alias.name):
                self._flag(node, f"imports {alias.name}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        module = {"tensorflow": "tensorflow", "tf": "tensorflow"}.get(node.module, node.module)
        for alias in node.names:
            full = f"{module}.{alias.name}"
            self.aliases[alias.asname or alias.name] = full
            found = self._forbidden(full)
            if found:
                self._flag(node, f"imports {found}")

    # ---------------------------------------------------------------- names and attributes
    def _resolve(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FORBIDDEN_METHODS:
            self._flag(node, f"calls Keras's {node.attr}")
        dotted = self._resolve(node)
        found = self._forbidden(dotted) if dotted else None
        if found:
            self._flag(node, f"uses {found}")
            return  # do not report the same chain's prefixes again
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        dotted = self.aliases.get(node.id)
        if dotted and node.id != dotted.split(".")[0] and self._forbidden(dotted):
            self._flag(node, f"uses {dotted} (imported as {node.id})")

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        dotted = self._resolve(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name) and dotted:
                self.aliases[target.id] = dotted

    # ---------------------------------------------------------------- strings in calls and configs
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        args = list(node.args) + [k.value for k in node.keywords]
        if name in ("getattr", "__getattribute__", "__getattr__") and len(node.args) >= 2:
            attr = node.args[1]
            if isinstance(attr, ast.Constant) and attr.value in (*self.names, *FORBIDDEN_METHODS):
                self._flag(node, f"looks up {attr.value!r} with {name}")
        called = self._resolve(func) or ""
        lookup = {n.lower() for rule in self.rules[1:] for n in rule.names  # e.g. keras.optimizers.get("adamw")
                  if called.rpartition(".")[2] in ("get", "deserialize")
                  and any(called.startswith(root + ".") for root in rule.roots)}
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                match = next(filter(None, (p.search(arg.value) for p in self.string_patterns)), None)
                if match:
                    self._flag(node, f"refers to {match.group(0)} in a string passed to {name or 'a call'}()")
                elif arg.value.lower() in lookup:
                    self._flag(node, f"asks {called} for {arg.value!r}")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=False):
            if (isinstance(key, ast.Constant) and key.value == "class_name" and isinstance(value, ast.Constant)
                    and value.value in self.names):
                self._flag(node, f"builds {value.value} from a configuration")
        self.generic_visit(node)


def audit_source(source: str, path: str = "<source>") -> list[Finding]:
    """Findings of one module's source text (a SyntaxError propagates)."""
    auditor = _Auditor(path)
    auditor.visit(ast.parse(source, filename=path))
    return sorted(set(auditor.findings), key=lambda f: (f.path, f.line, f.what))


def audit_directory(directory: Path) -> tuple[list[Finding], list[str]]:
    """(findings, files that could not be parsed) over every .py file under `directory`."""
    findings, unparsed = [], []
    for path in sorted(directory.rglob("*.py")):
        if "__MACOSX" in path.parts or path.is_symlink():
            continue
        relative = path.relative_to(directory).as_posix()
        try:
            findings += audit_source(path.read_text(encoding="utf-8", errors="replace"), relative)
        except (SyntaxError, ValueError):
            unparsed.append(relative)
    return findings, unparsed


@hidden_test("from-scratch audit: no forbidden Keras layers or KerasHub samplers in the source; points scale with "
             "the points earned in the other parts", "audit", 1.0, timeout=30.0)
def test_no_forbidden_layers(ctx) -> float | None:
    findings, _ = audit_directory(Path(ctx.submission_dir))
    if findings:
        shown = "\n".join(f"  {f}" for f in findings[:20])
        more = f"\n  ... and {len(findings) - 20} more" if len(findings) > 20 else ""
        raise TestFailure(
            "the submission uses layers, utilities or libraries that the academic rules forbid (write them yourself; "
            "keras.layers.RNN, Embedding, Dense, LayerNormalization, Dropout and tf.* / keras.ops.* are allowed; "
            "Keras's enable_lora is not):\n"
            f"{shown}{more}"
        )
    if ctx.earned_fraction is None:
        return None
    if ctx.earned_fraction <= 0:
        raise TestFailure("no forbidden layers found, but no other test passed yet: the audit's points scale with "
                          "the points earned in the other parts.")
    return Scaled(ctx.earned_fraction, f"passed: no forbidden layers found. Its points are scaled by the fraction of "
                                       f"points earned in the other parts ({ctx.earned_fraction:.2%}).")
