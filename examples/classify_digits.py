"""Classifies scikit-learn's 8x8 digits with a Transformer encoder.

Each image becomes a sequence of tokens (its 8 rows of 8 pixels, or its 64
pixels), projected by a Dense layer, plus `SinusoidalPositionEncoding`, then
a stack of `TransformerEncoderBlock`s, average pooling over the tokens and a
softmax classifier. The data ships with scikit-learn (nothing is downloaded).
The last line printed is a JSON summary.

    python examples/classify_digits.py
"""

import argparse
import json
import os
import time

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_mha


def load_sequences(tokens="rows", test_size=0.2, seed=0):
    """The digits as token sequences, split into train and test.

    Args:
        tokens: `"rows"` for 8 tokens of 8 pixels, `"pixels"` for 64 tokens
            of 1 pixel.
        test_size: float. Fraction of the images held out for test.
        seed: int. Seed of the stratified split.

    Returns:
        `(x_train, x_test, y_train, y_test)`; `x` has shape
        `(images, sequence_length, features)` with pixels scaled to [0, 1].
    """
    shapes = {"rows": (8, 8), "pixels": (64, 1)}
    if tokens not in shapes:
        raise ValueError(
            f"`tokens` expected one of {sorted(shapes)}. Received: "
            f"tokens={tokens!r}"
        )
    digits = load_digits()
    images = digits.images.astype("float32") / 16.0  # (n, 8, 8), 0..16
    x = images.reshape((-1, *shapes[tokens]))
    return train_test_split(
        x,
        digits.target,
        test_size=test_size,
        stratify=digits.target,
        random_state=seed,
    )


def build_classifier(
    sequence_length,
    features,
    hidden_dim=64,
    num_heads=4,
    intermediate_dim=128,
    num_layers=2,
    dropout=0.1,
    num_classes=10,
):
    """Token projection, position encoding, encoder blocks, pool, softmax."""
    inputs = keras.Input((sequence_length, features), name="tokens")
    x = keras.layers.Dense(hidden_dim, name="token_projection")(inputs)
    x = keras_mha.SinusoidalPositionEncoding(name="position")(x)
    for i in range(num_layers):
        x = keras_mha.TransformerEncoderBlock(
            num_heads,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            name=f"encoder_block_{i}",
        )(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="classes"
    )(x)
    return keras.Model(inputs, outputs, name="digits_transformer")


def run(args):
    """Trains and tests the classifier; returns the summary dict."""
    started = time.time()
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    x_train, x_test, y_train, y_test = load_sequences(
        args.tokens, seed=args.seed
    )
    model = build_classifier(
        x_train.shape[1],
        x_train.shape[2],
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        num_layers=args.num_layers,
        dropout=args.dropout,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        x_train,
        y_train,
        validation_split=0.1,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=[
            keras.callbacks.EarlyStopping(
                patience=args.patience, restore_best_weights=True
            ),
            keras.callbacks.ModelCheckpoint(
                os.path.join(args.output_dir, "digits.keras"),
                save_best_only=True,
            ),
        ],
        verbose=args.verbose,
    )
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {
        "test_accuracy": round(float(accuracy), 4),
        "test_images": len(y_test),
        "epochs": len(history.epoch),
        "seconds": round(time.time() - started, 1),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--tokens",
        choices=["rows", "pixels"],
        default="rows",
        help="8 row tokens of 8 pixels, or 64 pixel tokens",
    )
    add("--hidden-dim", type=int, default=64)
    add("--num-heads", type=int, default=4)
    add("--intermediate-dim", type=int, default=128)
    add("--num-layers", type=int, default=2)
    add("--dropout", type=float, default=0.1)
    add("--batch-size", type=int, default=32)
    add("--epochs", type=int, default=60, help="most epochs (early stopping)")
    add("--steps-per-epoch", type=int, default=None)
    add(
        "--patience",
        type=int,
        default=10,
        help="epochs without a better validation loss before stopping",
    )
    add("--learning-rate", type=float, default=1e-3)
    add(
        "--output-dir",
        default="runs/classify_digits",
        help="the best model (.keras) goes here",
    )
    add("--seed", type=int, default=0)
    add("--verbose", type=int, default=2, help="Keras progress bar: 0, 1, 2")
    return parser.parse_args(argv)


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
