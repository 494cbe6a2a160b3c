"""The translator part: a `keras_mha.seq2seq` translator trained and
scored as `examples/translate.py` does it, under `mixed_bfloat16`."""

import tempfile
import time


def run(recorder, sizes):
    """Epoch times (a callback of `fit_translator`), target tokens an
    epoch (counted from the training dataset, outside the timed epochs),
    and the held-out exact match and BLEU."""
    import keras
    import numpy as np

    from keras_mha import seq2seq

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    recorder.update(dtype_policy="mixed_bfloat16")
    pairs = seq2seq.data.number_pairs(sizes["num_pairs"], seed=0)
    train, validation, test = seq2seq.data.split_pairs(pairs, seed=0)
    translator = seq2seq.build_translator(
        train,
        vocabulary_size=sizes["vocabulary_size"],
        hidden_dim=sizes["hidden_dim"],
        num_heads=sizes["num_heads"],
        intermediate_dim=sizes["intermediate_dim"],
        num_layers=sizes["num_layers"],
        max_length=sizes["max_length"],
    )
    # Every pair once an epoch, whatever the order: non-padding labels.
    dataset = translator.dataset(train, sizes["batch_size"], shuffle=False)
    tokens = sum(int(np.count_nonzero(labels)) for _, labels in dataset)
    timer = EpochTimes()
    with tempfile.TemporaryDirectory() as output_dir:
        epochs = seq2seq.fit_translator(
            translator,
            train,
            validation,
            output_dir,
            epochs=sizes["epochs"],
            batch_size=sizes["batch_size"],
            patience=sizes["epochs"],
            verbose=2,
            callbacks=[timer],
        )
    sources, references = zip(*test)
    metrics = seq2seq.evaluate(translator.translate(sources), references)
    # The first epoch includes compiling; the fastest of the rest is the
    # steady epoch time (the first, if there is only one).
    steady = min(timer.seconds[1:] or timer.seconds)
    recorder.update(
        summary={**metrics, "epochs": epochs},
        epoch_seconds=timer.seconds,
        steady_epoch_seconds=steady,
        tokens_per_epoch=tokens,
        training_tokens_per_second=tokens / steady,
        exact_match=metrics["exact_match"],
        bleu=metrics["bleu"],
    )
