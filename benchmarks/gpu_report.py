"""Tables and the plot of a GPU check (`benchmarks.gpu`) results dict."""

from benchmarks.report import ratio
from benchmarks.report import times

_GIB = 1024**3


def _num(value, digits=0):
    return "—" if value is None else f"{value:,.{digits}f}"


def _percent(value):
    return "—" if value is None else f"{100 * value:.0f}"


def _part(results, name):
    return results["parts"].get(name, {"status": "not run", "rows": []})


def _status_line(name, part):
    reason = f": {part['reason']}" if part.get("reason") else ""
    return f"- `{name}`: {part['status']}{reason}"


def device_markdown(results):
    device = _part(results, "device")
    machine = device.get("machine", {})
    peak = device.get("bf16_flops_per_second")
    return (
        f"GPU: {machine.get('gpu') or 'none (CPU)'}; JAX "
        f"{machine.get('jax')}, PyTorch {machine.get('torch')}, Keras "
        f"{machine.get('keras')}, keras_hub {machine.get('keras_hub')}; "
        f"TensorFlow importable: {device.get('tensorflow_importable')}; "
        f"bf16 matmul {_num(peak and peak / 1e12, 1)} TFLOP/s "
        f"({device.get('matmul_size')}^3, same run)."
    )


def tests_markdown(results):
    lines = [
        "| layer tests | status | passed | failed | errors | skipped |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("tests_jax", "tests_torch"):
        part = _part(results, name)
        counts = [str(part.get(k, "—")) for k in ("passed", "failed")]
        counts += [str(part.get(k, "—")) for k in ("errors", "skipped")]
        lines.append(
            f"| {name[6:]} | {part['status']} | {' | '.join(counts)} |"
        )
    return "\n".join(lines)


def encoder_markdown(results):
    rows = _part(results, "encoder").get("rows", [])
    lines = [
        "| batch × seq | mode | ours / keras_hub | ours / keras "
        "| keras_mha tok/s | keras_hub tok/s | keras tok/s "
        "| % of bf16 peak (ours, hub, keras) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["batch"], r["seq_length"], r["mode"]) for r in rows})
    for batch, seq, mode in keys:
        by = {
            r["impl"]: r
            for r in rows
            if (r["batch"], r["seq_length"], r["mode"]) == (batch, seq, mode)
        }
        tps = {i: by.get(i, {}).get("tokens_per_second") for i in by}
        fractions = "/".join(
            _percent(by.get(i, {}).get("fraction_of_bf16_peak"))
            for i in ("keras_mha", "keras_hub", "keras")
        )
        lines.append(
            f"| {batch} × {seq} | {mode} "
            f"| {times(ratio(tps.get('keras_mha'), tps.get('keras_hub')))} "
            f"| {times(ratio(tps.get('keras_mha'), tps.get('keras')))} "
            f"| {_num(tps.get('keras_mha'))} | {_num(tps.get('keras_hub'))} "
            f"| {_num(tps.get('keras'))} | {fractions} |"
        )
    return "\n".join(lines)


def long_markdown(results):
    fused = {
        r["seq_length"]: r for r in _part(results, "long_fused").get("rows", [])
    }
    explicit = {
        r["seq_length"]: r
        for r in _part(results, "long_explicit").get("rows", [])
    }
    lines = [
        "| seq | fused s | explicit s | explicit / fused time "
        "| fused peak GiB | explicit peak GiB | fused kernel |",
        "|---|---|---|---|---|---|---|",
    ]
    for seq in sorted(set(fused) | set(explicit)):
        f, e = fused.get(seq, {}), explicit.get(seq, {})

        def cell(row, key, scale=1.0, digits=3):
            if row.get("status") != "ok":
                return row.get("status", "—")
            return _num(row[key] / scale, digits)

        lines.append(
            f"| {seq} | {cell(f, 'seconds')} | {cell(e, 'seconds')} "
            f"| {times(ratio(e.get('seconds'), f.get('seconds')))} "
            f"| {cell(f, 'peak_memory_bytes', _GIB, 2)} "
            f"| {cell(e, 'peak_memory_bytes', _GIB, 2)} "
            f"| {f.get('kernel', '—')} |"
        )
    return "\n".join(lines)


def generation_markdown(results):
    rows = _part(results, "generation").get("rows", [])
    lines = [
        "| batch | keras_mha tok/s | keras_hub tok/s | ours / keras_hub |",
        "|---|---|---|---|",
    ]
    for batch in sorted({r["batch"] for r in rows}):
        by = {r["impl"]: r for r in rows if r["batch"] == batch}
        ours = by.get("keras_mha", {}).get("tokens_per_second")
        hub = by.get("keras_hub", {}).get("tokens_per_second")
        lines.append(
            f"| {batch} | {_num(ours)} | {_num(hub)} "
            f"| {times(ratio(ours, hub))} |"
        )
    return "\n".join(lines)


def keras_hub_markdown(results):
    """The converted Llama vs keras_hub's, train step and generation."""
    rows = _part(results, "keras_hub").get("rows", [])
    lines = [
        "| converted Llama | keras_mha tok/s | keras_hub tok/s "
        "| ours / keras_hub |",
        "|---|---|---|---|",
    ]
    for mode in ("train", "generate"):
        by = {r["impl"]: r for r in rows if r.get("mode") == mode}
        ours = by.get("keras_mha", {}).get("tokens_per_second")
        hub = by.get("keras_hub", {}).get("tokens_per_second")
        lines.append(
            f"| {mode} | {_num(ours)} | {_num(hub)} "
            f"| {times(ratio(ours, hub))} |"
        )
    return "\n".join(lines)


def translator_markdown(results):
    part = _part(results, "translator")
    return (
        "| translator | steady epoch s | training tokens/s | exact match "
        "| BLEU |\n|---|---|---|---|---|\n"
        f"| {part['status']} | {_num(part.get('steady_epoch_seconds'), 2)} "
        f"| {_num(part.get('training_tokens_per_second'))} "
        f"| {_num(part.get('exact_match'), 3)} | {_num(part.get('bleu'), 3)} |"
    )


def markdown(results):
    """The whole check as Markdown: device, one table a part, statuses."""
    statuses = "\n".join(
        _status_line(name, part) for name, part in results["parts"].items()
    )
    return "\n\n".join(
        [
            f"{results['date']}, `{results['command']}`, "
            f"{results['seconds']} s of a {results['budget_s']:.0f} s budget.",
            device_markdown(results),
            tests_markdown(results),
            encoder_markdown(results),
            long_markdown(results),
            generation_markdown(results),
            keras_hub_markdown(results),
            translator_markdown(results),
            statuses,
        ]
    )


def plot(results, path):
    """Encoder and generation tokens/s, long-sequence time and memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    _bars(
        axes[0],
        _part(results, "encoder").get("rows", []),
        lambda r: f"{r['batch']}×{r['seq_length']}\n{r['mode']}",
        "encoder block, mixed_bfloat16",
    )
    _bars(
        axes[1],
        _part(results, "generation").get("rows", []),
        lambda r: f"batch {r['batch']}",
        "cached generation",
    )
    ax = axes[2]
    for name, style in (("long_fused", "o-"), ("long_explicit", "s--")):
        rows = [
            r
            for r in _part(results, name).get("rows", [])
            if r.get("status") == "ok"
        ]
        if rows:
            ax.plot(
                [r["seq_length"] for r in rows],
                [r["seconds"] for r in rows],
                style,
                label=f"{name[5:]} time (s)",
            )
            ax.plot(
                [r["seq_length"] for r in rows],
                [r["peak_memory_bytes"] / _GIB for r in rows],
                style,
                alpha=0.5,
                label=f"{name[5:]} peak memory (GiB)",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length")
    ax.set_title("self-attention forward + backward")
    if ax.lines:
        ax.legend(fontsize=8)
    fig.suptitle(
        f"GPU check {results['date']}"
        + (" (smoke: numbers mean nothing)" if results["smoke"] else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _bars(ax, rows, group_of, title):
    """Grouped bars of tokens/s, one bar per impl within each group."""
    rows = [r for r in rows if r.get("status") == "ok"]
    groups = list(dict.fromkeys(group_of(r) for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    width = 0.8 / max(len(impls), 1)
    for i, impl in enumerate(impls):
        values = {
            group_of(r): r["tokens_per_second"]
            for r in rows
            if r["impl"] == impl
        }
        ax.bar(
            [g + i * width for g in range(len(groups))],
            [values.get(group, 0) for group in groups],
            width,
            label=impl,
        )
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel("tokens/s")
    ax.set_title(title)
    if impls:
        ax.legend(fontsize=8)
