"""Trains the encoder-decoder Transformer of "Attention Is All You Need".

Source and target embeddings plus `SinusoidalPositionEncoding`, N encoder
blocks, N decoder blocks with cross-attention, and a final linear layer over
the target vocabulary (the softmax is in the loss and in the sampler). Trains
with `model.fit` on `source<TAB>target` pairs (`--pairs FILE`, or a generated
English -> Spanish-like corpus by default), decodes the held-out pairs step by
step, reports exact match and BLEU, and (on the TensorFlow backend) exports
a SavedModel that serves strings. The last line printed is a JSON summary.

    python examples/translate.py                   # the generated corpus
    python examples/translate.py --pairs spa.txt   # an Anki / Tatoeba file
"""

import argparse
import json
import os
import time

import keras
import keras_hub
import numpy as np
import tensorflow as tf
import translation_data

import keras_mha
from keras_mha.export import decode
from keras_mha.export import export_translator
from keras_mha.export import ids_to_text

START, END = "[start]", "[end]"
# Punctuation to drop; the brackets stay, so "[start]" and "[end]" survive.
_PUNCTUATION = r"[!\"#$%&'()*+,\-./:;<=>?@\\^_`{|}~¿¡«»]"


def standardize(text):
    """Lowercases (Unicode-aware) and strips punctuation: core TF ops only."""
    text = tf.strings.lower(text, encoding="utf-8")
    return tf.strings.regex_replace(text, _PUNCTUATION, "")


def make_vectorizer(vocabulary=None):
    """A `TextVectorization` that pads each batch to its longest sentence."""
    return keras.layers.TextVectorization(
        standardize=standardize, vocabulary=vocabulary
    )


def build_translator(
    source_vocabulary_size,
    target_vocabulary_size,
    hidden_dim=64,
    num_heads=4,
    intermediate_dim=128,
    num_layers=2,
    dropout=0.1,
):
    """Builds the translator as `(model, encoder, decoder)`.

    `encoder` maps source ids to the encoded source, `decoder` maps
    `[target_ids, encoded, source_mask]` to next-token logits (the contract
    of `keras_mha.export`), and `model` chains them for `fit`:
    `[source_ids, target_ids] -> logits`.
    """
    block_args = dict(
        num_heads=num_heads, intermediate_dim=intermediate_dim, dropout=dropout
    )
    source = keras.Input((None,), dtype="int32", name="source_ids")
    x = keras.layers.Embedding(
        source_vocabulary_size,
        hidden_dim,
        mask_zero=True,
        name="source_embedding",
    )(source)
    x = keras_mha.SinusoidalPositionEncoding(name="source_position")(x)
    for i in range(num_layers):
        x = keras_mha.TransformerEncoderBlock(
            name=f"encoder_block_{i}", **block_args
        )(x)
    encoder = keras.Model(source, x, name="encoder")

    target = keras.Input((None,), dtype="int32", name="target_ids")
    encoded = keras.Input((None, hidden_dim), name="encoded")
    source_mask = keras.Input((None,), dtype="bool", name="source_mask")
    y = keras.layers.Embedding(
        target_vocabulary_size,
        hidden_dim,
        mask_zero=True,
        name="target_embedding",
    )(target)
    y = keras_mha.SinusoidalPositionEncoding(name="target_position")(y)
    for i in range(num_layers):
        y = keras_mha.TransformerDecoderBlock(
            name=f"decoder_block_{i}", **block_args
        )(y, encoded, encoder_padding_mask=source_mask)
    # float32 logits, so the softmax of the loss is exact under mixed precision.
    logits = keras.layers.Dense(
        target_vocabulary_size, dtype="float32", name="logits"
    )(y)
    decoder = keras.Model(
        [target, encoded, source_mask], logits, name="decoder"
    )
    # The source mask is an explicit input; the Keras mask that the encoded
    # tensor carries is redundant, and accepting it avoids a warning.
    decoder.supports_masking = True

    source_ids = keras.Input((None,), dtype="int32", name="source")
    target_ids = keras.Input((None,), dtype="int32", name="target")
    logits = decoder(
        [target_ids, encoder(source_ids), keras.ops.not_equal(source_ids, 0)]
    )
    model = keras.Model([source_ids, target_ids], logits, name="translator")
    return model, encoder, decoder


def load_translator(run_dir):
    """Loads what `run` wrote to `run_dir`: the best checkpoint and the
    vocabularies (`held_out.tsv` there holds the held-out pairs).

    Returns:
        `(encoder, decoder, source_vectorizer, target_vocabulary)`.
    """
    model = keras.models.load_model(os.path.join(run_dir, "translator.keras"))
    with open(os.path.join(run_dir, "vocabulary.json")) as file:
        vocabulary = json.load(file)
    decoder = model.get_layer("decoder")
    decoder.supports_masking = True  # As in `build_translator`.
    return (
        model.get_layer("encoder"),
        decoder,
        make_vectorizer(vocabulary["source"]),
        vocabulary["target"],
    )


def vectorize_pairs(pairs, source_vectorizer, target_vectorizer):
    """Token ids for teacher forcing: `((source, decoder_input), labels)`.

    The decoder sees `[start] w1 .. wn` and learns `w1 .. wn [end]`. The end
    token is replaced by padding in its input, so the input's padding mask is
    exactly the labels' (the loss and the accuracy skip the same positions).
    """
    sources, targets = zip(*pairs)
    source_ids = keras.ops.convert_to_numpy(
        source_vectorizer(np.array(sources))
    )
    target_ids = keras.ops.convert_to_numpy(
        target_vectorizer(
            np.array([f"{START} {target} {END}" for target in targets])
        )
    )
    end_id = target_vectorizer.get_vocabulary().index(END)
    decoder_input = np.where(target_ids == end_id, 0, target_ids)[:, :-1]
    return (source_ids, decoder_input), target_ids[:, 1:]


def translate(
    sentences,
    encoder,
    decoder,
    source_vectorizer,
    target_vocabulary,
    max_length,
    batch_size=256,
    sampler=None,
):
    """Translates a list of strings; returns a list of strings."""
    start_id, end_id = (
        target_vocabulary.index(START),
        target_vocabulary.index(END),
    )
    translations = []
    for i in range(0, len(sentences), batch_size):
        source_ids = source_vectorizer(np.array(sentences[i : i + batch_size]))
        ids = decode(
            encoder,
            decoder,
            source_ids,
            max_length,
            start_id,
            end_id,
            sampler=sampler,
        )
        texts = ids_to_text(ids, target_vocabulary, end_id).numpy()
        translations += [text.decode("utf-8") for text in texts]
    return translations


def evaluate(pairs, translations):
    """Exact match and BLEU (0-1) of `translations` against the targets."""
    references = [
        " ".join(text.decode("utf-8").split())
        for text in standardize([target for _, target in pairs]).numpy()
    ]
    exact = np.mean([t == r for t, r in zip(translations, references)])
    bleu = keras_hub.metrics.Bleu()
    # Bleu divides by the translations' total length: 0 if all are empty.
    with np.errstate(divide="ignore"):
        bleu.update_state([[r] for r in references], translations)
        return float(exact), float(bleu.result())


def train(args, train_pairs, validation_pairs):
    """Adapts the vectorizers, builds and fits the model with callbacks."""
    source_vectorizer, target_vectorizer = make_vectorizer(), make_vectorizer()
    source_vectorizer.adapt([source for source, _ in train_pairs])
    target_vectorizer.adapt(
        [f"{START} {target} {END}" for _, target in train_pairs]
    )
    model, encoder, decoder = build_translator(
        source_vectorizer.vocabulary_size(),
        target_vectorizer.vocabulary_size(),
        hidden_dim=args.hidden_dim,
        num_heads=args.num_heads,
        intermediate_dim=args.intermediate_dim,
        num_layers=args.num_layers,
        dropout=args.dropout,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=0
        ),
        metrics=["accuracy"],
    )
    out = args.output_dir
    callbacks = [
        keras.callbacks.EarlyStopping(
            patience=args.patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(out, "translator.keras"), save_best_only=True
        ),
        # Resumes an interrupted run from its last finished epoch.
        keras.callbacks.BackupAndRestore(os.path.join(out, "backup")),
        keras.callbacks.TensorBoard(os.path.join(out, "logs")),
    ]
    # Written first: the checkpoint is useless without the vocabularies.
    with open(os.path.join(out, "vocabulary.json"), "w") as file:
        json.dump(
            {
                "source": source_vectorizer.get_vocabulary(),
                "target": target_vectorizer.get_vocabulary(),
            },
            file,
            ensure_ascii=False,
        )
    x, y = vectorize_pairs(train_pairs, source_vectorizer, target_vectorizer)
    history = model.fit(
        x,
        y,
        validation_data=vectorize_pairs(
            validation_pairs, source_vectorizer, target_vectorizer
        ),
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=callbacks,
        verbose=args.verbose,
    )
    epochs = history.epoch[-1] + 1 if history.epoch else 0
    return encoder, decoder, source_vectorizer, target_vectorizer, epochs


def run(args):
    """Trains, evaluates and exports; returns the summary dict."""
    started = time.time()
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    if args.pairs:
        pairs = translation_data.read_pairs(args.pairs)
    else:
        pairs = translation_data.generate_pairs(args.num_pairs, seed=args.seed)
    train_pairs, validation_pairs, test_pairs = translation_data.split_pairs(
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
        file.writelines(
            f"{source}\t{target}\n" for source, target in test_pairs
        )
    encoder, decoder, source_vectorizer, target_vectorizer, epochs = train(
        args, train_pairs, validation_pairs
    )
    target_vocabulary = target_vectorizer.get_vocabulary()
    sampler = (
        keras_hub.samplers.BeamSampler(args.beam_width)
        if args.beam_width > 1
        else None
    )
    translations = translate(
        [source for source, _ in test_pairs],
        encoder,
        decoder,
        source_vectorizer,
        target_vocabulary,
        args.max_length,
        sampler=sampler,
    )
    exact_match, bleu = evaluate(test_pairs, translations)
    for (source, target), translation in list(zip(test_pairs, translations))[
        :5
    ]:
        print(f"  {source}  ->  {translation}   (reference: {target})")
    # The SavedModel's graph runs TensorFlow ops: TensorFlow backend only.
    savedmodel = None
    if keras.backend.backend() == "tensorflow":
        savedmodel = export_translator(
            os.path.join(args.output_dir, "savedmodel"),
            encoder,
            decoder,
            source_vectorizer,
            target_vocabulary,
            max_length=args.max_length,
            overwrite=True,
        )
    return {
        "exact_match": round(exact_match, 4),
        "bleu": round(bleu, 4),
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
    add(
        "--pairs",
        help="source<TAB>target file (Anki / Tatoeba format); "
        "default: the generated English -> Spanish-like corpus",
    )
    add(
        "--num-pairs",
        type=int,
        default=5000,
        help="pairs to generate when --pairs is not given",
    )
    add(
        "--output-dir",
        default="runs/translate",
        help="checkpoint, backup, logs, vocabulary and SavedModel go here",
    )
    add("--hidden-dim", type=int, default=64)
    add("--num-heads", type=int, default=4)
    add("--intermediate-dim", type=int, default=128)
    add(
        "--num-layers",
        type=int,
        default=2,
        help="encoder blocks, and as many decoder blocks",
    )
    add("--dropout", type=float, default=0.1)
    add("--batch-size", type=int, default=64)
    add("--epochs", type=int, default=10, help="most epochs (early stopping)")
    add("--steps-per-epoch", type=int, default=None)
    add(
        "--patience",
        type=int,
        default=3,
        help="epochs without a better validation loss before stopping",
    )
    add("--learning-rate", type=float, default=1e-3)
    add(
        "--max-length",
        type=int,
        default=24,
        help="most target tokens decoded, the start token included",
    )
    add(
        "--beam-width",
        type=int,
        default=1,
        help="beams of keras_hub's BeamSampler; 1 decodes greedily",
    )
    add("--seed", type=int, default=0)
    add("--verbose", type=int, default=1, help="Keras progress bar: 0, 1, 2")
    return parser.parse_args(argv)


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
