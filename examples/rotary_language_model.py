"""Trains a tiny decoder-only language model with rotary positions.

The model has no position embedding: its Mistral-style
`TransformerDecoderBlock`s apply keras_hub's `RotaryEmbedding` to the
queries and keys (`rotary_embedding=`), with grouped-query attention
(`num_key_value_heads`), a causal sliding window (`sliding_window`), RMS
norms before each sub-layer and a SwiGLU feed-forward network, all as
block options (see docs/attention-options.md). The data are generated
(nothing is downloaded): each sequence is a random half repeated once, so
each token of the second half is the one `length / 2` positions back,
which attention can only find from positions. It reports the held-out
loss and the next-token accuracy on the second half; `--no-rotary` trains
the same model without any positions to compare. The last line printed is
a JSON summary.

    python examples/rotary_language_model.py
"""

import argparse
import json

import keras
import keras_hub
import numpy as np

import keras_mha


def build_model(
    vocabulary_size,
    hidden_dim=64,
    num_heads=4,
    num_key_value_heads=2,
    intermediate_dim=128,
    num_layers=2,
    sliding_window=9,
    rotary=True,
):
    """Token ids `(b, t)` to next-token logits `(b, t, vocabulary_size)`."""
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocabulary_size, hidden_dim)(tokens)
    for i in range(num_layers):
        x = keras_mha.TransformerDecoderBlock(
            num_heads,
            intermediate_dim=intermediate_dim,
            num_key_value_heads=num_key_value_heads,
            sliding_window=sliding_window,
            rotary_embedding=(
                keras_hub.layers.RotaryEmbedding() if rotary else None
            ),
            norm_first=True,
            normalization="rms_norm",
            use_gated_feedforward=True,
            activation="silu",
            use_bias=False,
            name=f"block_{i}",
        )(x)
    x = keras.layers.RMSNormalization(name="final_norm")(x)
    logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
    return keras.Model(tokens, logits)


def repeated_sequences(num, length, vocabulary_size, seed):
    """`(inputs, targets)`: random halves of `length // 2` tokens, twice."""
    rng = np.random.default_rng(seed)
    half = rng.integers(0, vocabulary_size, (num, length // 2))
    rows = np.concatenate([half, half, half[:, :1]], axis=1).astype("int32")
    return rows[:, :-1], rows[:, 1:]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--vocabulary-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--sliding-window", type=int, default=9)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--no-rotary", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def run(args):
    keras.utils.set_random_seed(args.seed)
    v = args.vocabulary_size
    train = repeated_sequences(args.train_size, args.length, v, args.seed)
    test = repeated_sequences(256, args.length, v, args.seed + 1)
    model = build_model(
        v,
        hidden_dim=args.hidden_dim,
        num_layers=args.num_layers,
        sliding_window=args.sliding_window,
        rotary=not args.no_rotary,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    initial_loss = float(model.evaluate(*test, verbose=0))
    model.fit(*train, epochs=args.epochs, batch_size=args.batch_size, verbose=2)
    predictions = model.predict(test[0], verbose=0).argmax(-1)
    second_half = slice(args.length // 2, None)
    accuracy = float((predictions == test[1])[:, second_half].mean())
    return {
        "rotary": not args.no_rotary,
        "initial_loss": initial_loss,
        "test_loss": float(model.evaluate(*test, verbose=0)),
        "test_accuracy_second_half": accuracy,
        "parameters": model.count_params(),
    }


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
