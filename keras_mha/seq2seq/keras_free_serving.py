"""Serves a translator's SavedModel without Keras, keras_hub or keras_mha.

The graph that `export_translator` writes holds TensorFlow and TensorFlow
Text ops only, so a process with TensorFlow serves it once TF Text's
kernels are registered. `import tensorflow_text` itself imports Keras, so
the kernels are registered as a C++ server links them: `tf.load_op_library`
on the installed package's `_*.so` files. This file imports nothing from
keras_mha: copy it beside a server, or run it by path,

    python keras_mha/seq2seq/keras_free_serving.py SAVEDMODEL \\
        '[["Paul has forty-one boats.", "I see six dogs!"]]'

which prints the translations of each batch as JSON.
`keras_mha.seq2seq.serving.translate_in_fresh_process` runs it in a
process that cannot import Keras, keras_hub or keras_mha.
"""

import glob
import importlib.machinery
import json
import os
import sys


def load_text_kernels():
    """Registers TensorFlow Text's kernels without importing its package.

    Returns:
        The number of kernel libraries loaded.

    Raises:
        ImportError: if `tensorflow_text` is not installed.
    """
    import tensorflow as tf

    spec = importlib.machinery.PathFinder.find_spec("tensorflow_text")
    if spec is None:
        raise ImportError(
            "Serving needs TensorFlow Text's kernels, which keras-mha's "
            "`text` extra installs: pip install 'keras-mha[text]'"
        )
    ops_dir = os.path.join(spec.submodule_search_locations[0], "python", "ops")
    libraries = sorted(glob.glob(os.path.join(ops_dir, "_*.so")))
    for library in libraries:
        tf.load_op_library(library)
    return len(libraries)


def load_translate(savedmodel):
    """Loads a translator's SavedModel as a function of lists of strings.

    Args:
        savedmodel: str or `os.PathLike`. Directory that
            `export_translator` wrote.

    Returns:
        A function `translate(sentences) -> list of str`, one translation a
        sentence, from the SavedModel's `serving_default` signature.

    Example (in a server that has TensorFlow and TF Text, not Keras):

        translate = load_translate("runs/demo/savedmodel")
        translate(["Paul has forty-one boats."])
    """
    import tensorflow as tf

    load_text_kernels()
    model = tf.saved_model.load(os.fspath(savedmodel))
    signature = model.signatures["serving_default"]

    def translate(sentences):
        batch = tf.constant(list(sentences), tf.string)
        texts = signature(sentences=batch)["translations"].numpy()
        return [text.decode("utf-8") for text in texts]

    return translate


def main(argv=None):
    """`SAVEDMODEL BATCHES_JSON` -> prints each batch's translations."""
    savedmodel, batches = sys.argv[1:] if argv is None else argv
    translate = load_translate(savedmodel)
    translations = [translate(batch) for batch in json.loads(batches)]
    print(json.dumps(translations, ensure_ascii=False))


if __name__ == "__main__":
    main()
