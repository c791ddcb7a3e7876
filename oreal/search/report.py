"""The files a search leaves behind: ``results.json``, ``report.md``, ``accuracy_vs_budget.png``.

Written atomically like ``oreal eval``'s. The report puts the sampling and search settings next to
every table, then accuracy by method and budget, then what it cost: generated tokens, generated
sequences and scored sequences per problem, and search wall time (generation, scoring and
selection; verification for the report is not included).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from oreal.atomic import atomic_write_text

__all__ = ["plot_accuracy_vs_budget", "render_search_report", "write_search_outputs"]

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOT_FILE = "accuracy_vs_budget.png"


def write_search_outputs(out_dir: Path, document: dict[str, Any]) -> None:
    """results.json, report.md and the accuracy-vs-budget plot of a ``run_search`` document."""
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(out_dir / RESULTS_FILE, text)
    atomic_write_text(out_dir / REPORT_FILE, render_search_report(document))
    plot_accuracy_vs_budget(document, out_dir / PLOT_FILE)


def _budgets(runs: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({b for budgets in runs.values() for b in budgets}, key=int)


def settings_line(document: dict[str, Any]) -> str:
    s = document.get("settings", {})
    parts = [
        f"scorer={document.get('scorer')} ({document.get('scorer_kind')})",
        f"aggregation={s.get('aggregation')}",
        f"temperature={s.get('temperature')}",
        f"top_p={s.get('top_p')}",
        f"max_new_tokens={s.get('max_new_tokens')}",
        f"step cap={s.get('max_steps')}",
        f"tau={s.get('tau')}",
        f"resampling={s.get('resampling')}",
        f"beam width={s.get('beam_width')}",
        f"Gibbs sweeps={s.get('sweeps')}",
        f"seed={s.get('seed')}",
        f"template={s.get('template')}",
        f"verifier mode={s.get('mode')}",
    ]
    if s.get("limit") is not None:
        parts.append(f"first {s['limit']} problems in file order")
    return ", ".join(parts)


def render_search_report(document: dict[str, Any]) -> str:
    """Markdown: settings, then per benchmark an accuracy table and a compute table."""
    lines = [
        f"# Search with `{document['model']}`",
        "",
        f"Model path: `{document['model_path']}`. Started {document.get('started_at')}, "
        f"wall time {document.get('wall_time_s', 0):.0f} s. Accuracy is pass@1 of the returned "
        "solution (strict verifier unless stated), in %.",
        "",
        settings_line(document),
        "",
        "Budget N: N samples (majority, best_of_n, weighted_majority), N particles "
        "(particle_filtering), N continuations per step (beam_search, dvts), N / sweeps particles "
        "per sweep (particle_gibbs). The sampling methods share one pool of samples: budget N "
        "uses its first N and is charged only for them.",
        "",
    ]
    for name, runs in document["benchmarks"].items():
        budgets = _budgets(runs)
        problems = next(
            (e["num_problems"] for r in runs.values() for e in r.values() if "num_problems" in e),
            0,
        )
        lines += [f"## {name} ({problems} problems)", "", "**Accuracy (%)**", ""]
        lines.append("| method | " + " | ".join(f"N={b}" for b in budgets) + " |")
        lines.append("|---|" + "---|" * len(budgets))
        for method, entries in runs.items():
            cells = [_accuracy_cell(entries.get(b)) for b in budgets]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "**Compute** (per problem, except the total wall time)",
            "",
            "| method | N | generated tokens | generated sequences | scored sequences | "
            "search steps | wall time (s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, entries in runs.items():
            for budget in budgets:
                entry = entries.get(budget)
                if not entry or "compute" not in entry:
                    continue
                c = entry["compute"]
                lines.append(
                    f"| {method} | {budget} | {c['generated_tokens_per_problem']:.0f} | "
                    f"{c['generated_sequences_per_problem']:.1f} | "
                    f"{c['scored_sequences_per_problem']:.1f} | {c['steps_per_problem']:.1f} | "
                    f"{c['wall_s']:.1f} |"
                )
        skipped = [
            f"{method} N={budget}: {entry['skipped']}"
            for method, entries in runs.items()
            for budget, entry in entries.items()
            if "skipped" in entry
        ]
        if skipped:
            lines += ["", "Not run: " + "; ".join(skipped) + "."]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _accuracy_cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    if "skipped" in entry:
        return "n/a"
    return f"{100 * entry['accuracy']:.1f}"


def plot_accuracy_vs_budget(document: dict[str, Any], path: Path) -> None:
    """Per benchmark: accuracy against budget N and against generated tokens, one line a method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(document["benchmarks"])
    figure, axes = plt.subplots(len(names), 2, figsize=(11, 4 * len(names)), dpi=100, squeeze=False)
    try:
        for row, name in enumerate(names):
            by_budget, by_tokens = axes[row]
            all_budgets: set[int] = set()
            for method, entries in document["benchmarks"][name].items():
                points = sorted(
                    (int(b), e) for b, e in entries.items() if "accuracy" in e and "compute" in e
                )
                if not points:
                    continue
                budgets = [b for b, _ in points]
                accuracy = [100 * e["accuracy"] for _, e in points]
                tokens = [max(1.0, e["compute"]["generated_tokens_per_problem"]) for _, e in points]
                all_budgets.update(budgets)
                by_budget.plot(budgets, accuracy, marker="o", label=method)
                by_tokens.plot(tokens, accuracy, marker="o", label=method)
            by_budget.set_xscale("log", base=2)
            if all_budgets:
                ticks = sorted(all_budgets)
                by_budget.set_xticks(ticks, [str(t) for t in ticks])
            by_budget.set_xlabel("budget N (full-solution equivalents)")
            by_tokens.set_xscale("log")
            by_tokens.set_xlabel("generated tokens per problem")
            for axis in (by_budget, by_tokens):
                axis.set_ylabel("accuracy (%)")
                axis.set_ylim(-2, 102)
                axis.grid(True, alpha=0.3)
            by_budget.set_title(f"{name}: {Path(document['model']).name}", fontsize=9)
            by_tokens.set_title(
                f"scorer {document.get('scorer_kind')}, "
                f"aggregation {document.get('settings', {}).get('aggregation')}",
                fontsize=9,
            )
            by_budget.legend(fontsize=8)
        figure.tight_layout()
        tmp = path.with_name(path.stem + ".tmp.png")
        figure.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
