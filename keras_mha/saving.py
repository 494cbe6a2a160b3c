"""Crash-safe saving and clear-error loading of `.keras` files.

`save_model` writes the archive to a temporary file in the target's directory
and moves it into place with one `os.replace`, so a save that fails or is
killed midway leaves the previous file untouched: readers see either the old
model or the new one, never half of one. `load_model` checks the archive
before handing it to Keras, so a truncated or corrupt file raises an error
that says so instead of Keras's "File not found".
"""

import json
import os
import tempfile
import zipfile

import keras


def _check_keras_path(filepath):
    filepath = os.fspath(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(
            "`filepath` expected a path ending in `.keras`. "
            f"Received: filepath={filepath!r}"
        )
    return filepath


def save_model(model, filepath, overwrite=True):
    """Saves `model` to a `.keras` file atomically.

    The model is written to a temporary `.keras` file next to `filepath`,
    flushed to disk, and renamed over `filepath` in one step (`os.replace`).
    If anything fails before the rename, the temporary file is removed and
    an existing file at `filepath` is left exactly as it was.

    Args:
        model: the `keras.Model` to save.
        filepath: str or `os.PathLike`. Destination; must end in `.keras`.
        overwrite: bool. Whether to replace an existing file at `filepath`.
            If `False` and the file exists, raises `FileExistsError` (Keras
            would ask on the terminal instead). Defaults to `True`.

    Example:

    >>> inputs = keras.Input((None, 16))
    >>> block = keras_mha.TransformerEncoderBlock(4, intermediate_dim=32)
    >>> outputs = block(inputs)
    >>> model = keras.Model(inputs, outputs)
    >>> keras_mha.saving.save_model(model, "/tmp/encoder.keras")
    """
    filepath = _check_keras_path(filepath)
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(
            "`filepath` already exists and overwrite=False. "
            f"Received: filepath={filepath!r}"
        )
    directory = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            "`filepath` expected a path in an existing directory; "
            f"{directory!r} does not exist (create it first). "
            f"Received: filepath={filepath!r}"
        )
    fd, temp_path = tempfile.mkstemp(
        dir=directory,
        prefix=f".{os.path.basename(filepath)}.",
        suffix=".tmp.keras",
    )
    os.close(fd)
    try:
        keras.saving.save_model(model, temp_path, overwrite=True)
        with open(temp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp_path, filepath)
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Makes the rename itself durable (POSIX; a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a `.keras` file, with a clear error for a damaged one.

    Checks that the file exists, is a complete zip archive whose members'
    checksums match, and has a readable `config.json`, then calls
    `keras.saving.load_model`. Loading stays in safe mode by default: no
    layer of this package needs `safe_mode=False`.

    Args:
        filepath: str or `os.PathLike`. Path of a `.keras` file.
        custom_objects: dict. Passed to `keras.saving.load_model`. Defaults
            to `None`.
        compile: bool. Whether to compile the loaded model. Defaults to
            `True`.
        safe_mode: bool. Whether to refuse to deserialize code such as
            `Lambda` layers' Python functions. Defaults to `True`.

    Returns:
        The loaded `keras.Model`.

    Raises:
        FileNotFoundError: if `filepath` does not exist.
        ValueError: if the file is not a complete `.keras` archive
            (truncated, corrupt, or not a zip file), or if its config is not
            valid JSON.
    """
    filepath = _check_keras_path(filepath)
    if not os.path.isfile(filepath):
        raise FileNotFoundError(
            "`filepath` expected an existing `.keras` file. "
            f"Received: filepath={filepath!r}"
        )
    _check_archive(filepath)
    return keras.saving.load_model(
        filepath,
        custom_objects=custom_objects,
        compile=compile,
        safe_mode=safe_mode,
    )


def _check_archive(filepath):
    def damaged(reason):
        return ValueError(
            f"`filepath` is not a readable `.keras` archive: {reason}. The "
            "file may be truncated or corrupt; save the model again. "
            f"Received: filepath={filepath!r} "
            f"({os.path.getsize(filepath)} bytes)"
        )

    if not zipfile.is_zipfile(filepath):
        raise damaged("no zip directory found")
    try:
        with zipfile.ZipFile(filepath) as archive:
            bad_member = archive.testzip()
            if bad_member is not None:
                raise damaged(f"member {bad_member!r} fails its checksum")
            if "config.json" not in archive.namelist():
                raise damaged("it has no config.json")
            json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise damaged(str(error)) from error
    except json.JSONDecodeError as error:
        raise damaged(f"config.json is not valid JSON ({error})") from error
