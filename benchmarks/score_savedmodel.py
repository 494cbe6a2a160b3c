"""Scores any string-to-string translation SavedModel on held-out pairs.

Feeds the sources of a `source<TAB>target` file to the SavedModel's
`serving_default` signature (`sentences` -> `translations`) and reports
exact match, BLEU and chrF (sacrebleu) against the targets as written:
case, punctuation and spacing count. `--examples N` prints N pairs side by
side. The last line printed is a JSON summary.

    python -m benchmarks.score_savedmodel \\
        --savedmodel runs/translate/savedmodel \\
        --pairs runs/translate/held_out.tsv --examples 10
"""

import argparse
import json

from keras_mha.seq2seq import data
from keras_mha.seq2seq import evaluate
from keras_mha.seq2seq.keras_free_serving import load_translate


def serve(savedmodel, sentences, batch_size=256):
    translate = load_translate(savedmodel)
    translations = []
    for i in range(0, len(sentences), batch_size):
        translations += translate(sentences[i : i + batch_size])
    return translations


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--savedmodel", required=True)
    parser.add_argument("--pairs", required=True, help="held-out TSV file")
    parser.add_argument("--examples", type=int, default=0)
    args = parser.parse_args(argv)
    sources, references = zip(*data.read_pairs(args.pairs))
    translations = serve(args.savedmodel, list(sources))
    for row in zip(sources, references, translations):
        if args.examples <= 0:
            break
        args.examples -= 1
        print(" | ".join(row))
    summary = {
        name: round(value, 4)
        for name, value in evaluate(translations, references).items()
    }
    summary["pairs"] = len(sources)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
