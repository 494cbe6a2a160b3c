"""Converting the translator to ONNX (tf2onnx) and running it in onnxruntime.

- The string-to-string SavedModel of `export_translator` converts only in
  part: tf2onnx has no ONNX equivalent for TensorFlow Text's SentencePiece
  ops (tokenization and detokenization) nor for ops of the decode loop
  (such as `XlaDynamicUpdateSlice`, from `keras.ops.slice_update`); it
  leaves them as TensorFlow nodes, and onnxruntime refuses the result.
- The numeric core converts and runs in onnxruntime with TensorFlow's
  outputs: the teacher-forced model `[source_ids, target_ids] -> logits`,
  and its `encode` and `call_decoder`, which a greedy loop in NumPy turns
  into the same token ids as `keras_mha.seq2seq.decode`.

Each conversion takes 10-60 s on a small CPU machine, so the default suite
runs only the teacher-forced model; the slow suite runs the rest.
"""

import logging
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.seq2seq_helpers import small_translator

if keras.backend.backend() != "tensorflow":
    pytest.skip(
        "tf2onnx converts TensorFlow graphs: TensorFlow backend only",
        allow_module_level=True,
    )
tf2onnx = pytest.importorskip(
    "tf2onnx", reason="tf2onnx is not installed (pip install '.[test]')"
)
ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install '.[test]')"
)
InvalidGraph = ort.capi.onnxruntime_pybind11_state.InvalidGraph

OPSET, MAX_LENGTH = 18, 14
STRING_OPS = {"SentencepieceTokenizeOp", "SentencepieceDetokenizeOp"}
# Token id batches of distinct shapes, with padding (0) at different places.
SOURCES = [
    np.array([[5, 9, 3, 0, 0], [4, 4, 7, 8, 2]], "int32"),
    np.array([[6, 2, 11, 3, 9, 12, 8]], "int32"),
    np.array([[3, 0, 0], [7, 5, 0], [9, 8, 4]], "int32"),
]
TARGETS = [
    np.array([[2, 6, 0], [2, 7, 9]], "int32"),
    np.array([[2, 5, 6, 7]], "int32"),
    np.array([[2, 0], [2, 4], [2, 8]], "int32"),
]


START_ID, END_ID = 2, 3


@pytest.fixture(scope="module")
def translator():
    """An untrained (seeded) `Translator`."""
    return small_translator(epochs=0)[0]


def _spec(shape, dtype, name):
    import tensorflow as tf

    return tf.TensorSpec(shape, dtype, name=name)


class _UnsupportedOps(logging.Handler):
    """Collects the ops tf2onnx reports as "not supported"."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def emit(self, record):
        if str(record.msg).endswith("is not supported") and record.args:
            self.ops.add(record.args[-1])


def convert(function, input_signature):
    """`(onnxruntime session or None, unsupported op types, load error)`."""
    import tensorflow as tf

    handler = _UnsupportedOps()
    logger = logging.getLogger("tf2onnx")
    logger.addHandler(handler)
    try:
        proto, _ = tf2onnx.convert.from_function(
            tf.function(function, autograph=False),
            input_signature=input_signature,
            opset=OPSET,
        )
    finally:
        logger.removeHandler(handler)
    try:
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
    except InvalidGraph as error:
        return None, handler.ops, str(error)
    return session, handler.ops, None


def text_op_libraries():
    """The `_*.so` kernel libraries of the installed tensorflow_text."""
    import glob
    import importlib.util

    root = importlib.util.find_spec(
        "tensorflow_text"
    ).submodule_search_locations
    return sorted(glob.glob(os.path.join(root[0], "python", "ops", "_*.so")))


@pytest.mark.slow
def test_string_to_string_export_is_blocked_by_string_ops(translator, tmp_path):
    """The exported SavedModel, converted as a user would, on the command
    line: tf2onnx reports the ops it cannot convert and onnxruntime refuses
    the model it writes."""
    from keras_mha.seq2seq.export import export_translator

    translator.max_length = MAX_LENGTH
    path = export_translator(tmp_path / "translator", translator)
    output = tmp_path / "translator.onnx"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tf2onnx.convert",
            "--saved-model",
            str(path),
            "--output",
            str(output),
            "--opset",
            str(OPSET),
            # TF Text's kernels, so that TensorFlow can load the export.
            "--load_op_libraries",
            ",".join(text_op_libraries()),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    unsupported = set(
        re.findall(
            r"Tensorflow op \[[^\]]*: (\w+)\] is not supported", result.stderr
        )
    )
    # The string ops block the conversion whatever the decode loop holds.
    assert unsupported & STRING_OPS, result.stderr[-3000:]
    with pytest.raises(InvalidGraph, match="No Op registered for") as info:
        ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert any(op in str(info.value) for op in unsupported), info.value


@pytest.mark.slow
def test_decode_loop_is_blocked_by_keras_backend_ops(translator):
    """Without the strings, ids in and ids out, the loop still holds ops
    that tf2onnx cannot convert."""
    import tensorflow as tf

    from keras_mha.generation import greedy_sampler
    from keras_mha.seq2seq.decoding import decode_function

    session, unsupported, error = convert(
        decode_function(
            translator.model,
            MAX_LENGTH,
            START_ID,
            END_ID,
            greedy_sampler(),
            use_cache=True,
        ),
        [_spec((None, None), tf.int32, "source_ids")],
    )
    assert session is None and unsupported, (unsupported, error)
    assert "No Op registered for" in error


def test_teacher_forced_model_runs_in_onnxruntime(translator):
    import tensorflow as tf

    model = translator.model
    session, unsupported, error = convert(
        lambda source, target: model([source, target], training=False),
        [
            _spec((None, None), tf.int32, "source_ids"),
            _spec((None, None), tf.int32, "target_ids"),
        ],
    )
    assert session is not None and not unsupported, (unsupported, error)
    for source, target in zip(SOURCES, TARGETS):
        logits = session.run(
            None, {"source_ids": source, "target_ids": target}
        )[0]
        expected = keras.ops.convert_to_numpy(model([source, target]))
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=1e-4)


def _greedy_decode(encoder, decoder, source_ids, start_id, end_id):
    """`keras_mha.seq2seq.decode`'s greedy loop in NumPy over onnxruntime."""
    encoded = encoder.run(None, {"source_ids": source_ids})[0]
    source_mask = source_ids != 0
    ids = np.zeros((len(source_ids), MAX_LENGTH), "int32")
    ids[:, 0] = start_id
    done = np.zeros(len(source_ids), bool)
    for index in range(1, MAX_LENGTH):
        logits = decoder.run(
            None,
            {
                "target_ids": ids,
                "encoded": encoded,
                "source_mask": source_mask,
            },
        )[0][:, index - 1]
        logits[:, [0, start_id]] = -np.inf  # Never padding or start.
        ids[:, index] = np.where(done, 0, logits.argmax(-1))
        done |= ids[:, index] == end_id
        if done.all():
            break
    return ids


@pytest.mark.slow
def test_encoder_and_decoder_run_in_onnxruntime(translator):
    """The model's `encode` and `call_decoder` convert; onnxruntime gives
    TensorFlow's encodings and logits, and the same greedy translations."""
    import tensorflow as tf

    from keras_mha.seq2seq import decode

    model = translator.model
    encoder = model.encode
    decoder = lambda inputs, training=False: model.call_decoder(*inputs)
    width = model.hidden_dim
    encoder_session, unsupported, error = convert(
        lambda source_ids: encoder(source_ids),
        [_spec((None, None), tf.int32, "source_ids")],
    )
    assert encoder_session is not None and not unsupported, error
    decoder_session, unsupported, error = convert(
        lambda target_ids, encoded, source_mask: decoder(
            [target_ids, encoded, source_mask], training=False
        ),
        [
            _spec((None, None), tf.int32, "target_ids"),
            _spec((None, None, width), tf.float32, "encoded"),
            _spec((None, None), tf.bool, "source_mask"),
        ],
    )
    assert decoder_session is not None and not unsupported, error

    start_id, end_id = START_ID, END_ID
    for source, target in zip(SOURCES, TARGETS):
        encoded = encoder_session.run(None, {"source_ids": source})[0]
        expected = keras.ops.convert_to_numpy(encoder(source))
        np.testing.assert_allclose(encoded, expected, atol=1e-5, rtol=1e-4)
        logits = decoder_session.run(
            None,
            {
                "target_ids": target,
                "encoded": encoded,
                "source_mask": source != 0,
            },
        )[0]
        expected = decoder([target, expected, source != 0])
        np.testing.assert_allclose(
            logits,
            keras.ops.convert_to_numpy(expected),
            atol=1e-5,
            rtol=1e-4,
        )
        ids = _greedy_decode(
            encoder_session, decoder_session, source, start_id, end_id
        )
        expected_ids = decode(model, source, MAX_LENGTH, start_id, end_id)
        np.testing.assert_array_equal(
            ids, keras.ops.convert_to_numpy(expected_ids)
        )
