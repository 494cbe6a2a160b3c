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

import keras
import numpy as np
import translate
import translation_data

from keras_mha.visualize import plot_layer_attention


def blocks(model, prefix):
    """The model's layers named `prefix_0`, `prefix_1`, ... in order."""
    return [layer for layer in model.layers if layer.name.startswith(prefix)]


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


def draw_sentence(
    sentence,
    index,
    encoder,
    decoder,
    source_vectorizer,
    target_vocabulary,
    args,
):
    """Draws and describes every block's heads for one sentence."""
    source_ids = source_vectorizer([sentence])  # (1, s), no padding
    source_tokens = [
        source_vectorizer.get_vocabulary()[i]
        for i in keras.ops.convert_to_numpy(source_ids[0])
    ]
    translation = translate.translate(
        [sentence],
        encoder,
        decoder,
        source_vectorizer,
        target_vocabulary,
        args.max_length,
    )[0]
    target_tokens = [translate.START] + translation.split()
    target_ids = keras.ops.convert_to_tensor(
        [[target_vocabulary.index(t) for t in target_tokens]]
    )
    print(f"\n{sentence}  ->  {translation}")
    # Probe models give each block's input; the block is then called again
    # on it, with its trained weights, to return the attention scores.
    encoder_blocks, decoder_blocks = (
        blocks(encoder, "encoder_block"),
        blocks(decoder, "decoder_block"),
    )
    encoder_inputs = keras.tree.flatten(
        keras.Model(encoder.inputs, [block.input for block in encoder_blocks])(
            source_ids
        )
    )
    encoded = encoder(source_ids)
    source_mask = keras.ops.not_equal(source_ids, 0)
    decoder_probe = keras.Model(
        decoder.inputs, [block.input[0] for block in decoder_blocks]
    )
    decoder_probe.supports_masking = True  # As the decoder (see translate.py).
    decoder_inputs = keras.tree.flatten(
        decoder_probe([target_ids, encoded, source_mask])
    )
    figures = []
    runs = [
        (block, (x,), {}, source_tokens, "self-attention")
        for block, x in zip(encoder_blocks, encoder_inputs)
    ] + [
        (
            block,
            (y, encoded),
            {"encoder_padding_mask": source_mask},
            target_tokens,
            "cross-attention",
        )
        for block, y in zip(decoder_blocks, decoder_inputs)
    ]
    for block, inputs, kwargs, query_tokens, kind in runs:
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
    encoder, decoder, source_vectorizer, target_vocabulary = (
        translate.load_translator(args.run_dir)
    )
    sentences = args.sentences or [
        source
        for source, _ in translation_data.read_pairs(
            os.path.join(args.run_dir, "held_out.tsv")
        )[: args.num_sentences]
    ]
    os.makedirs(args.output_dir, exist_ok=True)
    figures = []
    for index, sentence in enumerate(sentences):
        figures += draw_sentence(
            sentence,
            index,
            encoder,
            decoder,
            source_vectorizer,
            target_vocabulary,
            args,
        )
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
    add(
        "--max-length",
        type=int,
        default=24,
        help="most target tokens decoded, the start token included",
    )
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
