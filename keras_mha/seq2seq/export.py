"""Text-in, text-out TensorFlow SavedModel export of a translator.

`export_translator` writes a `keras_mha.seq2seq.Translator` (its subword
tokenizer, its model and the cached greedy decoding loop) into one
SavedModel whose `serving_default` signature maps a batch of strings to
their translations. The graph holds TensorFlow and TensorFlow Text ops
only, so a process with TensorFlow and TF Text's kernels serves it
without Keras, keras_hub or keras_mha: `keras_free_serving.py` beside this
module is that server (`load_translate(path)`), and
`serving.translate_in_fresh_process` runs it in a process that cannot
import Keras.
"""

import os
import shutil
import tempfile

import keras

from keras_mha.seq2seq.tokenizers import with_live_tokenizers


def export_translator(path, translator, overwrite=False):
    """Writes a TensorFlow SavedModel that translates strings to strings.

    Its `serving_default` signature takes `sentences`, a `tf.string` tensor
    of shape `(None,)`, and returns `{"translations": tf.string (None,)}`,
    byte for byte what `translator.translate` returns. The SavedModel is
    written to a temporary directory beside `path` and renamed into place,
    so a failed export leaves nothing half-written and keeps an existing
    export as it was.

    Args:
        path: directory to create.
        translator: a `keras_mha.seq2seq.Translator`.
        overwrite: bool. Whether to replace an existing `path`. Defaults to
            `False`.

    Returns:
        `path`, absolute.

    Example:

    >>> pairs = keras_mha.seq2seq.data.number_pairs(40, seed=0)
    >>> translator = keras_mha.seq2seq.build_translator(
    ...     pairs, vocabulary_size=400, hidden_dim=8, num_heads=2,
    ...     intermediate_dim=8, num_layers=1,
    ... )
    >>> path = keras_mha.seq2seq.export_translator("savedmodel", translator)
    >>> sorted(keras_mha.seq2seq.serving.load_saved_model(path).signatures)
    ['serving_default']
    """
    if keras.backend.backend() != "tensorflow":
        # The SavedModel is a TensorFlow graph of the model's own ops.
        raise ValueError(
            "`export_translator` needs the TensorFlow backend "
            "(KERAS_BACKEND=tensorflow). "
            f"Received: backend={keras.backend.backend()!r}"
        )
    if translator.source_tokenizer is not translator.target_tokenizer:
        # TF Text's SentencePiece resources are kernel-owned: two of them
        # restored from one SavedModel can get the same name and share one
        # model, so the server would detokenize with the source's pieces.
        raise ValueError(
            "`translator` expected one tokenizer for both sides (as "
            "`build_translator` makes): a SavedModel cannot restore two "
            "SentencePiece models apart. Received: different "
            "source_tokenizer and target_tokenizer"
        )
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"`path` already exists; pass overwrite=True to replace it. "
            f"Received: path={path!r}"
        )

    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        with_live_tokenizers(
            lambda: _write_archive(translator, staging),
            [translator.source_tokenizer],
        )
        if not os.path.exists(path):
            os.rename(staging, path)
        else:
            # Move the old export aside first, and back if the swap fails.
            retired = staging + ".old"
            os.rename(path, retired)
            try:
                os.rename(staging, path)
            except BaseException:
                os.rename(retired, path)
                raise
            shutil.rmtree(retired)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _write_archive(translator, directory):
    """Traces `translator.strings_to_strings` and writes the SavedModel."""
    import tensorflow as tf

    def serve(sentences):
        return {"translations": translator.strings_to_strings(sentences)}

    archive = keras.export.ExportArchive()
    archive.track(translator.model)
    archive.track(translator.source_tokenizer)
    archive.add_endpoint(
        "serving_default",
        serve,
        input_signature=[tf.TensorSpec((None,), tf.string, name="sentences")],
    )
    archive.write_out(directory, verbose=False)
