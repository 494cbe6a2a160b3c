"""Property-based tests: our attention equals a NumPy reference.

Hypothesis draws batch sizes, sequence lengths, head counts, head widths and
masks (padding, attention, causal, and rows with nothing to attend to); each
layer's outputs and attention scores are compared with
`tests.reference.attention`, which projects the inputs per head with the
layer's own weights, takes softmax(q k^T / sqrt(d_k)) v, concatenates the
heads and applies the output projection, in float64. Both the fused path
(no scores asked) and the explicit path (scores asked) are checked.
"""

import keras
import numpy as np
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_mha
from tests.reference import attention
from tests.reference import weights_of

# Few examples: each builds a layer, and CI runs the suite on three backends.
SETTINGS = settings(max_examples=25, deadline=None)
ATOL, RTOL = 2e-5, 1e-4


@st.composite
def attention_problems(draw, self_attention):
    """Shapes, head layout, inputs and masks of one attention call."""
    batch = draw(st.integers(1, 3))
    query_length = draw(st.integers(1, 6))
    key_length = query_length if self_attention else draw(st.integers(1, 6))
    num_heads = draw(st.integers(1, 4))
    key_dim = draw(st.integers(1, 5))
    # Either the width is split into the heads, or key_dim is explicit.
    explicit_key_dim = draw(st.booleans())
    width = draw(st.integers(1, 9)) if explicit_key_dim else num_heads * key_dim
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(batch, query_length, width)).astype("float32")
    value = rng.normal(size=(batch, key_length, width)).astype("float32")
    visible = rng.random((batch, key_length)) < draw(st.floats(0.0, 1.0))
    problem = dict(
        batch=batch,
        num_heads=num_heads,
        key_dim=key_dim if explicit_key_dim else None,
        seed=seed,
        query=query,
        value=value,
        padding_mask=visible if draw(st.booleans()) else None,
        query_mask=None,
        attention_mask=None,
        causal=self_attention and draw(st.booleans()),
    )
    if not self_attention and draw(st.booleans()):
        problem["query_mask"] = rng.random((batch, query_length)) < 0.7
    if draw(st.booleans()):
        problem["attention_mask"] = rng.random(
            (batch, query_length, key_length)
        ) < draw(st.floats(0.0, 1.0))
    return problem


def _reference_mask(problem, self_attention):
    """The `(b, t, s)` boolean mask the layer should apply, or None."""
    batch, query_length = problem["query"].shape[:2]
    key_length = problem["value"].shape[1]
    mask = np.ones((batch, query_length, key_length), bool)
    if problem["padding_mask"] is not None:
        mask &= problem["padding_mask"][:, None, :]
        if self_attention:
            mask &= problem["padding_mask"][:, :, None]
    if problem["query_mask"] is not None:
        mask &= problem["query_mask"][:, :, None]
    if problem["attention_mask"] is not None:
        mask &= problem["attention_mask"]
    if problem["causal"]:
        mask &= np.tril(np.ones((query_length, key_length), bool))[None]
    return mask


def _layer(cls, problem):
    return cls(
        num_heads=problem["num_heads"],
        key_dim=problem["key_dim"],
        use_causal_mask=problem["causal"],
        # Non-zero biases, so a bias applied in the wrong place shows.
        bias_initializer=keras.initializers.RandomNormal(seed=problem["seed"]),
        kernel_initializer=keras.initializers.GlorotUniform(
            seed=problem["seed"]
        ),
    )


def _check(layer, call, problem, self_attention):
    outputs, scores = call(return_attention_scores=True)
    fused_outputs = call()
    weights = [w.astype("float64") for w in weights_of(layer)]
    mask = _reference_mask(problem, self_attention)
    expected, expected_scores = attention(
        problem["query"].astype("float64"),
        problem["value"].astype("float64"),
        *weights,
        mask=mask,
    )
    to_numpy = keras.ops.convert_to_numpy
    np.testing.assert_allclose(to_numpy(outputs), expected, ATOL, RTOL)
    np.testing.assert_allclose(to_numpy(fused_outputs), expected, ATOL, RTOL)
    scores = to_numpy(scores)
    np.testing.assert_allclose(scores, expected_scores, ATOL, RTOL)
    # Masked keys get exactly zero weight; rows sum to 1, or 0 when empty.
    visible = np.broadcast_to(mask[:, None], scores.shape)
    assert np.all(scores[~visible] == 0.0)
    row_sums = scores.sum(-1)
    np.testing.assert_allclose(
        row_sums, visible.any(-1).astype("float32"), atol=1e-5
    )


@SETTINGS
@given(problem=attention_problems(self_attention=False))
def test_cross_attention_matches_reference(problem):
    layer = _layer(keras_mha.MultiHeadAttention, problem)

    def call(**kwargs):
        return layer(
            problem["query"],
            problem["value"],
            query_mask=problem["query_mask"],
            value_mask=problem["padding_mask"],
            attention_mask=problem["attention_mask"],
            **kwargs,
        )

    _check(layer, call, problem, self_attention=False)


@SETTINGS
@given(problem=attention_problems(self_attention=True))
def test_self_attention_matches_reference(problem):
    layer = _layer(keras_mha.MultiHeadSelfAttention, problem)
    problem["value"] = problem["query"]

    def call(**kwargs):
        return layer(
            problem["query"],
            mask=problem["padding_mask"],
            attention_mask=problem["attention_mask"],
            **kwargs,
        )

    _check(layer, call, problem, self_attention=True)


@SETTINGS
@given(
    lengths=st.lists(st.integers(0, 6), min_size=1, max_size=3),
    num_heads=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_padding_never_leaks(lengths, num_heads, seed):
    """What sits in padded positions never changes the real positions."""
    rng = np.random.default_rng(seed)
    width, max_length = 2 * num_heads, 6
    x = rng.normal(size=(len(lengths), max_length, width)).astype("float32")
    mask = np.arange(max_length)[None] < np.array(lengths)[:, None]
    noisy = np.where(mask[..., None], x, 1e3 * rng.normal(size=x.shape))
    block = keras_mha.TransformerEncoderBlock(num_heads, intermediate_dim=5)
    clean = keras.ops.convert_to_numpy(block(x, padding_mask=mask))
    dirty = keras.ops.convert_to_numpy(
        block(noisy.astype("float32"), padding_mask=mask)
    )
    np.testing.assert_allclose(clean[mask], dirty[mask], atol=1e-4, rtol=1e-4)
    assert np.all(np.isfinite(dirty))
