"""`model.export(format=...)` of models of our layers, run in each runtime.

Two models, each exported once per format with a variable batch size and
sequence length, `(None, None)` token ids:

- a classifier: an encoder block over padded tokens (padding mask), pooled;
- a decoder-only language model: a causal decoder block (causal mask
  merged with the padding mask).

Each artifact runs in its own runtime (TensorFlow, onnxruntime, OpenVINO,
the LiteRT interpreter without the Flex delegate, so only builtin ops) on
batches of two different shapes, with padding, and gives Keras's outputs.
OpenVINO is asked for float32 inference: on CPUs with bfloat16 units its
default precision hint is bfloat16, which differs from float32 by ~1e-2.
"""

import keras
import numpy as np
import pytest

import keras_mha

BACKEND = keras.backend.backend()
VOCAB, WIDTH, HEADS, FFN = 29, 12, 3, 7
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "litert": ".tflite"}
# The backends each format is tested from. Measured with Keras 3.15 on the
# others: JAX's ONNX export needs `jax2onnx` and its OpenVINO conversion
# leaves an op unconverted; on PyTorch, `torch.onnx` cannot export the
# dynamic shapes of the attention's reshapes, and the SavedModel and
# OpenVINO artifacts do not match the Keras outputs.
FORMAT_BACKENDS = {
    "tf_saved_model": ("tensorflow", "jax"),
    "onnx": ("tensorflow",),
    "openvino": ("tensorflow",),
    "litert": ("tensorflow",),
}
RUNTIMES = {
    "tf_saved_model": "tensorflow",
    "onnx": "onnxruntime",
    "openvino": "openvino",
    "litert": "ai_edge_litert",
}


def classifier():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)(tokens)
    x = keras_mha.SinusoidalPositionEncoding()(x)
    x = keras_mha.TransformerEncoderBlock(HEADS, intermediate_dim=FFN)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(5)(x))


def language_model():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCAB, WIDTH, mask_zero=True)(tokens)
    x = keras_mha.SinusoidalPositionEncoding()(x)
    x = keras_mha.TransformerDecoderBlock(
        HEADS, intermediate_dim=FFN, norm_first=True
    )(x)
    return keras.Model(tokens, keras.layers.Dense(VOCAB)(x))


def batches():
    """Token id batches of two shapes, with padding (0) at the end."""
    rng = np.random.default_rng(0)
    first = rng.integers(1, VOCAB, (2, 5)).astype("int32")
    second = rng.integers(1, VOCAB, (3, 9)).astype("int32")
    first[1, 3:] = 0
    second[0, 6:] = 0
    second[2, 2:] = 0
    return [first, second]


def _load_runner(format, path):
    """A function from an int32 batch to the artifact's output."""
    if format == "tf_saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        return lambda x: loaded.serve(x).numpy()
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"]
        )
        (spec,) = session.get_inputs()
        assert len(spec.shape) == 2 and not any(
            isinstance(dim, int) for dim in spec.shape
        ), spec.shape  # Both axes variable.
        return lambda x: session.run(None, {spec.name: x})[0]
    if format == "openvino":
        import openvino

        compiled = openvino.Core().compile_model(
            path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        assert compiled.inputs[0].get_partial_shape().is_dynamic
        return lambda x: compiled(x)[0]
    from ai_edge_litert.interpreter import Interpreter

    # The plain interpreter: a model that needs Flex (TensorFlow) ops
    # fails in allocate_tensors.
    interpreter = Interpreter(model_path=path)
    (spec,) = interpreter.get_input_details()
    assert list(spec["shape_signature"]) == [-1, -1]

    def run(x):
        interpreter.resize_tensor_input(spec["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(spec["index"], x)
        interpreter.invoke()
        output = interpreter.get_output_details()[0]["index"]
        return interpreter.get_tensor(output)

    return run


@pytest.mark.parametrize("build", [classifier, language_model])
@pytest.mark.parametrize("format", list(FORMAT_BACKENDS))
def test_export_runs_with_variable_batch_and_length(format, build, tmp_path):
    if BACKEND not in FORMAT_BACKENDS[format]:
        pytest.skip(f"{format} is tested from {FORMAT_BACKENDS[format]} only")
    pytest.importorskip(
        RUNTIMES[format],
        reason=f"{RUNTIMES[format]} is not installed (pip install '.[test]')",
    )
    model = build()
    data = batches()
    expected = [keras.ops.convert_to_numpy(model(x)) for x in data]
    path = str(tmp_path / f"model{SUFFIX.get(format, '')}")
    model.export(path, format=format, verbose=False)
    run = _load_runner(format, path)
    for x, want in zip(data, expected):
        got = run(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
