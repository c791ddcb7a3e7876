"""The files an evaluation leaves behind: ``results.json``, ``report.md`` and ``pass_at_k.png``.

Each is written to a temporary sibling and renamed into place, so a reader (or a crash) never
sees half a file. The markdown states n, temperature, top_p and max tokens next to every table,
because a pass@1 without its sampling settings cannot be compared with anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from oreal.atomic import atomic_write_json, atomic_write_text

__all__ = ["plot_pass_at_k", "render_report", "write_outputs"]

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOT_FILE = "pass_at_k.png"


def write_outputs(out_dir: Path, document: dict[str, Any]) -> None:
    """Write results.json, report.md and the pass@k plot for a ``run_evaluation`` document."""
    atomic_write_json(out_dir / RESULTS_FILE, document)
    atomic_write_text(out_dir / REPORT_FILE, render_report(document))
    plot_pass_at_k(document, out_dir / PLOT_FILE)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ks(mapping: dict[Any, Any]) -> list[str]:
    return sorted(mapping, key=int)


def _settings_line(entry: dict[str, Any], settings: dict[str, Any]) -> str:
    sampling = entry.get("sampling", {})
    parts = [
        f"n={entry['n']}",
        f"temperature={sampling.get('temperature')}",
        f"top_p={sampling.get('top_p')}",
        f"max_new_tokens={sampling.get('max_new_tokens')}",
        f"seed={sampling.get('seed')}",
        f"template={entry.get('template')}",
        f"verifier mode={settings.get('mode')}",
        f"{entry['num_problems']} problems",
    ]
    if settings.get("limit") is not None:
        parts.append(f"first {settings['limit']} in file order")
    return ", ".join(parts)


def _breakdown_table(title: str, rows: dict[str, dict[str, Any]], ks: list[str]) -> list[str]:
    lines = [f"**By {title}**", ""]
    header = [title, "problems", *[f"pass@{k}" for k in ks], *[f"maj@{k}" for k in ks if k != "1"]]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for key, row in rows.items():
        cells = [key, str(row["num_problems"])]
        cells += [_pct(row["pass_at_k"].get(k)) for k in ks]
        cells += [_pct(row["maj_at_k"].get(k)) for k in ks if k != "1"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_report(document: dict[str, Any]) -> str:
    """A markdown report: a summary table, then one section per benchmark with breakdowns."""
    settings = document.get("settings", {})
    benchmarks: dict[str, dict[str, Any]] = document["benchmarks"]
    lines = [
        f"# Evaluation of `{document['model']}`",
        "",
        f"Model path: `{document['model_path']}`. Started {document.get('started_at')}, "
        f"wall time {document.get('wall_time_s', 0):.0f} s. Scores in %.",
        "",
        "| benchmark | problems | n | temperature | top_p | max tokens | pass@1 | "
        "mean tokens | truncated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in benchmarks.items():
        sampling = entry.get("sampling", {})
        lines.append(
            f"| {name} | {entry['num_problems']} | {entry['n']} | {sampling.get('temperature')} | "
            f"{sampling.get('top_p')} | {sampling.get('max_new_tokens')} | "
            f"{_pct(entry['accuracy'])} | {entry['mean_response_tokens']:.1f} | "
            f"{_pct(entry['truncation_rate'])} |"
        )
    lines.append("")
    for name, entry in benchmarks.items():
        ks = _ks(entry["pass_at_k"])
        lines += [f"## {name}", "", _settings_line(entry, settings), ""]
        lines += ["| metric | value |", "|---|---|"]
        label = "pass@1 (greedy)" if entry.get("sampling", {}).get("temperature") == 0 else None
        for k in ks:
            name_k = label if (k == "1" and label) else f"pass@{k}"
            lines.append(f"| {name_k} | {_pct(entry['pass_at_k'][k])} |")
        for k in ks:
            if k != "1":
                lines.append(f"| maj@{k} | {_pct(entry['maj_at_k'][k])} |")
        lines += [
            f"| mean response tokens | {entry['mean_response_tokens']:.1f} |",
            f"| truncation rate | {_pct(entry['truncation_rate'])} |",
            f"| no extracted answer | {_pct(entry.get('no_answer_rate'))} |",
            f"| wall time (s) | {entry.get('wall_time_s', 0):.1f} |",
            "",
        ]
        if entry.get("by_subject"):
            lines += _breakdown_table("subject", entry["by_subject"], ks)
        if entry.get("by_level"):
            lines += _breakdown_table("level", entry["by_level"], ks)
    return "\n".join(lines).rstrip() + "\n"


def plot_pass_at_k(document: dict[str, Any], path: Path) -> None:
    """pass@k against k (log2 x axis), one line per benchmark; a lone point when n = 1."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        all_ks: set[int] = set()
        for name, entry in document["benchmarks"].items():
            ks = [int(k) for k in _ks(entry["pass_at_k"])]
            all_ks.update(ks)
            values = [100 * entry["pass_at_k"][str(k)] for k in ks]
            axis.plot(ks, values, marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])
        axis.set_xlabel("k")
        axis.set_ylabel("pass@k (%)")
        axis.set_ylim(-2, 102)  # markers at 0% and 100% stay visible
        axis.grid(True, alpha=0.3)
        settings = document.get("settings", {})
        axis.set_title(
            f"{Path(document['model']).name}: n={settings.get('n')}, "
            f"T={settings.get('temperature')}, top_p={settings.get('top_p')}, "
            f"max tokens={settings.get('max_new_tokens')}",
            fontsize=9,
        )
        axis.legend()
        figure.tight_layout()
        tmp = path.with_name(path.stem + ".tmp.png")
        figure.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(figure)
