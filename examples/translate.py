"""Trains the encoder-decoder Transformer of "Attention Is All You Need".

A thin script over `keras_mha.seq2seq`: learns lossless subword tokenizers
from the training pairs, trains a `TransformerSeq2Seq` with `model.fit` on
length-bucketed batches, translates the held-out pairs, reports exact match,
BLEU and chrF on the texts as written, and (on the TensorFlow backend)
exports a SavedModel that serves strings. The pairs come from `--pairs FILE`
(`source<TAB>target` lines) or a generated corpus (`--corpus`). The last
line printed is a JSON summary.

    python examples/translate.py                    # English -> French numbers
    python examples/translate.py --pairs pairs.tsv  # your own pairs
"""

import argparse
import json
import os
import time

import keras
import keras_hub

from keras_mha import seq2seq
from keras_mha.seq2seq.export import export_translator

CORPORA = {
    "numbers": seq2seq.data.number_pairs,
    "grammar": seq2seq.data.generate_pairs,
}


def run(args):
    """Trains, evaluates and exports; returns the summary dict."""
    started = time.time()
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    if args.pairs:
        pairs = seq2seq.data.read_pairs(args.pairs)
    else:
        pairs = CORPORA[args.corpus](args.num_pairs, seed=args.seed)
    train_pairs, validation_pairs, test_pairs = seq2seq.data.split_pairs(
        pairs, seed=args.seed
    )
    print(
        f"{len(train_pairs)} training, {len(validation_pairs)} validation, "
        f"{len(test_pairs)} held-out pairs"
    )
    # Saved for the other examples, which draw or serve held-out sentences.
    with open(
        os.path.join(args.output_dir, "held_out.tsv"), "w", encoding="utf-8"
    ) as file:
        file.writelines(f"{s}\t{t}\n" for s, t in test_pairs)
    translator = seq2seq.build_translator(
        train_pairs,
        vocabulary_size=args.vocabulary_size,
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        num_layers=args.num_layers,
        dropout=args.dropout,
        max_length=args.max_length,
    )
    epochs = seq2seq.fit_translator(
        translator,
        train_pairs,
        validation_pairs,
        args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        label_smoothing=args.label_smoothing,
        patience=args.patience,
        bucketed=not args.no_bucketing,
        steps_per_epoch=args.steps_per_epoch,
        verbose=args.verbose,
        seed=args.seed,
    )
    sampler = (
        keras_hub.samplers.BeamSampler(args.beam_width)
        if args.beam_width > 1
        else None
    )
    sources, references = zip(*test_pairs)
    translations = translator.translate(sources, sampler=sampler)
    metrics = seq2seq.evaluate(translations, references)
    for source, reference, translation in list(
        zip(sources, references, translations)
    )[:5]:
        print(f"  {source}  ->  {translation}   (reference: {reference})")
    # The SavedModel's graph runs TensorFlow ops: TensorFlow backend only.
    savedmodel = None
    if keras.backend.backend() == "tensorflow":
        savedmodel = export_translator(
            os.path.join(args.output_dir, "savedmodel"),
            translator,
            overwrite=True,
        )
    return {
        **{name: round(value, 4) for name, value in metrics.items()},
        "epochs": epochs,
        "seconds": round(time.time() - started, 1),
        "savedmodel": savedmodel,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--pairs", help="source<TAB>target file; default: --corpus")
    add(
        "--corpus",
        choices=sorted(CORPORA),
        default="numbers",
        help="generated corpus when --pairs is not given: English -> "
        "French sentences with spelled-out numbers, or the English -> "
        "Spanish-like grammar",
    )
    add("--num-pairs", type=int, default=4000, help="pairs to generate")
    add(
        "--output-dir",
        default="runs/translate",
        help="checkpoint, backup, logs, tokenizers and SavedModel go here",
    )
    add("--vocabulary-size", type=int, default=2000, help="subword pieces")
    add("--hidden-dim", type=int, default=64)
    add("--num-heads", type=int, default=4)
    add("--intermediate-dim", type=int, default=128)
    add("--num-layers", type=int, default=2, help="encoder and decoder blocks")
    add("--dropout", type=float, default=0.1)
    add("--batch-size", type=int, default=64)
    add("--epochs", type=int, default=15, help="most epochs (early stopping)")
    add("--steps-per-epoch", type=int, default=None)
    add("--patience", type=int, default=3)
    add("--learning-rate", type=float, default=1e-3)
    add("--label-smoothing", type=float, default=0.1)
    add(
        "--no-bucketing",
        action="store_true",
        help="pad every batch to the longest pair (slower)",
    )
    add(
        "--max-length",
        type=int,
        default=None,
        help="most target tokens decoded; default: from the training pairs",
    )
    add("--beam-width", type=int, default=1, help="1 decodes greedily")
    add("--seed", type=int, default=0)
    add("--verbose", type=int, default=1, help="Keras progress bar: 0, 1, 2")
    return parser.parse_args(argv)


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
