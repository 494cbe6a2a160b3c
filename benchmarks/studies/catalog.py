"""Subword vs word-level translation of real text, in one run.

Trains two translators on the same split of the same pairs (by default the
English -> French gettext catalogs of the installed Django and Sphinx:
human translations), for the same epochs, with the same model size and
training seeds, and scores both on the held-out targets as written (case,
punctuation and spacing count) with sacrebleu's BLEU and chrF:

- **subword**: the package's translator, `seq2seq.build_translator` and
  `seq2seq.fit_translator` (lossless SentencePiece pieces, embeddings
  scaled by `sqrt(hidden_dim)`, label smoothing 0.1, length buckets);
- **word-level**: the baseline, the earlier word-level translator: a
  `TextVectorization` word vocabulary per language (lowercased,
  punctuation stripped), `TransformerSeq2Seq(scale_embeddings=False)`
  and plain `SparseCategoricalCrossentropy`, decoding at most 24 tokens.
  Its batches are padded to their own longest pair instead of the whole
  corpus's, which changes the time, not the arithmetic (padding is
  masked).

Both decode greedily from the weights of their best validation epoch. The
last line printed is a JSON summary.

    python -m benchmarks.studies.catalog --epochs 30 --seeds 0,1,2
"""

import argparse
import json
import time

import keras
import numpy as np

from keras_mha import seq2seq

START, END = "[start]", "[end]"
# The word-level baseline's standardization: lowercase, then drop these
# characters.
PUNCTUATION = r"[!\"#$%&'()*+,\-./:;<=>?@\\^_`{|}~¿¡«»]"
WORD_MAX_LENGTH = 24


def standardize(text):
    import tensorflow as tf

    text = tf.strings.lower(text, encoding="utf-8")
    return tf.strings.regex_replace(text, PUNCTUATION, "")


def word_dataset(source_ids, target_ids, batch_size, shuffle, seed):
    """Teacher-forcing batches, each padded to its own longest pair."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(
        (
            tf.ragged.constant(source_ids, tf.int32),
            tf.ragged.constant(target_ids, tf.int32),
        )
    )
    if shuffle:
        data = data.shuffle(len(source_ids), seed=seed)
    data = data.map(lambda s, t: (s, t[:-1], t[1:]))
    data = data.padded_batch(batch_size)
    return data.map(lambda s, i, labels: ((s, i), labels))


def train_word_level(args, train, validation, test, seed):
    """The word-level baseline translator; returns its translations."""
    vectorize = {}
    for side, texts in (
        ("source", [s for s, _ in train]),
        ("target", [f"{START} {t} {END}" for _, t in train]),
    ):
        vectorize[side] = keras.layers.TextVectorization(
            standardize=standardize
        )
        vectorize[side].adapt(texts)
    vocabulary = vectorize["target"].get_vocabulary()
    start_id, end_id = vocabulary.index(START), vocabulary.index(END)

    def ids(pairs):
        sources = keras.ops.convert_to_numpy(
            vectorize["source"](np.array([s for s, _ in pairs]))
        )
        targets = keras.ops.convert_to_numpy(
            vectorize["target"](
                np.array([f"{START} {t} {END}" for _, t in pairs])
            )
        )
        return [r[r != 0] for r in sources], [r[r != 0] for r in targets]

    model = seq2seq.TransformerSeq2Seq(
        vectorize["source"].vocabulary_size(),
        len(vocabulary),
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        scale_embeddings=False,
    )
    model.compile(
        keras.optimizers.Adam(args.learning_rate),
        keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0
        ),
    )
    model.fit(
        word_dataset(*ids(train), args.batch_size, True, seed),
        validation_data=word_dataset(
            *ids(validation), args.batch_size, False, seed
        ),
        epochs=args.epochs,
        callbacks=[
            keras.callbacks.EarlyStopping(
                patience=args.epochs, restore_best_weights=True
            )
        ],
        verbose=0,
    )
    sources = keras.ops.convert_to_numpy(
        vectorize["source"](np.array([s for s, _ in test]))
    )
    # A source with no known word still needs one token to attend to.
    sources[:, 0] = np.where(sources[:, 0] == 0, 1, sources[:, 0])
    out = keras.ops.convert_to_numpy(
        seq2seq.decode(model, sources, WORD_MAX_LENGTH, start_id, end_id)
    )
    translations = []
    for row in out[:, 1:]:
        words = []
        for token in row:
            if token in (0, end_id):
                break
            words.append(vocabulary[token])
        translations.append(" ".join(words))
    return translations


def train_subword(args, train, validation, test, seed, output_dir):
    """The package's subword translator; returns its translations."""
    translator = seq2seq.build_translator(
        train,
        vocabulary_size=args.vocabulary_size,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
    )
    seq2seq.fit_translator(
        translator,
        train,
        validation,
        output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.epochs,
        verbose=0,
        seed=seed,
    )
    return translator.translate([s for s, _ in test])


def run(args):
    import tempfile

    if args.pairs:
        pairs = seq2seq.data.read_pairs(args.pairs)
    else:
        pairs = seq2seq.data.catalog_pairs(seq2seq.data.installed_catalogs())
    if args.num_pairs:
        pairs = pairs[: args.num_pairs]
    train, validation, test = seq2seq.data.split_pairs(pairs, seed=0)
    references = [t for _, t in test]
    rows = []
    for seed in args.seeds:
        for model in ("word-level", "subword"):
            keras.utils.set_random_seed(seed)
            started = time.time()
            if model == "subword":
                with tempfile.TemporaryDirectory() as output_dir:
                    translations = train_subword(
                        args, train, validation, test, seed, output_dir
                    )
            else:
                translations = train_word_level(
                    args, train, validation, test, seed
                )
            metrics = seq2seq.evaluate(translations, references)
            rows.append(
                {
                    "model": model,
                    "seed": seed,
                    **{k: round(v, 4) for k, v in metrics.items()},
                    "seconds": round(time.time() - started, 1),
                    "examples": [
                        (source, target, translation)
                        for (source, target), translation in zip(
                            test, translations
                        )
                    ][: args.examples],
                }
            )
            print(json.dumps(rows[-1], ensure_ascii=False))
    means = {
        model: {
            metric: round(
                float(
                    np.mean([r[metric] for r in rows if r["model"] == model])
                ),
                4,
            )
            for metric in ("exact_match", "bleu", "chrf")
        }
        for model in ("word-level", "subword")
    }
    return {
        "rows": rows,
        "pairs": len(pairs),
        "split": [len(train), len(validation), len(test)],
        "epochs": args.epochs,
        "seeds": args.seeds,
        "mean": means,
        "subword_better_on_every_seed": all(
            sub[m] > word[m]
            for word, sub in zip(rows[::2], rows[1::2])
            for m in ("bleu", "chrf")
        ),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--pairs", help="source<TAB>target file; default: the catalogs")
    add("--num-pairs", type=int, default=None, help="first N pairs only")
    add("--epochs", type=int, default=30)
    add(
        "--seeds",
        type=lambda text: [int(seed) for seed in text.split(",")],
        default=[0, 1, 2],
        help="training seeds, comma-separated (the split is fixed)",
    )
    add("--vocabulary-size", type=int, default=2000, help="subword pieces")
    add("--hidden-dim", type=int, default=64)
    add("--intermediate-dim", type=int, default=128)
    add("--batch-size", type=int, default=64)
    add("--learning-rate", type=float, default=1e-3)
    add("--examples", type=int, default=10, help="held-out rows to keep")
    return parser.parse_args(argv)


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
