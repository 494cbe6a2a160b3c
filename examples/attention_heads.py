"""Shows the attention heads of a translator trained by `translate.py`.

For each sentence, one forward pass of the translator over the sentence
and its translation gives every attention layer's maps
(`keras_mha.visualize.attention_maps`): the encoder's self-attention (which
source words look at which), the decoder's self-attention and its
cross-attention (which source words each target word looks at: the
alignment). It writes an interactive head view (one HTML file that opens
offline in a browser) and one PNG per layer, and prints a table per layer
of how far each head looks, how peaked it is and its strongest pairs. The
last line printed is a JSON summary.

    python examples/translate.py        # trains into runs/translate
    python examples/attention_heads.py  # draws into runs/translate/attention
    python examples/attention_heads.py --sentence "The rain in Spain falls \
mainly on the plain"
"""

import argparse
import json
import os

import numpy as np
import tensorflow as tf

from keras_mha.seq2seq import Translator
from keras_mha.seq2seq import data
from keras_mha.seq2seq.tokenizers import START_ID
from keras_mha.visualize import format_head_table
from keras_mha.visualize import head_view
from keras_mha.visualize import plot_attention_scores


def pieces(tokenizer, ids):
    return [tokenizer.id_to_token(int(i)) for i in ids]


def draw_sentence(sentence, index, translator, args):
    """Writes the head view and the PNGs of one sentence; returns paths."""
    source_ids = tf.function(translator.tokenizers.source_ids)(
        tf.constant([sentence])
    )
    source_ids = source_ids.numpy()  # (1, s), no padding
    translation = translator.translate([sentence])[0]
    target = tf.function(translator.target_tokenizer)(
        tf.constant([translation])
    )
    # The decoder's input: the start token, then the translation.
    target_ids = np.array([[START_ID, *target.to_list()[0]]], "int32")
    print(f"\n{sentence}  ->  {translation}")
    view = head_view(
        translator.model,
        [source_ids, target_ids],
        pieces(translator.source_tokenizer, source_ids[0]),
        pieces(translator.target_tokenizer, target_ids[0]),
        merge_subwords=not args.pieces,
        title=f"{sentence}  ->  {translation}",
    )
    html = view.save(os.path.join(args.output_dir, f"sentence{index}.html"))
    print(f"  head view: {html}")
    figures = []
    for layer in view.layers:
        name = layer.name.replace("/", "_")
        path = os.path.join(args.output_dir, f"sentence{index}_{name}.png")
        plot_attention_scores(
            layer.scores,
            path,
            layer.query_tokens,
            layer.key_tokens,
            title=f"{layer.name} {layer.kind}: {sentence}",
            scale=args.scale,
        )
        figures.append(path)
        print(f"  {layer.name} {layer.kind} ({path})")
    print(format_head_table(view.head_table(top_k=args.top_k)))
    return html, figures


def run(args):
    translator = Translator.load(args.run_dir)
    sentences = args.sentence or [
        source
        for source, _ in data.read_pairs(
            os.path.join(args.run_dir, "held_out.tsv")
        )[: args.num_sentences]
    ]
    os.makedirs(args.output_dir, exist_ok=True)
    views, figures = [], []
    for index, sentence in enumerate(sentences):
        html, drawn = draw_sentence(sentence, index, translator, args)
        views.append(html)
        figures += drawn
    return {"sentences": sentences, "head_views": views, "figures": figures}


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
        help="where the HTML and PNGs go; default: RUN_DIR/attention",
    )
    add(
        "--sentence",
        action="append",
        metavar="TEXT",
        help="a sentence to show (repeat for more), such as 'The chef "
        "baked a delicious cake for the birthday party'; default: the "
        "first held-out sentences of the run",
    )
    add("--num-sentences", type=int, default=2)
    add("--top-k", type=int, default=2, help="pairs printed per head")
    add(
        "--scale",
        choices=("shared", "per_head"),
        default="shared",
        help="colour scale of the PNGs: one for all heads or one per head",
    )
    add(
        "--pieces",
        action="store_true",
        help="show subword pieces instead of words",
    )
    args = parser.parse_args(argv)
    args.output_dir = args.output_dir or os.path.join(args.run_dir, "attention")
    return args


def main(argv=None):
    summary = run(parse_args(argv))
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
