"""TensorFlow's `saved_model_cli`, with TensorFlow Text's kernels registered.

The translator's SavedModel tokenizes with TensorFlow Text ops. This script
registers their kernels the way a C++ server links them, with
`tf.load_op_library` on the `_*.so` files of the installed
`tensorflow_text` package (`keras_mha.seq2seq.keras_free_serving`, without
importing `tensorflow_text`), then runs
`saved_model_cli` with the same arguments:

    python examples/saved_model_cli.py run --dir runs/demo/savedmodel \\
        --tag_set serve --signature_def serving_default \\
        --input_exprs 'sentences=["Paul has forty-one boats."]'
"""

import sys

from keras_mha.seq2seq.keras_free_serving import load_text_kernels


def main(argv=None):
    load_text_kernels()
    from tensorflow.python.tools import saved_model_cli

    sys.argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    saved_model_cli.main()


if __name__ == "__main__":
    main()
