"""Draws the attention heads of a translator trained by `translate.py`.

For each sentence: the self-attention heads of every encoder block (which
source words look at which) and the cross-attention heads of every decoder
block (which source words each target word looks at: the source-target
alignment), one PNG per block, and for each head the token pairs it attends
to most. The last line printed is a JSON summary.

    python examples/translate.py        # trains into runs/translate
    python examples/attention_heads.py  # draws into runs/translate/attention
"""

import argparse
import json
import os

import numpy as np
import tensorflow as tf
from keras import ops

from keras_mha.seq2seq import Translator
from keras_mha.seq2seq import data
from keras_mha.seq2seq.tokenizers import START_ID
from keras_mha.visualize import plot_layer_attention


def top_pairs(scores, query_tokens, key_tokens, k=2):
    """The `k` strongest `(query, key, weight)` links of each head."""
    heads = []
    for head in scores:  # (query_length, key_length)
        flat = np.argsort(head, axis=None)[::-1][:k]
        rows, columns = np.unravel_index(flat, head.shape)
        heads.append(
            [
                (query_tokens[r], key_tokens[c], float(head[r, c]))
                for r, c in zip(rows, columns)
            ]
        )
    return heads


def pieces(tokenizer, ids):
    return [tokenizer.id_to_token(int(i)) for i in ids]


def draw_sentence(sentence, index, translator, args):
    """Draws and describes every block's heads for one sentence."""
    model = translator.model
    source_ids = tf.function(translator.source_ids)(tf.constant([sentence]))
    source_ids = source_ids.numpy()  # (1, s), no padding
    translation = translator.translate([sentence])[0]
    target = tf.function(translator.target_tokenizer)(
        tf.constant([translation])
    )
    target_ids = np.array([[START_ID, *target.to_list()[0]]], "int32")
    source_tokens = pieces(translator.source_tokenizer, source_ids[0])
    target_tokens = pieces(translator.target_tokenizer, target_ids[0])
    print(f"\n{sentence}  ->  {translation}")
    # Each block's input, from the model's own layers in order.
    x = model.source_position(model.source_embedding(source_ids))
    runs = []
    for block in model.encoder_blocks:
        runs.append((block, (x,), {}, source_tokens, "self-attention"))
        x = block(x)
    encoded = model.encode(source_ids)
    source_mask = ops.not_equal(source_ids, 0)
    y = model.target_position(model.target_embedding(target_ids))
    for block in model.decoder_blocks:
        kwargs = {"encoder_padding_mask": source_mask}
        runs.append((block, (y, encoded), kwargs, target_tokens, "cross"))
        y = block(y, encoded, **kwargs)
    figures = []
    for block, inputs, kwargs, query_tokens, kind in runs:
        kind = "cross-attention" if kind == "cross" else kind
        path = os.path.join(
            args.output_dir, f"sentence{index}_{block.name}.png"
        )
        _, scores = plot_layer_attention(
            block,
            inputs,
            path,
            query_tokens=query_tokens,
            key_tokens=source_tokens,
            title=f"{block.name} {kind}: {sentence}",
            **kwargs,
        )
        figures.append(path)
        print(f"  {block.name} {kind} ({path})")
        for head, links in enumerate(
            top_pairs(scores, query_tokens, source_tokens, args.top_k)
        ):
            described = ", ".join(f"{q} -> {k} {w:.2f}" for q, k, w in links)
            print(f"    head {head}: {described}")
    return figures


def run(args):
    translator = Translator.load(args.run_dir)
    sentences = args.sentences or [
        source
        for source, _ in data.read_pairs(
            os.path.join(args.run_dir, "held_out.tsv")
        )[: args.num_sentences]
    ]
    os.makedirs(args.output_dir, exist_ok=True)
    figures = []
    for index, sentence in enumerate(sentences):
        figures += draw_sentence(sentence, index, translator, args)
    return {"figures": figures}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--run-dir",
        default="runs/translate",
        help="output directory of translate.py",
    )
    add(
        "--output-dir",
        default=None,
        help="where the PNGs go; default: RUN_DIR/attention",
    )
    add(
        "--sentences",
        nargs="+",
        help="sentences to draw; default: the "
        "first held-out sentences of the run",
    )
    add("--num-sentences", type=int, default=2)
    add("--top-k", type=int, default=2, help="links printed per head")
    args = parser.parse_args(argv)
    args.output_dir = args.output_dir or os.path.join(args.run_dir, "attention")
    return args


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
