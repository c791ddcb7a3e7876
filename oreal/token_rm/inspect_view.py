"""Render a run's logged rollouts with each token coloured by its token-RM weight.

Reads ``RUN_DIR/samples.jsonl`` (written by the trainer, ``train.samples_per_step`` per step).
With OREAL's token-level reward model each trained sample carries ``tokens`` (the decoded
response tokens), ``token_weights`` (w+ on a correct response, w- on a wrong one: what
multiplied that token's term in the policy loss) and ``token_q`` (the RM's q_t). Colours:
green for credited tokens of correct responses, red for blamed tokens of wrong ones, the
intensity proportional to the weight; uncoloured tokens have weight 0. Runs without a token
RM render uncoloured (every token has weight 1 there).

Two outputs: a rich terminal view and a self-contained HTML page (inline CSS, no script, no
network; every piece of model text goes through :func:`html.escape`).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.style import Style
from rich.text import Text

from oreal.errors import UserError

__all__ = [
    "InspectError",
    "StepSamples",
    "load_step",
    "render_html",
    "render_terminal",
]

GREEN = (22, 163, 74)
RED = (220, 38, 38)
NO_RM_NOTE = (
    "This run has no token-level reward model: every token has weight 1 in the loss, "
    "so nothing is coloured."
)
LEGEND = (
    "green: tokens credited on a correct response (w+), red: tokens blamed on a wrong one "
    "(w-); the stronger the colour, the larger the weight; uncoloured: weight 0"
)
PROMPT_TAIL = 300


class InspectError(UserError):
    """A run directory or step that cannot be inspected (the CLI exits with code 2)."""


@dataclass
class StepSamples:
    """The logged samples of one step, and which steps the run logged."""

    run_dir: Path
    step: int
    samples: list[dict[str, Any]]
    logged_steps: list[int]
    has_token_rm: bool


def load_step(run_dir: Path, step: int | None = None, limit: int | None = None) -> StepSamples:
    """The samples of ``step`` (default: the last logged step), at most ``limit`` of them."""
    path = Path(run_dir) / "samples.jsonl"
    if not path.is_file():
        raise InspectError(
            f"{run_dir} has no samples.jsonl: not a run directory, or a run with "
            "train.samples_per_step=0"
        )
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    if not records:
        raise InspectError(f"{path} is empty: no step has been logged yet")
    steps = sorted({int(record["step"]) for record in records})
    chosen = steps[-1] if step is None else step
    if chosen not in steps:
        shown = ", ".join(map(str, steps[:20])) + (" ..." if len(steps) > 20 else "")
        raise InspectError(f"step {step} was not logged in {run_dir}; logged steps: {shown}")
    samples = [record for record in records if int(record["step"]) == chosen]
    if limit is not None:
        samples = samples[:limit]
    has_rm = any("token_weights" in record for record in records)
    return StepSamples(Path(run_dir), chosen, samples, steps, has_rm)


def _is_correct(sample: dict[str, Any]) -> bool:
    if "positive" in sample:
        return bool(sample["positive"])
    return float(sample.get("reward", 0.0)) > 0.5


def _colour(sample: dict[str, Any]) -> tuple[int, int, int]:
    return GREEN if _is_correct(sample) else RED


def _header(index: int, sample: dict[str, Any]) -> str:
    verdict = "correct" if _is_correct(sample) else "wrong"
    parts = [f"sample {index}", f"{verdict} (reward {float(sample.get('reward', 0.0)):g})"]
    if "advantage" in sample:
        parts.append(f"advantage {float(sample['advantage']):+.3f}")
    parts.append("trained" if sample.get("kept") else "not trained (filtered out)")
    if sample.get("truncated"):
        parts.append("truncated")
    if sample.get("extracted") is not None:
        parts.append(f"answer {sample['extracted']!r}")
    return " | ".join(parts)


def _weight_summary(sample: dict[str, Any]) -> str | None:
    weights = sample.get("token_weights")
    if not weights:
        return None
    kind = "w+" if _is_correct(sample) else "w-"
    nonzero = sum(w > 0 for w in weights) / len(weights)
    text = f"{kind}: mean {sum(weights) / len(weights):.3f}, non-zero on {nonzero:.0%} of tokens"
    q = sample.get("token_q")
    if q:
        text += f"; q at the last token {q[-1]:.3f}"
    return text


def _sample_note(sample: dict[str, Any], has_rm: bool) -> str | None:
    if not has_rm or "token_weights" in sample:
        return None
    if not sample.get("kept"):
        return "not trained on at this step, so it has no token weights"
    return "no token weights were logged for this sample"


# ------------------------------------------------------------------------------ terminal
def _blend(rgb: tuple[int, int, int], weight: float) -> str:
    """``rgb`` at opacity ``weight`` over white, as a hex colour (black text stays readable)."""
    w = min(max(weight, 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * w) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _response_text(sample: dict[str, Any]) -> Text:
    tokens = sample.get("tokens")
    weights = sample.get("token_weights")
    if not tokens:
        return Text(str(sample.get("response", "")))
    text = Text()
    rgb = _colour(sample)
    for i, token in enumerate(tokens):
        weight = float(weights[i]) if weights and i < len(weights) else 0.0
        if weight > 0:
            shown = token.replace("\n", "↵\n")
            text.append(shown, Style(color="black", bgcolor=_blend(rgb, weight)))
        else:
            text.append(token)
    return text


def render_terminal(view: StepSamples, console: Console) -> None:
    """Print the step's samples to ``console`` (rich), one panel per sample."""
    console.print(
        f"[bold]{view.run_dir}[/bold]  step {view.step}  ({len(view.samples)} samples; "
        f"logged steps {view.logged_steps[0]}..{view.logged_steps[-1]})"
    )
    console.print(LEGEND if view.has_token_rm else NO_RM_NOTE, style="dim")
    for index, sample in enumerate(view.samples, start=1):
        prompt = str(sample.get("prompt", ""))
        if len(prompt) > PROMPT_TAIL:
            prompt = "..." + prompt[-PROMPT_TAIL:]
        parts: list[Text] = [Text(prompt, style="dim")]
        for line in (_weight_summary(sample), _sample_note(sample, view.has_token_rm)):
            if line:
                parts.append(Text(line, style="italic"))
        parts.append(_response_text(sample))
        border = "green" if _is_correct(sample) else "red"
        console.print(Panel(Group(*parts), title=_header(index, sample), border_style=border))


# ------------------------------------------------------------------------------ HTML
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #111; }
h1 { font-size: 1.3em; } h2 { font-size: 1em; margin: 0 0 .5em 0; }
.note { color: #555; font-style: italic; }
.sample { border: 1px solid #ccc; border-left: 6px solid #999; padding: .8em 1em;
          margin: 1em 0; border-radius: 4px; }
.sample.correct { border-left-color: rgb(22, 163, 74); }
.sample.wrong { border-left-color: rgb(220, 38, 38); }
pre { white-space: pre-wrap; word-break: break-word; font-size: .95em; margin: .4em 0; }
pre.prompt { color: #666; }
.response span { border-radius: 2px; }
""".strip()


def _html_tokens(sample: dict[str, Any]) -> str:
    tokens = sample.get("tokens")
    weights = sample.get("token_weights")
    q = sample.get("token_q")
    if not tokens:
        return html.escape(str(sample.get("response", "")))
    r, g, b = _colour(sample)
    pieces = []
    for i, token in enumerate(tokens):
        escaped = html.escape(token)
        if not weights or i >= len(weights):
            pieces.append(escaped)
            continue
        weight = float(weights[i])
        tip = f"w={weight:.3f}" + (f" q={float(q[i]):.3f}" if q and i < len(q) else "")
        style = f"background: rgba({r}, {g}, {b}, {weight:.3f})" if weight > 0 else ""
        pieces.append(f'<span style="{style}" title="{html.escape(tip)}">{escaped}</span>')
    return "".join(pieces)


def render_html(view: StepSamples) -> str:
    """A self-contained HTML page of the step's samples (inline CSS, no script)."""
    title = f"oreal inspect: {view.run_dir.name} step {view.step}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{html.escape(LEGEND if view.has_token_rm else NO_RM_NOTE)}</p>',
        f'<p class="note">logged steps: {html.escape(", ".join(map(str, view.logged_steps)))}</p>',
    ]
    for index, sample in enumerate(view.samples, start=1):
        kind = "correct" if _is_correct(sample) else "wrong"
        body.append(f'<section class="sample {kind}">')
        body.append(f"<h2>{html.escape(_header(index, sample))}</h2>")
        body.append(f'<pre class="prompt">{html.escape(str(sample.get("prompt", "")))}</pre>')
        for line in (_weight_summary(sample), _sample_note(sample, view.has_token_rm)):
            if line:
                body.append(f'<p class="note">{html.escape(line)}</p>')
        body.append(f'<pre class="response">{_html_tokens(sample)}</pre>')
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
