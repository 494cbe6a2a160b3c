"""One-off studies behind the translator's defaults, kept runnable.

Unlike the benchmarks (`python -m benchmarks.run`), each study was run
once to choose a default, and each gives one figure of
docs/translation.md ("Results"), with the command that made it:

- `python -m benchmarks.studies.catalog`: the subword translator against
  a word-level baseline on the gettext catalog pairs (the real-text
  table).
- `python -m benchmarks.studies.tokenizers`: SentencePiece unigram and
  BPE against WordPiece, round trip and tokens a text (the tokenizer
  default).
- `python -m benchmarks.studies.decoding --run-dir runs/demo`: compiled
  against op-by-op decoding (the `compile=True` default).
- `python -m benchmarks.studies.bucketing`: length-bucketed batches
  against padding to the longest pair (the `bucketed=True` default).
"""
