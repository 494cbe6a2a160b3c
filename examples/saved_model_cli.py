"""TensorFlow's `saved_model_cli`, with TensorFlow Text's kernels registered.

The translator's SavedModel tokenizes with TensorFlow Text ops. This script
registers their kernels the way a C++ server links them, with
`tf.load_op_library` on the `_*.so` files of the installed
`tensorflow_text` package (without importing it, or Keras), then runs
`saved_model_cli` with the same arguments:

    python examples/saved_model_cli.py run --dir runs/demo/savedmodel \\
        --tag_set serve --signature_def serving_default \\
        --input_exprs 'sentences=["Paul has forty-one boats."]'
"""

import glob
import importlib.machinery
import os
import sys


def load_text_kernels():
    """Registers TensorFlow Text's ops; returns how many libraries."""
    import tensorflow as tf

    spec = importlib.machinery.PathFinder.find_spec("tensorflow_text")
    if spec is None:
        raise SystemExit("tensorflow_text is not installed")
    ops_dir = os.path.join(spec.submodule_search_locations[0], "python", "ops")
    libraries = sorted(glob.glob(os.path.join(ops_dir, "_*.so")))
    for library in libraries:
        tf.load_op_library(library)
    return len(libraries)


def main(argv=None):
    load_text_kernels()
    from tensorflow.python.tools import saved_model_cli

    sys.argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    saved_model_cli.main()


if __name__ == "__main__":
    main()
