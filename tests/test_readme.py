"""The README's example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks(section):
    text = README.read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def test_fifteen_line_example_runs_and_builds_a_model():
    (code,) = _python_blocks("Fifteen lines")
    assert len(code.strip().splitlines()) <= 15
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    model = namespace["model"]
    assert model.output_shape == (None, None, 1000)
    assert model.count_params() > 0


def test_seq2seq_example_runs_and_translates(tmp_path, monkeypatch):
    (code,) = _python_blocks("Translation and generation")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    translations = namespace["translations"]
    assert len(translations) == 2 and translations[1] == ""
    assert all(isinstance(text, str) for text in translations)
    assert (tmp_path / "runs" / "readme" / "translator.keras").exists()
