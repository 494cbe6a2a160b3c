"""The Python blocks of the README and the docs pages, with their test
markers.

A block is a fenced ```` ```python ```` block. The line before it may say
how the tests treat it: `<!-- test: skip (reason) -->` is not run (it needs
a GPU, several devices or a download), and `<!-- test: tensorflow -->` (or
other backends' names, comma-separated) runs on those backends only.
"""

import dataclasses
import re

_BLOCK = re.compile(
    r"(?:<!--\s*test:\s*(?P<marker>[^>]*?)\s*-->\s*\n)?"
    r"^```python\n(?P<code>.*?)^```",
    flags=re.DOTALL | re.MULTILINE,
)


@dataclasses.dataclass
class Block:
    code: str
    line: int
    skip: str | None  # the reason, for a block that is not run
    backends: tuple  # the backends it runs on; empty for all


def python_blocks(text):
    """The Python blocks of a Markdown text, in order."""
    blocks = []
    for match in _BLOCK.finditer(text):
        marker = match.group("marker") or ""
        skip, backends = None, ()
        if marker.startswith("skip"):
            skip = marker[len("skip") :].strip(" ()") or "marked skip"
        elif marker:
            backends = tuple(name.strip() for name in marker.split(","))
        line = text.count("\n", 0, match.start("code")) + 1
        blocks.append(Block(match.group("code"), line, skip, backends))
    return blocks


def run_blocks(blocks, path, backend, namespace=None):
    """Runs the blocks in order in one namespace (a new one, or the given
    one to go on from earlier blocks); returns the namespace and the
    reasons of the blocks left out."""
    if namespace is None:
        namespace = {"__name__": "__docs__"}
    left_out = []
    for block in blocks:
        if block.skip:
            left_out.append(block.skip)
            continue
        if block.backends and backend not in block.backends:
            left_out.append(f"{', '.join(block.backends)} backends only")
            continue
        # Blank lines first, so tracebacks give the page's line numbers.
        source = "\n" * (block.line - 1) + block.code
        exec(compile(source, str(path), "exec"), namespace)
    return namespace, left_out
