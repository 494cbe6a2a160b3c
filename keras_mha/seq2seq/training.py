"""Training and evaluating a `Translator` on sentence pairs."""

import os

import keras
import numpy as np

from keras_mha.seq2seq.losses import SmoothedSparseCrossentropy
from keras_mha.seq2seq.models import TransformerSeq2Seq
from keras_mha.seq2seq.tokenizers import train_tokenizer
from keras_mha.seq2seq.translator import Translator


def build_translator(
    train_pairs,
    vocabulary_size=2000,
    hidden_dim=64,
    num_heads=4,
    intermediate_dim=128,
    num_layers=2,
    dropout=0.1,
    max_length=None,
):
    """Learns the tokenizer from `train_pairs` and builds the model.

    One subword tokenizer is learned from both sides and serves both (a
    joint vocabulary, as is usual in translation; it also lets a SavedModel
    restore a single SentencePiece resource, see `export_translator`).

    Args:
        train_pairs: list of `(source, target)` strings.
        vocabulary_size: int. Most subword pieces (fewer when the pairs
            do not yield that many). Defaults to `2000`, which scored
            better than 1,000 on the catalog corpus (`benchmarks/catalog.py`).
        hidden_dim, num_heads, intermediate_dim, num_layers, dropout: of
            `TransformerSeq2Seq`.
        max_length: int or `None`. Most target tokens decoded; `None` takes
            the longest training target plus a quarter (start and end
            included).

    Returns:
        An untrained `Translator`.
    """
    sources, targets = zip(*train_pairs)
    tokenizer = train_tokenizer(sources + targets, vocabulary_size)
    model = TransformerSeq2Seq(
        tokenizer.vocabulary_size(),
        tokenizer.vocabulary_size(),
        hidden_dim=hidden_dim,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        num_layers=num_layers,
        dropout=dropout,
    )
    translator = Translator(model, tokenizer, tokenizer)
    if max_length is None:
        longest = max(len(ids) for ids in translator.token_ids(train_pairs)[1])
        max_length = longest + longest // 4
    translator.max_length = max_length
    return translator


def fit_translator(
    translator,
    train_pairs,
    validation_pairs,
    output_dir,
    epochs=10,
    batch_size=64,
    learning_rate=1e-3,
    label_smoothing=0.1,
    patience=3,
    bucketed=True,
    steps_per_epoch=None,
    verbose=1,
    seed=0,
):
    """Fits `translator.model` with `model.fit`, checkpointing into
    `output_dir`.

    Callbacks: early stopping on the validation loss (best weights
    restored), a checkpoint of the best model (`translator.keras`, beside
    the tokenizers that `Translator.load` reads), `BackupAndRestore` (an
    interrupted run resumes from its last finished epoch) and TensorBoard
    logs.

    The loss is `SmoothedSparseCrossentropy(label_smoothing)`, padding
    ignored; the paper smooths with 0.1, which on the catalog corpus also
    scores better than no smoothing.

    Returns:
        The number of epochs run.
    """
    model = translator.model
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=SmoothedSparseCrossentropy(label_smoothing),
        metrics=["accuracy"],
    )
    # Written first: the checkpoint is useless without the tokenizers.
    translator.save_tokenizers(output_dir)
    callbacks = [
        keras.callbacks.EarlyStopping(
            patience=patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output_dir, "translator.keras"), save_best_only=True
        ),
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")),
    ]
    history = model.fit(
        translator.dataset(
            train_pairs, batch_size, bucketed=bucketed, seed=seed
        ),
        validation_data=translator.dataset(
            validation_pairs, batch_size, bucketed=bucketed, shuffle=False
        ),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # `translator.dataset` shuffles, per epoch.
    )
    return history.epoch[-1] + 1 if history.epoch else 0


def evaluate(translations, references):
    """Exact match, BLEU and chrF (sacrebleu, 0-100) on the texts as they
    are: case, punctuation and spacing count.

    Returns:
        A dict with `exact_match` (0-1), `bleu` and `chrf`.
    """
    import sacrebleu

    translations, references = list(translations), list(references)
    return {
        "exact_match": float(
            np.mean([t == r for t, r in zip(translations, references)])
        ),
        "bleu": float(sacrebleu.corpus_bleu(translations, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(translations, [references]).score),
    }
