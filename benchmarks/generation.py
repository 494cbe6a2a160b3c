"""Case 2: greedy autoregressive generation with a decoder-only model.

Three ways to generate with the same sizes (blocks, width, heads,
feed-forward width, vocabulary), all through keras_hub's `GreedySampler`
in one XLA-compiled function, as keras_hub's `GPT2CausalLM.generate_step`
does:

- `keras_mha`: `keras_mha.TransformerCausalLM` with the key/value
  cache it declares (`build_cache`, `call_with_cache`), one token per step;
- `keras_hub`: keras_hub's `TransformerDecoder`s with theirs, the same way;
- `recompute`: the same model as `keras_mha` (so the same weights and the
  same tokens), with no cache: every step runs the whole token buffer of
  `prompt + new` positions, which is how a compiled loop with static shapes
  recomputes the prefix (the causal mask makes later positions irrelevant).

keras_hub's blocks run through the same cached loop as ours,
`keras_mha.call_blocks_with_cache`.
"""

import numpy as np

from benchmarks.timing import attention_block_flops
from benchmarks.timing import fastest_of_interleaved
from benchmarks.timing import log

IMPLS = ("keras_mha", "keras_hub", "recompute")


class _KerasHubStack:
    """keras_hub's embedding, sine positions, decoder blocks and head, with
    the interface of `TransformerCausalLM` that `make_generate` uses."""

    def __init__(self, cfg):
        import keras
        import keras_hub

        self.cfg = cfg
        self.embedding = keras.layers.Embedding(cfg["vocab"], cfg["width"])
        self.position = keras_hub.layers.SinePositionEncoding()
        self.head = keras.layers.Dense(cfg["vocab"])
        self.blocks = [
            keras_hub.layers.TransformerDecoder(
                cfg["intermediate_dim"], cfg["num_heads"]
            )
            for _ in range(cfg["num_blocks"])
        ]

    @property
    def variables(self):
        # What a compiled loop passes in as state (`keras_mha.generate`).
        layers = [self.embedding, self.position, *self.blocks, self.head]
        return [v for layer in layers for v in layer.variables]

    def _embed(self, token_ids, index):
        x = self.embedding(token_ids)
        return x + self.position(x, start_index=index)

    def __call__(self, token_ids, training=False):
        x = self._embed(token_ids, 0)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def build_cache(self, token_ids, max_length):
        from keras import ops

        # keras_hub's layout: (b, 2, max_length, n, h).
        heads = self.cfg["num_heads"]
        shape = (
            ops.shape(token_ids)[0],
            2,
            max_length,
            heads,
            self.cfg["width"] // heads,
        )
        empty = tuple(ops.zeros(shape) for _ in self.blocks)
        return self.call_with_cache(token_ids, empty, 0)[1]

    def call_with_cache(self, token_ids, cache, index):
        from keras_mha import call_blocks_with_cache

        x, cache = call_blocks_with_cache(
            self._embed(token_ids, index), self.blocks, cache, index
        )
        return self.head(x), cache


def make_stack(impl, cfg):
    """`TransformerCausalLM` (ours) or keras_hub's stack of the same sizes."""
    if impl == "keras_hub":
        return _KerasHubStack(cfg)
    from keras_mha import TransformerCausalLM

    return TransformerCausalLM(
        cfg["vocab"],
        hidden_dim=cfg["width"],
        num_heads=cfg["num_heads"],
        intermediate_dim=cfg["intermediate_dim"],
        num_layers=cfg["num_blocks"],
        dropout=0.0,
    )


def make_generate(stack, batch, prompt_length, cached):
    """An XLA-compiled `(token_ids, padding_mask) -> token_ids` greedy loop.

    With `cached`, one token a step through the key/value cache; without,
    the whole buffer every step.
    """
    import keras_hub
    import tensorflow as tf
    from keras import ops

    sampler = keras_hub.samplers.GreedySampler()

    def next_cached(prompt, cache, index):
        # The cache index is the index of the previous token.
        token = ops.slice(prompt, [0, index - 1], [batch, 1])
        logits, cache = stack.call_with_cache(token, cache, index - 1)
        return ops.squeeze(logits, axis=1), None, cache

    def next_recompute(prompt, cache, index):
        logits = stack(prompt, training=False)  # (b, max_length, vocab)
        return ops.take(logits, index - 1, axis=1), None, cache

    @tf.function(jit_compile=True)
    def generate(token_ids, padding_mask):
        cache = None
        if cached:
            # Seed the cache with one pass over the prompt buffer.
            cache = stack.build_cache(token_ids, token_ids.shape[1])
        return sampler(
            next=next_cached if cached else next_recompute,
            prompt=token_ids,
            cache=cache,
            index=prompt_length,
            mask=padding_mask,
        )

    return generate


def generated_flops(cfg, batch, prompt_length, cached):
    """Matmul FLOPs of one generation, as each way runs it.

    Both caches hold `max_length` positions and every step attends over
    all of them (masked): that is what runs. Recompute runs all
    `max_length` positions through every block at every step.
    """
    length, steps = cfg["max_length"], cfg["max_length"] - prompt_length
    width, ffn = cfg["width"], cfg["intermediate_dim"]
    head = 2 * width * cfg["vocab"]
    per_step_tokens = 1 if cached else length
    blocks = cfg["num_blocks"] * attention_block_flops(
        per_step_tokens, width, ffn, length
    )
    step = blocks + head * per_step_tokens
    prefill = (
        cfg["num_blocks"] * attention_block_flops(length, width, ffn, length)
        + head * length
    )
    return batch * (steps * step + (prefill if cached else 0))


def run(cfg, batches, prompt_length, rounds, peak):
    """Generates with each way at each batch; returns rows of the table."""
    rows = []
    rng = np.random.default_rng(0)
    ours, theirs = make_stack("keras_mha", cfg), make_stack("keras_hub", cfg)
    # Recompute runs our layers without the cache: the same weights.
    stacks = {"keras_mha": ours, "keras_hub": theirs, "recompute": ours}
    for batch in batches:
        prompt = rng.integers(1, cfg["vocab"], (batch, prompt_length))
        token_ids = np.zeros((batch, cfg["max_length"]), dtype="int32")
        token_ids[:, :prompt_length] = prompt
        padding_mask = token_ids != 0
        generates, outputs = {}, {}
        for impl in IMPLS:
            log(f"generation {impl} batch {batch}: tracing and compiling")
            stacks[impl](token_ids[:, :prompt_length])  # builds the layers
            generates[impl] = make_generate(
                stacks[impl], batch, prompt_length, impl != "recompute"
            )
            outputs[impl] = generates[impl](token_ids, padding_mask).numpy()
        runners = {
            impl: (lambda g=g, t=token_ids, m=padding_mask: g(t, m).numpy())
            for impl, g in generates.items()
        }
        best = fastest_of_interleaved(runners, rounds, f"generation {batch}")
        new_tokens = batch * (cfg["max_length"] - prompt_length)
        for impl in IMPLS:
            cached = impl != "recompute"
            flops = generated_flops(cfg, batch, prompt_length, cached)
            row = {
                "impl": impl,
                "batch": batch,
                "prompt_length": prompt_length,
                "new_tokens": cfg["max_length"] - prompt_length,
                "status": "ok",
                "seconds": best[impl],
                "tokens_per_second": new_tokens / best[impl],
                "fraction_of_matmul_peak": flops / best[impl] / peak,
            }
            if impl == "keras_mha":
                # Same weights as recompute: greedy tokens should agree.
                row["same_tokens_as_recompute"] = float(
                    np.mean(outputs[impl] == outputs["recompute"])
                )
            rows.append(row)
    return rows
