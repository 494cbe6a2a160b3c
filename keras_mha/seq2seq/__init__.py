"""Translation: an encoder-decoder Transformer, cached decoding, lossless
subword tokenizers, a string-to-string translator, its data, its
SavedModel export and serving.

    from keras_mha import seq2seq
    pairs = seq2seq.data.number_pairs(4000)
    translator = seq2seq.build_translator(pairs)
    seq2seq.fit_translator(translator, pairs[:3600], pairs[3600:], "runs")
    translator.translate(["Marie has eighty-two cats."])

It needs the `text` extra (`pip install 'keras-mha[text]'`): its
tokenizers and SavedModel export run TensorFlow and TensorFlow Text ops,
whatever the Keras backend.
"""

from keras_mha.seq2seq import _extra  # noqa: F401  (first: names the extra)
from keras_mha.seq2seq import data
from keras_mha.seq2seq import export  # noqa: F401  (seq2seq.export.export_translator)
from keras_mha.seq2seq import persistence  # noqa: F401  (seq2seq.persistence.load)
from keras_mha.seq2seq import pipeline  # noqa: F401  (seq2seq.pipeline.teacher_forcing_dataset)
from keras_mha.seq2seq import serving  # noqa: F401  (seq2seq.serving.load_saved_model)
from keras_mha.seq2seq import tokenizers  # noqa: F401  (seq2seq.tokenizers.TokenizerPair)
from keras_mha.seq2seq.decoding import decode
from keras_mha.seq2seq.export import export_translator
from keras_mha.seq2seq.losses import SmoothedSparseCrossentropy
from keras_mha.seq2seq.models import TransformerSeq2Seq
from keras_mha.seq2seq.tokenizers import train_tokenizer
from keras_mha.seq2seq.training import build_translator
from keras_mha.seq2seq.training import evaluate
from keras_mha.seq2seq.training import fit_translator
from keras_mha.seq2seq.translator import Translator

__all__ = [
    "SmoothedSparseCrossentropy",
    "Translator",
    "TransformerSeq2Seq",
    "build_translator",
    "data",
    "evaluate",
    "export_translator",
    "fit_translator",
    "decode",
    "train_tokenizer",
]
