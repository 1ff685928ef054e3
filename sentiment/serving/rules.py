"""What the service decides about a request and a log line: pure functions, no I/O.

- ``VISIBLE``: the pattern a review must match to be scored at all (the OpenAPI document
  declares it), and ``nothing_to_score``, the same test on the text as the model sees it;
- ``redact``: personal data out of a text before it is logged;
- ``worker_log_path``: one inference-log file per worker, so workers never share a file;
- ``doubling_up_to``, ``decades_up_to``: histogram bounds that end at a limit.
"""

from __future__ import annotations

import re
from pathlib import Path

from sentiment.data.text import clean_text

# One character that is neither whitespace nor invisible: control and format characters
# (zero-width spaces, joiners, direction marks, BOM), soft hyphen, and the characters the
# cleaning (ftfy) deletes. ECMA-262 and Python read it alike.
INVISIBLE = (
    r"\s\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\ufeff\ufff9-\ufffc"
)
VISIBLE = f"[^{INVISIBLE}]"
_VISIBLE = re.compile(VISIBLE)

REDACTIONS = {
    "email": (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    "url": (re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE), "<url>"),
    # 10+ digits (a number with its area code; dates have 8), optionally with +country code
    # and spaces, dots, dashes or brackets between.
    "phone": (re.compile(r"(?<!\w)\+?\d(?:[\s().-]*\d){9,}(?!\w)"), "<phone>"),
}


def nothing_to_score(text: str) -> str | None:
    """Why ``text`` cannot be scored, or None when it can: it must be valid Unicode and
    keep a visible character once cleaned as the model cleans it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate)"
    if not _VISIBLE.search(clean_text(text)):
        return "nothing to score once cleaned (only whitespace, control or invisible characters)"
    return None


def redaction_kinds(setting: str) -> tuple[str, ...]:
    """``SENTIMENT_LOG_REDACT``: ``all`` (default), ``off``, or a comma-separated subset."""
    setting = setting.strip().lower()
    if setting in ("", "all"):
        return tuple(REDACTIONS)
    if setting in ("off", "none", "false", "0"):
        return ()
    kinds = tuple(k.strip() for k in setting.split(","))
    unknown = sorted(set(kinds) - set(REDACTIONS))
    if unknown:
        raise ValueError(
            f"SENTIMENT_LOG_REDACT: unknown {unknown}; use all, off or some of {list(REDACTIONS)}"
        )
    return kinds


def redact(text: str, kinds: tuple[str, ...]) -> str:
    """``text`` with each personal-data match of ``kinds`` replaced by a placeholder."""
    for kind in kinds:
        pattern, placeholder = REDACTIONS[kind]
        text = pattern.sub(placeholder, text)
    return text


def worker_log_path(path: str | Path, worker: int) -> Path:
    """``predictions.jsonl`` -> ``predictions.worker-<n>.jsonl``: each worker its own file
    (rotated on its own), so no two processes write or rotate one file."""
    path = Path(path)
    return path.with_name(f"{path.stem}.worker-{worker}{path.suffix}")


def doubling_up_to(cap: int) -> tuple[int, ...]:
    """Histogram bounds 1, 2, 4, ... below ``cap``, then ``cap`` (texts per model call)."""
    return (*(2**k for k in range(cap.bit_length()) if 2**k < cap), cap)


def decades_up_to(cap: int) -> tuple[int, ...]:
    """Histogram bounds 10, 25, 50, 100, 250, ... below ``cap``, then ``cap`` (lengths)."""
    steps = (int(m * 10**e) for e in range(1, len(str(cap)) + 1) for m in (1, 2.5, 5))
    return (*(b for b in steps if b < cap), cap)
