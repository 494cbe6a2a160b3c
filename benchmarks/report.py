"""The one reporter: the tables (Markdown), targets and plots of both the
CPU run (`benchmarks.run`, `results["cases"]`) and the GPU check
(`benchmarks.gpu`, `results["parts"]`). Ratios are ours / peer."""

_GIB = 1024**3
IMPLS = ("keras_mha", "keras_hub", "keras")


def ratio(a, b):
    """`a / b`, or `None` when either is missing or zero."""
    return a / b if a and b else None


def times(value):
    """A ratio as text: `1.23x`, or `—` for `None`."""
    return "—" if value is None else f"{value:.2f}x"


def number(value, digits=0, scale=1.0):
    """`value / scale` with thousands separators, or `—` for `None`."""
    return "—" if value is None else f"{value / scale:,.{digits}f}"


def percent(value, digits=0):
    return "—" if value is None else f"{100 * value:.{digits}f}"


def table(header, rows):
    """A Markdown table of a header and rows of cells."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(f"| {' | '.join(map(str, cells))} |" for cells in lines)


def _ok(row, field):
    return row.get(field) if row.get("status") == "ok" else None


def _group(rows, *keys):
    """`{key tuple: {impl: row}}` in the rows' order."""
    groups = {}
    for row in rows:
        key = tuple(row.get(k) for k in keys)
        groups.setdefault(key, {})[row["impl"]] = row
    return groups


_ENCODER_KEYS = ("backend", "batch", "seq_length", "jit_compile", "mode")


def encoder_table(rows, peak="matmul"):
    """Ours / keras_hub and ours / keras tokens/s of each encoder shape."""
    field = f"fraction_of_{peak}_peak"
    lines = []
    for (backend, b, s, jit, mode), by in _group(rows, *_ENCODER_KEYS).items():
        speed = {i: _ok(by.get(i, {}), "tokens_per_second") for i in IMPLS}
        lines.append(
            [backend, f"{b} × {s}", "on" if jit else "off", mode]
            + [times(ratio(speed["keras_mha"], speed[i])) for i in IMPLS[1:]]
            + [number(speed[i]) for i in IMPLS]
            + ["/".join(percent(by.get(i, {}).get(field)) for i in IMPLS)]
        )
    return table(
        ["backend", "batch × seq", "jit", "mode", "ours / keras_hub"]
        + ["ours / keras"]
        + [f"{i} tok/s" for i in IMPLS]
        + [f"% of {peak} peak (ours, hub, keras)"],
        lines,
    )


def generation_table(rows, peak="matmul"):
    """Each way's tokens/s, and ours / it at the same batch."""
    field = f"fraction_of_{peak}_peak"
    lines = []
    for (batch,), by in _group(rows, "batch").items():
        ours = _ok(by.get("keras_mha", {}), "tokens_per_second")
        for impl, row in by.items():
            if row["status"] != "ok":
                status = f"{row['status']}: {row.get('reason', '')}"
                lines.append([impl, batch, "—", "—", "—", status])
                continue
            note = ""
            if "same_tokens_as_recompute" in row:
                same = row["same_tokens_as_recompute"]
                note = f"{100 * same:.0f}% of tokens equal to recompute"
            lines.append(
                [impl, batch, number(row["tokens_per_second"])]
                + [times(ratio(ours, row["tokens_per_second"]))]
                + [percent(row.get(field), 1), note]
            )
    return table(
        ["generation", "batch", "tokens/s", "ours / this row"]
        + [f"% of {peak} peak", "note"],
        lines,
    )


def long_table(ours, theirs, names, memory_field):
    """Time and peak memory of two ways at each length, and their ratios."""
    ours = {r["seq_length"]: r for r in ours}
    theirs = {r["seq_length"]: r for r in theirs}
    kernels = any("kernel" in r for r in ours.values())

    def cell(row, field, scale, digits):
        value = _ok(row, field)
        return (
            row.get("status", "—")
            if value is None
            else number(value, digits, scale)
        )

    lines = []
    for seq in sorted(set(ours) | set(theirs)):
        a, b = ours.get(seq, {}), theirs.get(seq, {})
        lines.append(
            [seq, times(ratio(_ok(b, "seconds"), _ok(a, "seconds")))]
            + [times(ratio(_ok(a, memory_field), _ok(b, memory_field)))]
            + [cell(a, "seconds", 1, 3), cell(b, "seconds", 1, 3)]
            + [cell(a, memory_field, _GIB, 2), cell(b, memory_field, _GIB, 2)]
            + ([a.get("kernel", "—")] if kernels else [])
        )
    first, second = names
    return table(
        ["seq", f"speed {first} / {second}", f"memory {first} / {second}"]
        + [f"{first} s", f"{second} s"]
        + [f"{first} peak GiB", f"{second} peak GiB"]
        + ([f"{first} kernel"] if kernels else []),
        lines,
    )


def _long_cpu(rows):
    by_impl = {i: [r for r in rows if r["impl"] == i] for i in IMPLS}
    return long_table(
        by_impl["keras_mha"], by_impl["keras"], IMPLS[::2], "peak_rss_bytes"
    )


TABLES = {
    "encoder": encoder_table,
    "generation": generation_table,
    "long": _long_cpu,
}


def markdown(results):
    """Every measured case of a CPU run as a Markdown table."""
    return "\n\n".join(
        TABLES[case](rows) for case, rows in results["cases"].items()
    )


def targets(results):
    """The performance targets, each met or missed with the measured figure."""
    cases, checks = results["cases"], []

    def check(name, value, goal, unit="x"):
        met = value is not None and value >= goal
        checks.append(
            {"target": name, "measured": value, "goal": goal}
            | {"unit": unit, "met": met}
        )

    if "encoder" in cases:
        rows = cases["encoder"]
        shape = (rows[0]["batch"], rows[0]["seq_length"])
        lowest = {}
        for key, by in _group(rows, *_ENCODER_KEYS).items():
            backend, b, s, jit, mode = key
            speedup = ratio(
                by["keras_mha"]["tokens_per_second"],
                by["keras_hub"]["tokens_per_second"],
            )
            if (b, s) == shape and backend == "tensorflow":
                jit = "on" if jit else "off"
                name = f"encoder {mode} {b}x{s} jit={jit} vs keras_hub"
                check(name, speedup, 1.2)
            if (b, s) == shape and (backend, mode) == ("jax", "train"):
                name = f"encoder train {b}x{s} on jax vs keras_hub"
                check(name, speedup, 1.1)
            lowest[backend, mode] = min(
                lowest.get((backend, mode), speedup), speedup
            )
        for (backend, mode), speedup in lowest.items():
            name = (
                f"encoder {mode} on {backend} never slower than keras_hub "
                "(lowest ratio, any shape)"
            )
            check(name, speedup, 1.0)
    if "generation" in cases:
        rows = cases["generation"]
        speed = {
            r["impl"]: r.get("tokens_per_second")
            for r in rows
            if r["batch"] == rows[0]["batch"]
        }
        check(
            "cached generation vs recompute",
            ratio(speed.get("keras_mha"), speed.get("recompute")),
            10.0,
        )
        check(
            "cached generation vs keras_hub cached",
            ratio(speed.get("keras_mha"), speed.get("keras_hub")),
            1.0,
        )
    if "long" in cases:
        rows = [r for r in cases["long"] if r["impl"] == "keras_mha"]
        longest = max(rows, key=lambda r: r["seq_length"])
        peak = _ok(longest, "peak_rss_bytes")
        # Met when the peak is under the goal.
        checks.append(
            {
                "target": (
                    f"seq {longest['seq_length']} forward+backward peak RSS"
                ),
                "measured": None if peak is None else peak / _GIB,
                "goal": 4.0,
                "unit": "GiB (at most)",
                "met": peak is not None and peak < 4 * _GIB,
            }
        )
    return checks


def targets_markdown(checks):
    lines = []
    for c in checks:
        at_most = c["unit"].startswith("GiB")
        goal = f"≤ {c['goal']:.1f} GiB" if at_most else f"≥ {c['goal']:.1f}x"
        lines.append(
            [c["target"], goal, number(c["measured"], 2)]
            + ["yes" if c["met"] else "no"]
        )
    return table(["target", "goal", "measured", "met"], lines)


# The GPU check's results.


def _part(results, name):
    return results["parts"].get(name, {"status": "not run", "rows": []})


def _rows(results, name):
    return _part(results, name).get("rows", [])


def gpu_markdown(results):
    """The GPU check as Markdown: device, one table a part, statuses."""
    device = _part(results, "device")
    machine = device.get("machine", {})
    peak = device.get("bf16_flops_per_second")
    tests = []
    for name in ("tests_jax", "tests_torch"):
        part = _part(results, name)
        counts = ("passed", "failed", "errors", "skipped")
        tests.append(
            [name[6:], part["status"]] + [part.get(k, "—") for k in counts]
        )
    translator = _part(results, "translator")
    hub = []
    for mode in ("train", "generate"):
        by = {
            r["impl"]: _ok(r, "tokens_per_second")
            for r in _rows(results, "keras_hub")
            if r.get("mode") == mode
        }
        ours, theirs = by.get("keras_mha"), by.get("keras_hub")
        hub.append([mode, number(ours), number(theirs)])
        hub[-1].append(times(ratio(ours, theirs)))
    return "\n\n".join(
        [
            f"{results['date']}, `{results['command']}`, "
            f"{results['seconds']} s of a {results['budget_s']:.0f} s budget.",
            f"GPU: {machine.get('gpu') or 'none (CPU)'}; JAX "
            f"{machine.get('jax')}, PyTorch {machine.get('torch')}, Keras "
            f"{machine.get('keras')}, keras_hub {machine.get('keras_hub')}; "
            f"TensorFlow importable: {device.get('tensorflow_importable')}; "
            f"bf16 matmul {number(peak, 1, 1e12)} TFLOP/s "
            f"({device.get('matmul_size')}^3, same run).",
            table(
                ["layer tests", "status", "passed", "failed", "errors"]
                + ["skipped"],
                tests,
            ),
            encoder_table(_rows(results, "encoder"), "bf16"),
            long_table(
                _rows(results, "long_fused"),
                _rows(results, "long_explicit"),
                ("fused", "explicit"),
                "peak_memory_bytes",
            ),
            generation_table(_rows(results, "generation"), "bf16"),
            table(
                ["converted Llama", "keras_mha tok/s", "keras_hub tok/s"]
                + ["ours / keras_hub"],
                hub,
            ),
            table(
                ["translator", "steady epoch s", "training tokens/s"]
                + ["exact match", "BLEU"],
                [
                    [
                        translator["status"],
                        number(translator.get("steady_epoch_seconds"), 2),
                        number(translator.get("training_tokens_per_second")),
                        number(translator.get("exact_match"), 3),
                        number(translator.get("bleu"), 3),
                    ]
                ],
            ),
            "\n".join(
                f"- `{name}`: {part['status']}"
                + (f": {part['reason']}" if part.get("reason") else "")
                for name, part in results["parts"].items()
            ),
        ]
    )


# The plots: encoder ratios, generation tokens/s, long-sequence curves.


def plot(results, path):
    """A CPU run's plot, one panel a case."""
    cases = results["cases"]
    panels = {
        "encoder": lambda ax: _plot_encoder(ax, cases["encoder"]),
        "generation": lambda ax: _plot_generation(ax, cases["generation"]),
        "long": lambda ax: _plot_long(
            ax,
            {i: [r for r in cases["long"] if r["impl"] == i] for i in IMPLS},
            "peak_rss_bytes",
        ),
    }
    machine = results["machine"]
    _save(
        [panels[case] for case in cases],
        f"keras_mha benchmarks, {results['date']}, "
        f"{machine['cpu']} × {machine['cores']}",
        path,
    )


def gpu_plot(results, path):
    """The GPU check's plot: encoder, generation and long sequences."""
    long_rows = {
        name: _rows(results, f"long_{name}") for name in ("fused", "explicit")
    }
    smoke = " (smoke: numbers mean nothing)" if results["smoke"] else ""
    _save(
        [
            lambda ax: _plot_encoder(ax, _rows(results, "encoder")),
            lambda ax: _plot_generation(ax, _rows(results, "generation")),
            lambda ax: _plot_long(ax, long_rows, "peak_memory_bytes"),
        ],
        f"GPU check {results['date']}{smoke}",
        path,
    )


def _save(panels, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False
    )
    for ax, panel in zip(axes[0], panels):
        panel(ax)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_encoder(ax, rows):
    labels, ratios = [], {peer: [] for peer in IMPLS[1:]}
    for key, by in _group(rows, *_ENCODER_KEYS).items():
        backend, b, s, jit, mode = key
        labels.append(
            f"{backend[:5]}\n{b}×{s}\n{mode}\njit {'on' if jit else 'off'}"
        )
        ours = _ok(by.get("keras_mha", {}), "tokens_per_second")
        for peer, out in ratios.items():
            theirs = _ok(by.get(peer, {}), "tokens_per_second")
            out.append(ratio(ours, theirs) or 0)
    positions = range(len(labels))
    for shift, (peer, values) in zip((-0.2, 0.2), ratios.items()):
        ax.bar(
            [p + shift for p in positions], values, 0.4, label=f"ours / {peer}"
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(positions), labels, fontsize=6)
    ax.set_ylabel("speed ratio ours / peer (tokens/s)")
    ax.set_title("encoder block")
    ax.legend(fontsize=8)


def _plot_generation(ax, rows):
    """Grouped bars of tokens/s, one group a batch, one bar a way."""
    groups = _group([r for r in rows if r["status"] == "ok"], "batch")
    impls = list(dict.fromkeys(i for by in groups.values() for i in by))
    width = 0.8 / max(len(impls), 1)
    for i, impl in enumerate(impls):
        ax.bar(
            [g + i * width for g in range(len(groups))],
            [
                by.get(impl, {}).get("tokens_per_second", 0)
                for by in groups.values()
            ],
            width,
            label=impl,
        )
    ax.set_xticks(
        [g + 0.4 - width / 2 for g in range(len(groups))],
        [f"batch {batch}" for (batch,) in groups],
    )
    ax.set_yscale("log")
    ax.set_ylabel("generated tokens/s (log)")
    ax.set_title("generation")
    if impls:
        ax.legend(fontsize=8)


def _plot_long(ax, rows_by_name, memory_field):
    """Time and peak memory against the length; where each way failed."""
    for (name, rows), marker in zip(rows_by_name.items(), "os"):
        ok = [r for r in rows if r["status"] == "ok"]
        if ok:  # an empty line breaks a log axis
            lengths = [r["seq_length"] for r in ok]
            seconds = [r["seconds"] for r in ok]
            ax.plot(lengths, seconds, f"{marker}-", label=f"{name} time (s)")
            memory = [r[memory_field] / _GIB for r in ok]
            ax.plot(lengths, memory, f"{marker}--", label=f"{name} peak GiB")
        for r in rows:
            if r["status"] not in ("ok", "skipped"):
                # At the bottom of the axes, where the curve stops.
                ax.annotate(
                    f"{name}: {r['status']}",
                    (r["seq_length"], 0.05),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    fontsize=8,
                    ha="center",
                )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length")
    ax.set_title("self-attention forward + backward")
    if ax.lines:
        ax.legend(fontsize=8)
