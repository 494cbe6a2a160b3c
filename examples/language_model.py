"""Trains a decoder-only language model and generates with the key/value cache.

The model: token embeddings plus `SinusoidalPositionEncoding`, a stack of
`TransformerDecoderBlock`s with no encoder (causal self-attention only) and a
final linear layer over the vocabulary, built with the functional API. It
learns the English side of the generated corpus of `translation_data.py`
(nothing is downloaded), tokenized with `TextVectorization`, reports the
held-out perplexity and next-token accuracy, and continues held-out prompts
with `keras_mha.export.generate` (keras_hub's greedy sampler), once with the
blocks' key/value caches and once recomputing the whole buffer each step:
the two give the same tokens, and their speeds are compared. The last line
printed is a JSON summary.

    python examples/language_model.py
"""

import argparse
import json
import math
import os
import time

import keras
import numpy as np
import translation_data
from translate import END
from translate import START
from translate import make_vectorizer

import keras_mha
from keras_mha.export import generate


def build_language_model(
    vocabulary_size,
    hidden_dim=64,
    num_heads=4,
    intermediate_dim=128,
    num_layers=2,
    dropout=0.1,
):
    """`token_ids (b, t) -> next-token logits (b, t, vocabulary_size)`.

    A plain stack, so `generate` decodes it with the key/value caches.
    """
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, hidden_dim, mask_zero=True)(
        token_ids
    )
    x = keras_mha.SinusoidalPositionEncoding()(x)
    for i in range(num_layers):
        x = keras_mha.TransformerDecoderBlock(
            num_heads,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            name=f"decoder_block_{i}",
        )(x)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
    return keras.Model(token_ids, logits, name="language_model")


def load_sentences(num_sentences, seed):
    """`[start] sentence [end]` texts: the corpus's English side."""
    pairs = translation_data.generate_pairs(num_sentences, seed=seed)
    return [f"{START} {english} {END}" for english, _ in pairs]


def next_token_data(ids):
    """Inputs and targets shifted by one; padding (0) is masked out."""
    return ids[:, :-1], ids[:, 1:]


def timed_generate(model, prompts, max_length, end_id, use_cache):
    """Generated ids and the seconds of the fastest of three runs."""
    ids, best = None, math.inf
    for _ in range(3):  # The first run traces; keep the fastest.
        start = time.perf_counter()
        ids = generate(
            model, prompts, max_length, end_id=end_id, use_cache=use_cache
        )
        ids = keras.ops.convert_to_numpy(ids)
        best = min(best, time.perf_counter() - start)
    return ids, best


def run(args):
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    sentences = load_sentences(args.num_sentences, args.seed)
    split = int(len(sentences) * 0.9)
    vectorizer = make_vectorizer()
    vectorizer.adapt(sentences[:split])
    vocabulary = vectorizer.get_vocabulary()
    ids = keras.ops.convert_to_numpy(vectorizer(np.array(sentences)))
    x_train, y_train = next_token_data(ids[:split])
    x_test, y_test = next_token_data(ids[split:])

    model = build_language_model(
        len(vocabulary),
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

    # Prompts: the first words of held-out sentences, of mixed lengths.
    end_id = vocabulary.index(END)
    held_out = ids[split:][: args.num_prompts]
    lengths = 2 + np.arange(len(held_out)) % 3  # [start] + 1 to 3 words
    prompts = np.zeros((len(held_out), int(lengths.max())), dtype="int32")
    for row, (sentence, length) in enumerate(zip(held_out, lengths)):
        prompts[row, :length] = sentence[:length]
    cached, cached_s = timed_generate(
        model, prompts, args.max_length, end_id, use_cache=True
    )
    recomputed, recompute_s = timed_generate(
        model, prompts, args.max_length, end_id, use_cache=False
    )
    tokens = prompts.shape[0] * (args.max_length - lengths.min())
    samples = [
        " ".join(vocabulary[i] for i in row if i not in (0, end_id))
        for row in cached[:3]
    ]
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
        "samples": samples,
        "checkpoint": checkpoint,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--num-sentences", type=int, default=5000)
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
        default=24,
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
