"""Training throughput with length-bucketed batches vs padding to the
corpus maximum, on the same model, data and batch size, in one run.

Counts the non-padding target tokens that each kind of epoch trains on and
times whole `model.fit` epochs (one warm-up epoch each, which also traces
the train function, then the fastest of interleaved rounds). The corpus is
the English -> French gettext catalogs of the installed Django and Sphinx
(human translations: mostly short strings, a few very long), or `--pairs`.
The last line printed is a JSON summary.

    python -m benchmarks.studies.bucketing
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_mha import seq2seq


def epoch_stats(translator, pairs, batch_size, bucketed):
    """`(dataset, non-padding target tokens, all target positions)`."""
    data = translator.dataset(pairs, batch_size, bucketed=bucketed)
    real = total = 0
    for _, labels in data:
        labels = labels.numpy()
        real += int(np.sum(labels != 0))
        total += labels.size
    return data, real, total


def run(args):
    keras.utils.set_random_seed(0)
    if args.pairs:
        pairs = seq2seq.data.read_pairs(args.pairs)
    else:
        pairs = seq2seq.data.catalog_pairs(seq2seq.data.installed_catalogs())
    translator = seq2seq.build_translator(
        pairs, vocabulary_size=args.vocabulary_size, max_length=10_000
    )
    translator.model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0
        ),
    )
    modes = {}
    for name, bucketed in (("bucketed", True), ("padded", False)):
        data, real, total = epoch_stats(
            translator, pairs, args.batch_size, bucketed
        )
        translator.model.fit(data, epochs=1, verbose=0)  # warm-up, traces
        modes[name] = {"data": data, "real": real, "total": total}
    best = {name: float("inf") for name in modes}
    for _ in range(args.rounds):
        for name, mode in modes.items():
            start = time.perf_counter()
            translator.model.fit(mode["data"], epochs=1, verbose=0)
            best[name] = min(best[name], time.perf_counter() - start)
    summary = {"pairs": len(pairs), "batch_size": args.batch_size}
    for name, mode in modes.items():
        summary[name] = {
            "seconds_per_epoch": round(best[name], 2),
            "target_tokens_per_second": round(mode["real"] / best[name], 1),
            "padding_fraction": round(1 - mode["real"] / mode["total"], 3),
        }
    summary["speedup"] = round(
        summary["bucketed"]["target_tokens_per_second"]
        / summary["padded"]["target_tokens_per_second"],
        2,
    )
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pairs", help="source<TAB>target file")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vocabulary-size", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    summary = run(parser.parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
