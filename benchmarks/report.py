"""The benchmark's table (Markdown), its targets and its plot."""

_GIB = 1024**3


def ratio(a, b):
    """`a / b`, or `None` when either is missing or zero. The one ratio of
    the benchmarks' reports (`report` and `gpu_report`)."""
    return a / b if a and b else None


def times(value):
    """A ratio as text: `1.23x`, or `—` for `None`."""
    return "—" if value is None else f"{value:.2f}x"


def _by(rows, *keys):
    return {tuple(row[k] for k in keys): row for row in rows}


def _backend(row):
    return row.get("backend", "tensorflow")


def _encoder_index(rows):
    """Rows by (backend, batch, seq, jit, mode, impl)."""
    return {
        (_backend(r), r["batch"], r["seq_length"], r["jit_compile"])
        + (r["mode"], r["impl"]): r
        for r in rows
    }


def encoder_table(rows):
    index = _encoder_index(rows)
    lines = [
        (
            "| backend | batch × seq | jit | mode | ours / keras_hub "
            "| ours / keras | keras_mha tok/s | keras_hub tok/s | keras tok/s "
            "| % of matmul peak (ours, hub, keras) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen = []
    for row in rows:
        key = (
            _backend(row),
            row["batch"],
            row["seq_length"],
            row["jit_compile"],
            row["mode"],
        )
        if key in seen:
            continue
        seen.append(key)
        speed = {
            impl: index[(*key, impl)]["tokens_per_second"]
            for impl in ("keras_mha", "keras_hub", "keras")
        }
        peak = "/".join(
            f"{100 * index[(*key, impl)]['fraction_of_matmul_peak']:.0f}"
            for impl in ("keras_mha", "keras_hub", "keras")
        )
        lines.append(
            f"| {key[0]} | {key[1]} × {key[2]} | {'on' if key[3] else 'off'} "
            f"| {key[4]} "
            f"| {times(ratio(speed['keras_mha'], speed['keras_hub']))} "
            f"| {times(ratio(speed['keras_mha'], speed['keras']))} "
            f"| {speed['keras_mha']:,.0f} | {speed['keras_hub']:,.0f} "
            f"| {speed['keras']:,.0f} | {peak} |"
        )
    return "\n".join(lines)


def generation_table(rows):
    ours = next(
        (r for r in rows if r["impl"] == "keras_mha" and r["status"] == "ok"),
        None,
    )
    lines = [
        "| generation | tokens/s | ours / this row | % of matmul peak | note |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if row["status"] != "ok":
            lines.append(
                f"| {row['impl']} | — | — | — | {row['status']}: "
                f"{row.get('reason', '')} |"
            )
            continue
        speedup = ratio(
            ours and ours["tokens_per_second"], row["tokens_per_second"]
        )
        note = ""
        if "same_tokens_as_recompute" in row:
            note = (
                f"{100 * row['same_tokens_as_recompute']:.0f}% of tokens "
                "equal to recompute"
            )
        lines.append(
            f"| {row['impl']} | {row['tokens_per_second']:,.0f} "
            f"| {times(speedup)} "
            f"| {100 * row['fraction_of_matmul_peak']:.1f} | {note} |"
        )
    return "\n".join(lines)


def long_table(rows):
    index = _by(rows, "seq_length", "impl")
    lines = [
        (
            "| seq | speed ours / keras | memory ours / keras | keras_mha s "
            "| keras s | keras_mha peak RSS | keras peak RSS |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for seq_length in sorted({row["seq_length"] for row in rows}):
        ours, theirs = (
            index[(seq_length, "keras_mha")],
            index[(seq_length, "keras")],
        )

        def ok(row, field):
            return row.get(field) if row["status"] == "ok" else None

        def cell(row, field, scale, spec, unit):
            value = ok(row, field)
            if value is None:
                return row["status"]
            return f"{format(value / scale, spec)}{unit}"

        speed = ratio(ok(theirs, "seconds"), ok(ours, "seconds"))
        memory = ratio(ok(ours, "peak_rss_bytes"), ok(theirs, "peak_rss_bytes"))
        lines.append(
            f"| {seq_length} | {times(speed)} | {times(memory)} "
            f"| {cell(ours, 'seconds', 1, '.2f', '')} "
            f"| {cell(theirs, 'seconds', 1, '.2f', '')} "
            f"| {cell(ours, 'peak_rss_bytes', _GIB, '.2f', ' GiB')} "
            f"| {cell(theirs, 'peak_rss_bytes', _GIB, '.2f', ' GiB')} |"
        )
    return "\n".join(lines)


TABLES = {
    "encoder": encoder_table,
    "generation": generation_table,
    "long": long_table,
}


def markdown(results):
    """Every measured case's table, Markdown, with the absolute figures."""
    parts = []
    for case, rows in results["cases"].items():
        parts.append(TABLES[case](rows))
    return "\n\n".join(parts)


def targets(results):
    """The performance targets, each met or missed with the measured figure."""
    cases, checks = results["cases"], []

    def check(name, value, goal, unit="x"):
        met = value is not None and value >= goal
        checks.append(
            {
                "target": name,
                "measured": value,
                "goal": goal,
                "unit": unit,
                "met": met,
            }
        )

    if "encoder" in cases:
        index = _encoder_index(cases["encoder"])
        first = cases["encoder"][0]
        shape = (first["batch"], first["seq_length"])
        lowest = {}
        for (backend, b, s, jit, mode, impl), row in index.items():
            if impl != "keras_mha":
                continue
            speedup = (
                row["tokens_per_second"]
                / index[(backend, b, s, jit, mode, "keras_hub")][
                    "tokens_per_second"
                ]
            )
            if (b, s) == shape and backend == "tensorflow":
                check(
                    f"encoder {mode} {b}x{s} jit={'on' if jit else 'off'} "
                    "vs keras_hub",
                    speedup,
                    1.2,
                )
            if (b, s) == shape and (backend, mode) == ("jax", "train"):
                check(
                    f"encoder train {b}x{s} on jax vs keras_hub", speedup, 1.1
                )
            key = (backend, mode)
            lowest[key] = min(lowest.get(key, speedup), speedup)
        for (backend, mode), speedup in lowest.items():
            check(
                f"encoder {mode} on {backend} never slower than keras_hub "
                "(lowest ratio, any shape)",
                speedup,
                1.0,
            )
    if "generation" in cases:
        speed = {
            row["impl"]: row.get("tokens_per_second")
            for row in cases["generation"]
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
        peak = (
            longest.get("peak_rss_bytes") if longest["status"] == "ok" else None
        )
        # Met when the peak is under the goal: compare headroom to 0.
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
    lines = ["| target | goal | measured | met |", "|---|---|---|---|"]
    for c in checks:
        measured = "—" if c["measured"] is None else f"{c['measured']:.2f}"
        goal = (
            f"≤ {c['goal']:.1f} GiB"
            if c["unit"].startswith("GiB")
            else f"≥ {c['goal']:.1f}x"
        )
        lines.append(
            f"| {c['target']} | {goal} | {measured} "
            f"| {'yes' if c['met'] else 'no'} |"
        )
    return "\n".join(lines)


def plot(results, path):
    """One panel a case: speed ratios, generation speed, long-seq curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results["cases"]
    fig, axes = plt.subplots(
        1, len(cases), figsize=(6 * len(cases), 4.5), squeeze=False
    )
    for ax, (case, rows) in zip(axes[0], cases.items()):
        if case == "encoder":
            _plot_encoder(ax, rows)
        elif case == "generation":
            ok = [r for r in rows if r["status"] == "ok"]
            ax.bar(
                [r["impl"] for r in ok], [r["tokens_per_second"] for r in ok]
            )
            ax.set_yscale("log")
            ax.set_ylabel("generated tokens/s (log)")
            ax.set_title("generation")
        else:
            _plot_long(ax, rows)
    fig.suptitle(
        f"keras_mha benchmarks, {results['date']}, "
        f"{results['machine']['cpu']} × {results['machine']['cores']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_encoder(ax, rows):
    index = _encoder_index(rows)
    labels, hub, keras = [], [], []
    for (backend, b, s, jit, mode, impl), row in index.items():
        if impl != "keras_mha":
            continue
        labels.append(
            f"{backend[:5]}\n{b}×{s}\n{mode}\njit {'on' if jit else 'off'}"
        )
        for out, peer in ((hub, "keras_hub"), (keras, "keras")):
            out.append(
                row["tokens_per_second"]
                / index[(backend, b, s, jit, mode, peer)]["tokens_per_second"]
            )
    positions = range(len(labels))
    ax.bar([p - 0.2 for p in positions], hub, 0.4, label="ours / keras_hub")
    ax.bar([p + 0.2 for p in positions], keras, 0.4, label="ours / keras")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(1.2, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xticks(list(positions), labels, fontsize=6)
    ax.set_ylabel("speed ratio (tokens/s)")
    ax.set_title("encoder block")
    ax.legend(fontsize=8)


def _plot_long(ax, rows):
    for impl, marker in (("keras_mha", "o"), ("keras", "s")):
        ok = [r for r in rows if r["impl"] == impl and r["status"] == "ok"]
        ax.plot(
            [r["seq_length"] for r in ok],
            [r["peak_rss_bytes"] / _GIB for r in ok],
            marker=marker,
            label=f"{impl} peak RSS",
        )
        failed = [
            r
            for r in rows
            if r["impl"] == impl and r["status"] not in ("ok", "skipped")
        ]
        for r in failed:
            # At the bottom of the axes, where the curve stops.
            ax.annotate(
                f"{impl}: {r['status']}",
                (r["seq_length"], 0.05),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=8,
                ha="center",
            )
    ax.axhline(4.0, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length")
    ax.set_ylabel("peak RSS (GiB)")
    ax.set_title("self-attention forward + backward")
    ax.legend(fontsize=8)
