"""The tour of keras_mha that `make demo` runs, in a few minutes on a CPU.

1. Trains the translator of `translate.py` (English -> French sentences with
   spelled-out numbers: capitals, hyphens, elisions, final punctuation), with
   the Keras progress bar, and prints its held-out exact match, BLEU, chrF.
2. Shows its attention heads with `attention_heads.py`: the interactive
   head view of a held-out sentence (self- and cross-attention, one HTML
   file that opens offline) next to one PNG per layer.
3. Loads the SavedModel that `translate.py` exported in a fresh Python
   process that cannot import Keras, keras_hub or keras_mha (only TensorFlow
   and TensorFlow Text's kernels), and translates held-out sentences and one
   with a made-up word through its `serving_default` signature.

The steps run the example scripts as they would run from a shell. Options
other than `--output-dir` go to `translate.py`, for example
`python examples/demo.py --epochs 2`. The last line printed is a JSON
summary.
"""

import argparse
import json
import os
import subprocess
import sys

from keras_mha.seq2seq import data

HERE = os.path.dirname(os.path.abspath(__file__))
# Run in a fresh process: the export must serve without Keras. TF Text's
# kernels are registered as a C++ server links them (`import
# tensorflow_text` would import Keras).
SERVE = """
import glob, importlib.machinery, json, os, sys
spec = importlib.machinery.PathFinder.find_spec("tensorflow_text")
for name in ("keras_mha", "keras", "keras_hub", "keras_nlp", "tensorflow_text"):
    sys.modules[name] = None
import tensorflow as tf
ops_dir = os.path.join(spec.submodule_search_locations[0], "python", "ops")
for library in sorted(glob.glob(os.path.join(ops_dir, "_*.so"))):
    tf.load_op_library(library)
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
texts = serve(sentences=tf.constant(json.loads(sys.argv[2])))["translations"]
print(json.dumps([text.decode("utf-8") for text in texts.numpy()]))
"""


def run_script(name, argv):
    """Runs `examples/name`, showing its output as it comes; returns its
    JSON summary (the last line)."""
    with subprocess.Popen(
        [sys.executable, os.path.join(HERE, name), *argv],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        lines = []
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if process.returncode:
        raise SystemExit(f"{name} failed with exit code {process.returncode}")
    return json.loads(lines[-1])


def serve_in_fresh_process(savedmodel, sentences):
    """Translates `sentences` with the SavedModel in a process without
    Keras."""
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
    out = args.output_dir

    print("== 1. Training the translator (Ctrl-C, then rerun, resumes) ==")
    metrics = run_script("translate.py", ["--output-dir", out, *translate_argv])
    print(
        f"Held-out exact match {metrics['exact_match']:.3f}, "
        f"BLEU {metrics['bleu']:.1f}, chrF {metrics['chrf']:.1f}, after "
        f"{metrics['epochs']} epochs ({metrics['seconds']:.0f} s)"
    )

    print("\n== 2. Drawing the attention heads ==")
    heads = run_script(
        "attention_heads.py", ["--run-dir", out, "--num-sentences", "1"]
    )
    figures = heads["figures"]
    print(f"Open the head view in a browser: {heads['head_views'][0]}")

    print("\n== 3. Serving the SavedModel in a fresh process without Keras ==")
    held_out = data.read_pairs(os.path.join(out, "held_out.tsv"))[:3]
    sentences = [source for source, _ in held_out]
    sentences.append("Marie has eighty-two zorblaxes!")  # an unseen word
    served = serve_in_fresh_process(metrics["savedmodel"], sentences)
    references = [target for _, target in held_out] + [None]
    for sentence, translation, reference in zip(sentences, served, references):
        print(f"  {sentence}  ->  {translation}")
        if reference is not None:
            print(f"  {'':{len(sentence)}}     (reference: {reference})")

    print("\n== Files ==")
    for what, path in [
        ("best checkpoint", os.path.join(out, "translator.keras")),
        ("tokenizers", os.path.join(out, "source.spm")),
        ("held-out pairs", os.path.join(out, "held_out.tsv")),
        ("TensorBoard logs", os.path.join(out, "logs")),
        ("attention heads", os.path.dirname(figures[0])),
        ("head view", heads["head_views"][0]),
        ("SavedModel", metrics["savedmodel"]),
    ]:
        print(f"  {what:17} {path}")
    print(
        "  Serve it: python examples/saved_model_cli.py run --dir "
        f"{metrics['savedmodel']} "
        "--tag_set serve --signature_def serving_default "
        "--input_exprs 'sentences=[\"Paul has forty-one boats.\"]'"
    )
    summary = {
        **metrics,
        "figures": len(figures),
        "head_view": heads["head_views"][0],
        "served": served,
    }
    print(json.dumps(summary, ensure_ascii=False))
    return summary


if __name__ == "__main__":
    main()
