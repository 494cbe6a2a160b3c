"""The sizes of every benchmark case, side by side: one table.

Each case has three columns:

- `full`: the CPU run, `python -m benchmarks.run` (`make bench`, about 15
  minutes on 2 CPU cores) and the defaults of `benchmarks.keras_hub_models`;
- `smoke`: tiny shapes, one or two steps: what the tests run, of the CPU
  run (`--smoke`) and of the GPU check (`--smoke`, on the CPU) alike;
- `gpu`: the GPU check, `python -m benchmarks.gpu` (docs/gpu.md).

`None` where an entry point does not run the case.
"""

# The layer tests of the default suite, run by the GPU check.
LAYER_TESTS = (
    "tests/test_attention.py",
    "tests/test_multi_head_attention.py",
    "tests/test_multi_head_self_attention.py",
    "tests/test_sinusoidal_position_encoding.py",
    "tests/test_transformer_encoder_block.py",
    "tests/test_transformer_decoder_block.py",
)
COLUMNS = ("full", "smoke", "gpu")

SIZES = {
    # Interleaved rounds of every timed case; each keeps its fastest.
    "rounds": {"full": 3, "smoke": 2, "gpu": 3},
    # The matmul throughput's products, `size x size` (bf16 on the GPU).
    "matmul_size": {"full": 1024, "smoke": 128, "gpu": 8192},
    "tests": {
        "full": None,
        "smoke": {
            "files": ("tests/test_sinusoidal_position_encoding.py",),
            "select": "golden or bad_arguments",
            "workers": 0,
        },
        "gpu": {"files": LAYER_TESTS, "select": None, "workers": 4},
    },
    "encoder": {
        "full": {
            "shapes": ((32, 128), (8, 512)),
            "width": 256,
            "num_heads": 8,
            "intermediate_dim": 1024,
            "steps": {"train": 3, "predict": 5},
        },
        "smoke": {
            "shapes": ((2, 16),),
            "width": 32,
            "num_heads": 4,
            "intermediate_dim": 64,
            "steps": {"train": 1, "predict": 1},
        },
        "gpu": {
            "shapes": ((16, 2048), (64, 512)),
            "width": 1024,
            "num_heads": 16,
            "intermediate_dim": 4096,
            "steps": {"train": 10, "predict": 10},
        },
    },
    "generation": {
        "full": {
            "cfg": {
                "num_blocks": 4,
                "width": 256,
                "num_heads": 8,
                "intermediate_dim": 1024,
                "vocab": 1000,
                "max_length": 32 + 256,
            },
            "batches": (1,),
            "prompt_length": 32,
        },
        "smoke": {
            "cfg": {
                "num_blocks": 2,
                "width": 32,
                "num_heads": 4,
                "intermediate_dim": 64,
                "vocab": 50,
                "max_length": 12,
            },
            "batches": (1,),
            "prompt_length": 4,
        },
        "gpu": {
            "cfg": {
                "num_blocks": 4,
                "width": 1024,
                "num_heads": 16,
                "intermediate_dim": 4096,
                "vocab": 1000,
                "max_length": 32 + 256,
            },
            "batches": (1, 32),
            "prompt_length": 32,
        },
    },
    # Self-attention forward + backward, batch 1. On the CPU, lengths over
    # 4,096 run once (`benchmarks.long_sequence`).
    "long": {
        "full": {
            "seq_lengths": (1024, 2048, 4096, 8192, 16384),
            "width": 256,
            "num_heads": 8,
            "repeats": 2,
        },
        "smoke": {
            "seq_lengths": (32, 64),
            "width": 32,
            "num_heads": 4,
            "repeats": 1,
        },
        "gpu": {
            "seq_lengths": (2048, 4096, 8192, 16384, 32768),
            "width": 1024,
            "num_heads": 16,
            "repeats": 3,
        },
    },
    # A Llama-shaped backbone: `shape` overrides `keras_hub_models.SHAPES`.
    "keras_hub": {
        "full": {
            "shape": {},
            "batch": 8,
            "seq_length": 128,
            "steps": 3,
            "prompt_length": 16,
            "max_length": 64,
        },
        "smoke": {
            "shape": {
                "num_layers": 1,
                "hidden_dim": 16,
                "intermediate_dim": 24,
                "num_query_heads": 4,
                "num_key_value_heads": 2,
            },
            "batch": 2,
            "seq_length": 8,
            "steps": 1,
            "prompt_length": 4,
            "max_length": 8,
        },
        "gpu": {
            "shape": {
                "num_layers": 4,
                "hidden_dim": 1024,
                "intermediate_dim": 2816,
                "num_query_heads": 16,
                "num_key_value_heads": 4,
            },
            "batch": 16,
            "seq_length": 1024,
            "steps": 5,
            "prompt_length": 32,
            "max_length": 32 + 256,
        },
    },
    "translator": {
        "full": None,
        "smoke": {
            "num_pairs": 60,
            "vocabulary_size": 2000,
            "epochs": 1,
            "batch_size": 32,
            "hidden_dim": 16,
            "num_heads": 2,
            "intermediate_dim": 32,
            "num_layers": 1,
            "max_length": 6,
        },
        "gpu": {
            "num_pairs": 4000,
            "vocabulary_size": 2000,
            "epochs": 3,
            "batch_size": 64,
            "hidden_dim": 256,
            "num_heads": 8,
            "intermediate_dim": 1024,
            "num_layers": 2,
            "max_length": 24,
        },
    },
}


def sizes(column):
    """Every case's sizes in `column` (one of `COLUMNS`), by case."""
    if column not in COLUMNS:
        raise ValueError(
            f"Expected a column of {COLUMNS}. Received: column={column!r}"
        )
    return {case: table[column] for case, table in SIZES.items()}
