"""The documentation: the site builds in strict mode, every docstring
example runs as a doctest, every Python block of the guides runs."""

import doctest
import importlib
import importlib.util
import inspect
import os
import pathlib
import pkgutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_mha
from tests.docs_blocks import python_blocks
from tests.docs_blocks import run_blocks

ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
TENSORFLOW = BACKEND == "tensorflow"
# Modules whose examples need the TensorFlow backend, with the reason.
TENSORFLOW_ONLY = {
    "keras_mha.seq2seq.export": "a SavedModel export is a TensorFlow graph",
    # Each trains or decodes a translator (tens of seconds); the translator
    # runs on every backend in tests/test_seq2seq_*.py.
    "keras_mha.seq2seq.training": "translator examples: TensorFlow run only",
    "keras_mha.seq2seq.translator": "translator examples: TensorFlow run only",
}
MODULES = sorted(
    ["keras_mha"]
    + [
        module.name
        for module in pkgutil.walk_packages(keras_mha.__path__, "keras_mha.")
        # Run by path in a process without Keras; no examples.
        if module.name != "keras_mha.seq2seq.keras_free_serving"
    ]
)
PAGES = sorted(path.name for path in (ROOT / "docs").glob("*.md"))


def test_the_site_builds_in_strict_mode(tmp_path):
    if not TENSORFLOW:
        pytest.skip("the site does not depend on the backend: TF run only")
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail(
                "mkdocs is missing: `make test` installs the docs extra"
            )
        pytest.skip("mkdocs is not installed (the `docs` extra)")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # The API reference is generated from the docstrings.
    api = (tmp_path / "site" / "api" / "layers" / "index.html").read_text()
    assert "num_heads" in api and "Defaults to" in api


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    if name in TENSORFLOW_ONLY and not TENSORFLOW:
        pytest.skip(TENSORFLOW_ONLY[name])
    monkeypatch.chdir(tmp_path)  # examples write files
    module = importlib.import_module(name)
    # Only the three names a user has: examples spell out the rest.
    globs = {"keras": keras, "np": np, "keras_mha": keras_mha}
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    report = []
    for test in finder.find(module, name, globs=dict(globs)):
        if test.examples:
            keras.utils.set_random_seed(1)
            runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)[-6000:]


@pytest.mark.parametrize("page", PAGES)
def test_guide_blocks_run(page, tmp_path, monkeypatch):
    path = ROOT / "docs" / page
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{page} has no Python block")
    monkeypatch.chdir(tmp_path)
    _, left_out = run_blocks(blocks, path, BACKEND)
    if len(left_out) == len(blocks):
        pytest.skip("; ".join(left_out))


def _defined_in(module):
    """The public functions and classes that `module` defines."""
    return [
        item
        for name, item in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(item) or inspect.isclass(item))
        and item.__module__ == module.__name__
    ]


def test_docstrings_have_args_returns_and_examples():
    """Every public function and class of the API says what it takes
    (`Args:`, when it takes anything), what it returns (`Returns:`, for a
    function) and how it is called (`Example:`)."""
    seq2seq = keras_mha.seq2seq
    public = [
        *(getattr(keras_mha, name) for name in keras_mha.__all__),
        *(getattr(seq2seq, name) for name in seq2seq.__all__ if name != "data"),
        *_defined_in(seq2seq.data),
        *_defined_in(seq2seq.serving),
        *_defined_in(seq2seq.tokenizers),
        *_defined_in(seq2seq.pipeline),
        *_defined_in(seq2seq.persistence),
        *_defined_in(keras_mha.saving),
        seq2seq.Translator.translate,
        seq2seq.Translator.strings_to_strings,
        seq2seq.Translator.dataset,
        seq2seq.Translator.save,
        seq2seq.Translator.load,
        seq2seq.tokenizers.TokenizerPair.source_ids,
        seq2seq.tokenizers.TokenizerPair.target_texts,
        seq2seq.tokenizers.TokenizerPair.token_ids,
        seq2seq.decoding.decode_function,
    ]
    missing = []
    for item in public:
        doc = item.__doc__ or ""
        needs = ["Example:"]
        function = item.__init__ if inspect.isclass(item) else item
        if [p for p in inspect.signature(function).parameters if p != "self"]:
            needs.append("Args:")
        if not inspect.isclass(item):
            needs.append("Returns:")
        missing += [
            f"{item.__qualname__}: {section}"
            for section in needs
            if section not in doc
        ]
    assert missing == []


def test_block_markers_skip_and_pick_backends(tmp_path):
    text = (
        "Intro.\n\n```python\nran = ['all']\n```\n\n"
        "<!-- test: skip (needs a GPU) -->\n```python\nraise SystemExit\n```\n"
        "<!-- test: tensorflow, jax -->\n```python\nran.append('tf-jax')\n```\n"
        "```text\nnot python\n```\n"
    )
    blocks = python_blocks(text)
    assert [(b.skip, b.backends) for b in blocks] == [
        (None, ()),
        ("needs a GPU", ()),
        (None, ("tensorflow", "jax")),
    ]
    namespace, left_out = run_blocks(blocks, tmp_path / "page.md", "torch")
    assert namespace["ran"] == ["all"]
    assert left_out == ["needs a GPU", "tensorflow, jax backends only"]
    namespace, _ = run_blocks(blocks, tmp_path / "page.md", "jax")
    assert namespace["ran"] == ["all", "tf-jax"]
