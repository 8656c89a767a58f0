"""The `/-/status` page for people: one table, a state colour per token, a live countdown.

Built from the same document as the JSON answer, so the page can never show something the JSON
does not (and neither ever holds a secret). Every value is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

STATE_COLOURS = {
    "valid": "#1a7f37",
    "expiring": "#9a6700",
    "expired": "#cf222e",
    "failed": "#cf222e",
    "none": "#57606a",
}

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #1f2328; }
h1 { margin: 0 0 .2rem; font-size: 1.6rem; }
p.meta { color: #57606a; margin: 0 0 1.2rem; }
table { border-collapse: collapse; min-width: 60rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .45rem .8rem; text-align: left; }
td { vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
.state { font-weight: 600; }
.errors { color: #cf222e; font-size: .9em; }
code { font-size: .9em; }
"""

# Counts the "expires in" cells down between refreshes, from the seconds the server computed.
SCRIPT = """
const started = Date.now();
function tick() {
  const elapsed = (Date.now() - started) / 1000;
  for (const cell of document.querySelectorAll("[data-seconds]")) {
    const left = Math.max(0, Number(cell.dataset.seconds) - elapsed);
    cell.textContent = left > 0 ? human(left) : "expired";
  }
}
function human(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
}
tick(); setInterval(tick, 1000);
"""


def render_status_html(document: Mapping[str, Any]) -> str:
    rows = "".join(_row(name, info) for name, info in document.get("routes", {}).items())
    heads = "".join(
        f"<th>{h}</th>"
        for h in (
            "Route",
            "Upstream",
            "Preset",
            "Token",
            "Expires in",
            "Last login",
            "Logins",
            "Refreshes",
            "Recent errors",
        )
    )
    now = html.escape(str(document.get("now", "")))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="10"><title>authproxy status</title>'
        f"<style>{STYLE}</style></head><body><h1>authproxy</h1>"
        f'<p class="meta">Token state per route, as of {now}. Refreshes every 10 s.</p>'
        f"<table><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>"
        f"<script>{SCRIPT}</script></body></html>"
    )


def _row(name: str, info: Mapping[str, Any]) -> str:
    token: Mapping[str, Any] = info.get("token") or {}
    last: Mapping[str, Any] = token.get("last_login") or {}
    state = str(token.get("state", "none")) if info.get("auth", True) else "no auth"
    colour = STATE_COLOURS.get(state, "#57606a")
    seconds = token.get("expires_in_seconds")
    expires = (
        f'<td data-seconds="{float(seconds)}" title="{_e(token.get("expires_at"))}">'
        f"{_e(round(float(seconds)))}s</td>"
        if seconds is not None
        else "<td>-</td>"
    )
    outcome = last.get("outcome")
    login = f"{_e(outcome)} <small>{_e(last.get('at'))}</small>" if outcome else "-"
    errors = "<br>".join(_e(e) for e in token.get("recent_errors", [])) or "-"
    cells = [
        f"<td><b>{_e(name)}</b><br><code>{_e(info.get('prefix'))}</code></td>",
        f"<td><code>{_e(info.get('upstream'))}</code></td>",
        f"<td>{_e(info.get('preset') or '-')}</td>",
        f'<td class="state" style="color:{colour}">{_e(state)}</td>',
        expires,
        f"<td>{login}</td>",
        f"<td>{_e(token.get('logins', '-'))}</td>",
        f"<td>{_e(token.get('refreshes', '-'))}</td>",
        f'<td class="errors">{errors}</td>',
    ]
    return f"<tr>{''.join(cells)}</tr>"


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))
