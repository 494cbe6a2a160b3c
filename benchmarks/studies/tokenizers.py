"""Which subword tokenizer: round trips and tokens per sentence.

Learns each candidate from the training side of a corpus (the installed
English -> French gettext catalogs by default, both languages) and
measures, on the held-out side: the fraction of texts that detokenize to
exactly themselves, the fraction of texts with an unknown token, and the
mean tokens per text (fewer means shorter sequences to train and decode).
Candidates: SentencePiece unigram and BPE with byte fallback and identity
normalization (`keras_mha.seq2seq.train_tokenizer`), and keras_hub's
WordPiece (`compute_word_piece_vocabulary`, case and accents kept). The
last line printed is a JSON summary.

    python -m benchmarks.studies.tokenizers
"""

import argparse
import json

import numpy as np

from keras_mha import seq2seq


def word_piece(texts, vocabulary_size):
    import keras_hub
    import tensorflow as tf

    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(texts),
        vocabulary_size,
        lowercase=False,
        strip_accents=False,
        reserved_tokens=["[PAD]", "[UNK]"],
    )
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocabulary, lowercase=False, strip_accents=False
    )


def measure(tokenizer, texts, unknown_id):
    import tensorflow as tf

    ids = tf.function(tokenizer)(tf.constant(texts)).to_list()
    back = tf.function(tokenizer.detokenize)(tf.ragged.constant(ids))
    back = [text.decode("utf-8") for text in back.numpy()]
    return {
        "round_trip": round(
            float(np.mean([a == b for a, b in zip(back, texts)])), 4
        ),
        "with_unknown": round(
            float(np.mean([unknown_id in row for row in ids])), 4
        ),
        "tokens_per_text": round(float(np.mean([len(row) for row in ids])), 2),
    }


def run(args):
    if args.pairs:
        pairs = seq2seq.data.read_pairs(args.pairs)
    else:
        pairs = seq2seq.data.catalog_pairs(seq2seq.data.installed_catalogs())
    train, _, test = seq2seq.data.split_pairs(pairs)
    train_texts = [t for pair in train for t in pair]
    test_texts = [t for pair in test for t in pair]
    results = {}
    for model_type in ("unigram", "bpe"):
        tokenizer = seq2seq.train_tokenizer(
            train_texts, args.vocabulary_size, model_type
        )
        results[f"sentencepiece_{model_type}"] = measure(
            tokenizer, test_texts, 1
        )
    tokenizer = word_piece(train_texts, args.vocabulary_size)
    results["wordpiece"] = measure(
        tokenizer, test_texts, tokenizer.token_to_id("[UNK]")
    )
    results["words_per_text"] = round(
        float(np.mean([len(t.split()) for t in test_texts])), 2
    )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pairs", help="source<TAB>target file")
    parser.add_argument("--vocabulary-size", type=int, default=1000)
    summary = run(parser.parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
