"""Small translators and language models for the seq2seq tests."""

import keras

import keras_mha
from keras_mha import seq2seq


def small_translator(epochs=10, seed=1, num_pairs=800):
    """A tiny `Translator` trained `epochs` on generated number pairs.

    Returns `(translator, pairs)`. With `epochs=0` the weights stay at
    their (seeded) initial values.
    """
    keras.utils.set_random_seed(seed)
    pairs = seq2seq.data.number_pairs(num_pairs, seed=seed)
    translator = seq2seq.build_translator(
        pairs,
        vocabulary_size=400,
        hidden_dim=32,
        num_heads=2,
        intermediate_dim=32,
        num_layers=1,
        dropout=0.0,
    )
    if epochs:
        translator.model.compile(
            "adam",
            keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, ignore_class=0
            ),
        )
        translator.model.fit(
            translator.dataset(pairs, 32, seed=seed), epochs=epochs, verbose=0
        )
    return translator, pairs


def untrained_seq2seq(seed=2, target_vocabulary_size=24):
    """A random `TransformerSeq2Seq` that never emits the end token (id 3),
    so every output runs to the last step and uses the cache throughout."""
    keras.utils.set_random_seed(seed)
    model = seq2seq.TransformerSeq2Seq(
        30,
        target_vocabulary_size,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=16,
        num_layers=2,
        dropout=0.0,
    )
    bias = keras.ops.convert_to_numpy(model.logits_layer.bias)
    bias[3] = -1e3
    model.logits_layer.bias.assign(bias)
    return model


def untrained_language_model(seed=3, vocabulary_size=30):
    keras.utils.set_random_seed(seed)
    return keras_mha.TransformerCausalLM(
        vocabulary_size,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=16,
        num_layers=2,
        dropout=0.0,
    )
