"""Compiled vs eager decoding of a trained translator, in one run.

Translates the first `--num-sentences` held-out sentences of a
`translate.py` run with `Translator.translate`, compiled (the default) and
with `compile=False` (the sampler loop op by op), checks that both give the
same translations, and reports the fastest of interleaved rounds (the
compiled function is traced before timing). The last line printed is a JSON
summary.

    python examples/translate.py --output-dir runs/translate
    python -m benchmarks.studies.decoding --run-dir runs/translate
"""

import argparse
import json
import os
import time

from keras_mha import seq2seq


def run(args):
    translator = seq2seq.Translator.load(args.run_dir)
    pairs = seq2seq.data.read_pairs(os.path.join(args.run_dir, "held_out.tsv"))
    sentences = [source for source, _ in pairs][: args.num_sentences]
    outputs = {
        compile: translator.translate(sentences, compile=compile)
        for compile in (True, False)
    }
    best = {True: float("inf"), False: float("inf")}
    for _ in range(args.rounds):
        for compile in (True, False):
            start = time.perf_counter()
            translator.translate(sentences, compile=compile)
            best[compile] = min(best[compile], time.perf_counter() - start)
    return {
        "sentences": len(sentences),
        "compiled_seconds": round(best[True], 3),
        "eager_seconds": round(best[False], 3),
        "speedup": round(best[False] / best[True], 1),
        "same_translations": outputs[True] == outputs[False],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-dir", default="runs/translate")
    parser.add_argument("--num-sentences", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    summary = run(parser.parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
