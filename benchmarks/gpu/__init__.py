"""The GPU check: the package measured on one GPU, in one command.

    benchmarks/gpu_check.sh                    # on the GPU machine, docs/gpu.md
    python -m benchmarks.gpu --out DIR         # the same, wheels installed
    python -m benchmarks.gpu --smoke --out DIR # CPU, tiny shapes (the tests)

`benchmarks.gpu.check` runs each part in its own child process
(`benchmarks.child.Child`) under a hard time limit, so the whole check ends
within `--budget-s` seconds (default 450) and a part that overruns is
recorded as "timed out" with the rows it finished, while the other parts
still run. Everything runs on the JAX backend except the PyTorch layer
tests. One module a part, in order:

- `device`: the software, the GPU, and its bf16 matmul throughput (the
  ceiling every "fraction of peak" below is measured against);
- `layer_tests` (`tests_jax`, `tests_torch`): the default suite's layer
  tests on the GPU, both at once (correctness, not timing); pass, fail,
  skip counts;
- `encoder`: one encoder block, ours vs keras_hub's `TransformerEncoder`
  vs a `keras.layers.MultiHeadAttention` block, `mixed_bfloat16`, train
  and inference tokens/s and the fraction of the bf16 matmul peak;
- `long` (`long_fused`, `long_explicit`): self-attention forward + backward
  time and peak GPU memory against the sequence length, fused path vs
  explicit softmax, with the kernel XLA compiled (cuDNN flash attention
  or not);
- `generation`: cached greedy generation tokens/s at two batch sizes,
  ours vs keras_hub's cached `TransformerDecoder`;
- `hub` (`keras_hub`): a Llama-shaped keras_hub causal LM converted by
  `keras_mha.from_keras_hub` vs keras_hub's own, `mixed_bfloat16`: the
  backbone's compiled training step and cached greedy generation;
- `translator`: a `keras_mha.seq2seq` translator trained as
  `examples/translate.py` trains it, under `mixed_bfloat16`: epoch time,
  training tokens/s and the held-out exact match and BLEU.

The sizes are the `gpu` column of `benchmarks.sizes` (`smoke` with
`--smoke`). Writes `gpu_check.json` (schema `check.SCHEMA`),
`gpu_check.png` and `gpu_check.log` (each child's output) into `--out`.
With `--smoke`, the parts run on the CPU with tiny shapes and without
TensorFlow (imports of it fail, as on the GPU machine), except the
translator, which needs it.
"""
