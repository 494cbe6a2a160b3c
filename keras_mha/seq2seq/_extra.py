"""Imported first by `keras_mha.seq2seq`: without the `text` extra, the
import fails at once with an `ImportError` naming it."""

from keras_mha._optional import check_extra

check_extra("text", "keras_mha.seq2seq (the translator)")
