"""Trains a decoder-only language model and generates with the key/value cache.

The model, `keras_mha.TransformerCausalLM`: token embeddings plus
`SinusoidalPositionEncoding`, a stack of `TransformerDecoderBlock`s with no
encoder (causal self-attention only) and a final linear layer over the
vocabulary. It learns the English side of the generated corpus of
`keras_mha.seq2seq.data` (nothing is downloaded), tokenized with a lossless
subword tokenizer, reports the held-out perplexity and next-token accuracy,
and continues held-out prompts with `keras_mha.generate` (keras_hub's
greedy sampler, compiled), once with the blocks' key/value caches and once
recomputing the whole buffer each step: the two give the same tokens, and
their speeds are compared. The last line printed is a JSON summary.

    python examples/language_model.py
"""

import argparse
import json
import math
import os
import time

import keras
import numpy as np

import keras_mha
from keras_mha import seq2seq
from keras_mha.seq2seq.tokenizers import END_ID
from keras_mha.seq2seq.tokenizers import START_ID


def token_ids(tokenizer, sentences):
    """`(n, longest + 2)` ids: start, the sentence's pieces, end, padding."""
    import tensorflow as tf

    pieces = tf.function(tokenizer)(tf.constant(sentences)).to_list()
    longest = max(len(row) for row in pieces) + 2
    ids = np.zeros((len(pieces), longest), "int32")
    for row, sentence in zip(ids, pieces):
        row[: len(sentence) + 2] = [START_ID, *sentence, END_ID]
    return ids


def timed_generate(model, prompts, max_length, rounds=5):
    """Ids generated with the cache and by recomputing, and the seconds of
    the fastest of `rounds` interleaved runs of each (the first compiles;
    interleaving lets both see the same load on a shared machine). Without
    an end token every row runs to `max_length`: a known number of tokens,
    whatever the model has learned."""
    ids, best = {}, {True: math.inf, False: math.inf}
    for _ in range(rounds):
        for use_cache in (True, False):
            start = time.perf_counter()
            out = keras_mha.generate(
                model, prompts, max_length, use_cache=use_cache
            )
            ids[use_cache] = keras.ops.convert_to_numpy(out)
            best[use_cache] = min(best[use_cache], time.perf_counter() - start)
    return ids, best


def run(args):
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    pairs = seq2seq.data.generate_pairs(args.num_sentences, seed=args.seed)
    sentences = [english for english, _ in pairs]
    split = int(len(sentences) * 0.9)
    tokenizer = seq2seq.train_tokenizer(sentences[:split], args.vocabulary_size)
    ids = token_ids(tokenizer, sentences)
    x_train, y_train = ids[:split, :-1], ids[:split, 1:]
    x_test, y_test = ids[split:, :-1], ids[split:, 1:]

    model = keras_mha.TransformerCausalLM(
        tokenizer.vocabulary_size(),
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        num_layers=args.num_layers,
        dropout=args.dropout,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    checkpoint = os.path.join(args.output_dir, "language_model.keras")
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_split=0.1,
        callbacks=[
            keras.callbacks.EarlyStopping(
                patience=args.patience, restore_best_weights=True
            ),
            keras.callbacks.ModelCheckpoint(checkpoint, save_best_only=True),
        ],
        verbose=args.verbose,
    )
    seconds = time.perf_counter() - start
    # The Embedding's mask reaches the loss: padding is not counted.
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)

    # Prompts: the first pieces of held-out sentences, of mixed lengths.
    held_out = ids[split:][: args.num_prompts]
    lengths = 2 + np.arange(len(held_out)) % 3  # start + 1 to 3 pieces
    prompts = np.zeros((len(held_out), int(lengths.max())), dtype="int32")
    for row, (sentence, length) in enumerate(zip(held_out, lengths)):
        prompts[row, :length] = sentence[:length]
    ids, best = timed_generate(model, prompts, args.max_length)
    cached, recomputed = ids[True], ids[False]
    cached_s, recompute_s = best[True], best[False]
    tokens = prompts.shape[0] * (args.max_length - lengths.min())
    ended = keras.ops.convert_to_numpy(
        keras_mha.generate(model, prompts[:3], args.max_length, end_id=END_ID)
    )
    samples = [tokenizer.detokenize(row[row != 0]) for row in ended]
    for sample in samples:
        print(sample)
    return {
        "perplexity": round(math.exp(loss), 3),
        "token_accuracy": round(float(accuracy), 4),
        "epochs": len(history.history["loss"]),
        "seconds": round(seconds, 1),
        "same_tokens": bool(np.array_equal(cached, recomputed)),
        "cached_tokens_per_second": round(tokens / cached_s, 1),
        "recompute_tokens_per_second": round(tokens / recompute_s, 1),
        "cached_speedup": round(recompute_s / cached_s, 2),
        "samples": [str(sample) for sample in samples],
        "checkpoint": checkpoint,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--num-sentences", type=int, default=5000)
    add("--vocabulary-size", type=int, default=600, help="subword pieces")
    add("--output-dir", default="runs/language_model")
    add("--hidden-dim", type=int, default=64)
    add("--num-heads", type=int, default=4)
    add("--intermediate-dim", type=int, default=128)
    add("--num-layers", type=int, default=2)
    add("--dropout", type=float, default=0.1)
    add("--batch-size", type=int, default=64)
    add("--epochs", type=int, default=10, help="most epochs (early stopping)")
    add("--patience", type=int, default=2)
    add("--learning-rate", type=float, default=1e-3)
    add(
        "--max-length",
        type=int,
        default=48,
        help="tokens per generated sequence, the prompt included",
    )
    add("--num-prompts", type=int, default=32, help="held-out prompts")
    add("--seed", type=int, default=0)
    add("--verbose", type=int, default=1, help="Keras progress bar: 0, 1, 2")
    return parser.parse_args(argv)


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
