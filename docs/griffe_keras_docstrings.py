"""A griffe extension for the API reference: Keras-style docstrings.

Keras writes `Example:` followed by a blank line and unindented `>>>`
lines; griffe's Google-style parser reads a section only from indented
lines. This indents what follows `Example:` / `Examples:` up to the next
section heading, so the examples render as code, not as quotes.
"""

import re

import griffe

_HEADING = re.compile(r"^[A-Z][A-Za-z ]*:$")


def indent_examples(text):
    lines = text.splitlines()
    out, inside = [], False
    for line in lines:
        if _HEADING.match(line):
            inside = line in ("Example:", "Examples:")
            out.append(line)
        elif inside and line.strip():
            out.append("    " + line)
        else:
            out.append(line)
    return "\n".join(out)


class KerasDocstrings(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = indent_examples(obj.docstring.value)
