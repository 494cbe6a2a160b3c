"""Sequence-to-sequence Transformers: models, cached decoding, lossless
subword tokenizers, a string-to-string translator and its data.

    from keras_mha import seq2seq
    pairs = seq2seq.data.number_pairs(4000)
    translator = seq2seq.build_translator(pairs)
    seq2seq.fit_translator(translator, pairs[:3600], pairs[3600:], "runs")
    translator.translate(["Marie has eighty-two cats."])
"""

from keras_mha.seq2seq import data
from keras_mha.seq2seq.decoding import decode
from keras_mha.seq2seq.decoding import generate
from keras_mha.seq2seq.losses import SmoothedSparseCrossentropy
from keras_mha.seq2seq.models import TransformerCausalLM
from keras_mha.seq2seq.models import TransformerSeq2Seq
from keras_mha.seq2seq.models import call_blocks_with_cache
from keras_mha.seq2seq.tokenizers import train_tokenizer
from keras_mha.seq2seq.training import build_translator
from keras_mha.seq2seq.training import evaluate
from keras_mha.seq2seq.training import fit_translator
from keras_mha.seq2seq.translator import Translator

__all__ = [
    "SmoothedSparseCrossentropy",
    "Translator",
    "TransformerCausalLM",
    "TransformerSeq2Seq",
    "call_blocks_with_cache",
    "build_translator",
    "data",
    "evaluate",
    "fit_translator",
    "decode",
    "generate",
    "train_tokenizer",
]
