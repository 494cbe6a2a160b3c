"""Loading a TensorFlow SavedModel to serve it, with clear errors, and
serving a translator's export in a process without Keras."""

import json
import os
import subprocess
import sys


def load_saved_model(export_dir):
    """Loads a TensorFlow SavedModel, with a clear error for a damaged one.

    `tf.saved_model.load` reports a truncated variables shard as
    `IndexError: Read less bytes than requested`, without naming a file;
    this names the directory and says what to do.

    Args:
        export_dir: str or `os.PathLike`. Directory of the SavedModel.

    Returns:
        The object `tf.saved_model.load` returns.

    Raises:
        FileNotFoundError: if `export_dir` has no `saved_model.pb`.
        ValueError: if the SavedModel's graph or variables can't be read.

    Example:

    >>> keras_mha.seq2seq.serving.load_saved_model("missing")
    Traceback (most recent call last):
    ...
    FileNotFoundError: `export_dir` expected a SavedModel directory ...
    """
    import tensorflow as tf

    export_dir = os.fspath(export_dir)
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        raise FileNotFoundError(
            "`export_dir` expected a SavedModel directory with a "
            f"saved_model.pb. Received: export_dir={export_dir!r}"
        )
    try:
        return tf.saved_model.load(export_dir)
    except (OSError, ValueError, IndexError, tf.errors.OpError) as error:
        raise ValueError(
            "`export_dir` is not a readable SavedModel: "
            f"{type(error).__name__}: {error}. Its graph or variables may be "
            "truncated or corrupt; export the model again. "
            f"Received: export_dir={export_dir!r}"
        ) from error


# The Keras-free server, run by path so that no keras_mha module loads.
KERAS_FREE_SERVER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "keras_free_serving.py"
)
# What the serving process must do without: it proves the export needs
# only TensorFlow and TF Text's kernels.
_NOT_IMPORTABLE = (
    "keras_mha",
    "keras",
    "keras_hub",
    "keras_nlp",
    "tensorflow_text",
)


def translate_in_fresh_process(savedmodel, batches, timeout=300):
    """Translates batches with a SavedModel in a process without Keras.

    The child process runs `keras_mha/seq2seq/keras_free_serving.py` with
    Keras, keras_hub, keras_nlp, keras_mha and TF Text's Python package
    made unimportable, as a
    server that has only TensorFlow and TensorFlow Text's kernels.

    Args:
        savedmodel: str or `os.PathLike`. Directory that
            `export_translator` wrote.
        batches: list of lists of str. Each list is one call of the
            SavedModel's `serving_default` signature.
        timeout: float. Seconds before the child is killed. Defaults to
            `300`.

    Returns:
        A list of lists of str: each batch's translations.

    Raises:
        RuntimeError: if the child process fails, with its error output.

    Example:

    >>> keras_mha.seq2seq.serving.translate_in_fresh_process(
    ...     "missing", [["Paul has two cats."]]
    ... )
    Traceback (most recent call last):
    ...
    RuntimeError: Serving 'missing' without Keras failed: ...
    """
    code = (
        "import runpy, sys\n"
        f"for name in {_NOT_IMPORTABLE!r}:\n"
        "    sys.modules[name] = None\n"
        f"runpy.run_path({KERAS_FREE_SERVER!r}, run_name='__main__')\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            os.fspath(savedmodel),
            json.dumps(batches),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode:
        raise RuntimeError(
            f"Serving {os.fspath(savedmodel)!r} without Keras failed:\n"
            f"{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
