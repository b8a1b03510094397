"""The doctor's advice as sentences: the engine sends three bare phrases (advice, reason, an
optional suggested flag), the window shows them punctuated, the flag only when it adds something."""

from __future__ import annotations

import html


def _sentence(text: str) -> str:
    """``text`` starting with a capital and ending with a full stop (unless it ends with one)."""
    text = text.strip()
    if not text:
        return ""
    if text[0].islower() and not text.startswith("--"):
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _suggestion(advice: str, suggested: str | None) -> str | None:
    """The flag to set, unless there is none (off-heap advice) or the advice already names it."""
    suggested = (suggested or "").strip()
    return suggested if suggested and suggested not in advice else None


def advice_plain(advice: str, reason: str, suggested: str | None) -> str:
    """One line for the message bar: "Set --max-old-space-size=150 explicitly. No ... grows."."""
    parts = [_sentence(advice), _sentence(reason)]
    flag = _suggestion(advice, suggested)
    if flag is not None:
        parts.append(f"Suggested: {flag}")
    return " ".join(p for p in parts if p)


def advice_html(advice: str, reason: str, suggested: str | None) -> str:
    """The same for the detail pane: the advice in bold, the flag as code."""
    text = f"<b>Doctor: {html.escape(_sentence(advice))}</b> {html.escape(_sentence(reason))}"
    flag = _suggestion(advice, suggested)
    if flag is not None:
        text += f" Suggested: <code>{html.escape(flag)}</code>"
    return text
