"""Loading a TensorFlow SavedModel to serve it, with clear errors."""

import os


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
