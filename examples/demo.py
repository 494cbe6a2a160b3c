"""The tour of keras_mha that `make demo` runs, in a few minutes on a CPU.

1. Trains the translator of `translate.py` on the generated corpus, with the
   Keras progress bar, and prints its held-out exact match and BLEU.
2. Draws its encoder self-attention and decoder cross-attention heads (PNG).
3. Exports a SavedModel (done by `translate.py`), loads it in a fresh Python
   process that imports nothing but TensorFlow, and translates three held-out
   sentences through its `serving_default` signature.

Options other than `--output-dir` go to `translate.py`, for example
`python examples/demo.py --epochs 2`. The last line printed is a JSON summary.
"""

import argparse
import json
import os
import subprocess
import sys

import attention_heads
import translate
import translation_data

# Run in a fresh process: the export must serve without keras_mha or Keras.
SERVE = """
import json, sys
for name in ("keras_mha", "keras", "keras_hub", "keras_nlp", "tensorflow_text"):
    sys.modules[name] = None
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
texts = serve(sentences=tf.constant(json.loads(sys.argv[2])))["translations"]
print(json.dumps([text.decode("utf-8") for text in texts.numpy()]))
"""


def serve_in_fresh_process(savedmodel, sentences):
    """Translates `sentences` with the SavedModel in a TensorFlow-only
    process."""
    result = subprocess.run(
        [sys.executable, "-c", SERVE, savedmodel, json.dumps(sentences)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode:
        raise RuntimeError(f"Serving {savedmodel} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other options are passed to translate.py (see its --help).",
    )
    parser.add_argument(
        "--output-dir",
        default="runs/demo",
        help="everything the demo writes goes here",
    )
    args, translate_argv = parser.parse_known_args(argv)
    translate_args = translate.parse_args(
        ["--output-dir", args.output_dir, *translate_argv]
    )

    print("== 1. Training the translator (Ctrl-C, then rerun, resumes) ==")
    metrics = translate.run(translate_args)
    print(
        f"Held-out exact match {metrics['exact_match']:.3f}, "
        f"BLEU {metrics['bleu']:.3f}, after {metrics['epochs']} epochs "
        f"({metrics['seconds']:.0f} s)"
    )

    print("\n== 2. Drawing the attention heads ==")
    figures = attention_heads.run(
        attention_heads.parse_args(
            [
                "--run-dir",
                args.output_dir,
                "--num-sentences",
                "1",
                "--max-length",
                str(translate_args.max_length),
            ]
        )
    )["figures"]

    print(
        "\n== 3. Serving the SavedModel in a fresh TensorFlow-only process =="
    )
    held_out = translation_data.read_pairs(
        os.path.join(args.output_dir, "held_out.tsv")
    )
    sentences = [source for source, _ in held_out[:3]]
    served = serve_in_fresh_process(metrics["savedmodel"], sentences)
    for sentence, translation in zip(sentences, served):
        print(f"  {sentence}  ->  {translation}")

    print("\n== Files ==")
    out = args.output_dir
    for what, path in [
        ("best checkpoint", os.path.join(out, "translator.keras")),
        ("vocabularies", os.path.join(out, "vocabulary.json")),
        ("held-out pairs", os.path.join(out, "held_out.tsv")),
        ("TensorBoard logs", os.path.join(out, "logs")),
        ("attention heads", os.path.dirname(figures[0])),
        ("SavedModel", metrics["savedmodel"]),
    ]:
        print(f"  {what:17} {path}")
    print(
        f"  Serve it: saved_model_cli run --dir {metrics['savedmodel']} "
        "--tag_set serve --signature_def serving_default "
        "--input_exprs 'sentences=[\"We want a red car.\"]'"
    )
    summary = {**metrics, "figures": len(figures), "served": served}
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
