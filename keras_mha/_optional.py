"""Optional dependencies: each part beyond the layers names its extra.

`pip install keras-mha` brings Keras and NumPy only, so the layers run on
JAX or PyTorch without TensorFlow. A part that needs more says which extra
brings it when it is used, instead of failing on a bare module name:

- `keras-mha[hub]`: keras_hub, whose samplers `generate` and `decode` step
  through.
- `keras-mha[text]`: the translator (`keras_mha.seq2seq`): TensorFlow and
  TensorFlow Text (its tokenizers and SavedModel export run TF ops),
  keras_hub, SentencePiece, sacrebleu, num2words, polib, TensorBoard.
- `keras-mha[visualize]`: matplotlib, for `keras_mha.visualize`.
"""

import importlib
import importlib.util

# The modules each extra brings that keras_mha imports, by import name.
EXTRAS = {
    "hub": ("keras_hub",),
    "text": (
        "tensorflow",
        "tensorflow_text",
        "keras_hub",
        "sentencepiece",
        "sacrebleu",
        "num2words",
        "polib",
    ),
    "visualize": ("matplotlib",),
}


def _missing_error(module, extra, purpose):
    return ImportError(
        f"{purpose} needs the `{module}` module, which keras-mha's `{extra}` "
        f"extra installs: pip install 'keras-mha[{extra}]'"
    )


def require(module, extra, purpose):
    """Imports `module`, or raises an `ImportError` naming the extra.

    Args:
        module: the import name, e.g. `"keras_hub"`.
        extra: the extra of keras-mha that installs it, e.g. `"hub"`.
        purpose: what needs it, for the message, e.g.
            `"the default greedy sampler"`.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise _missing_error(module, extra, purpose) from error


def check_extra(extra, purpose):
    """Raises an `ImportError` naming `extra` if one of its modules is
    missing, without importing any of them (`find_spec` only)."""
    for module in EXTRAS[extra]:
        if importlib.util.find_spec(module) is None:
            raise _missing_error(module, extra, purpose)
