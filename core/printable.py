"""Text from elsewhere made safe to print on a terminal.

A process may name itself ``\\x1b[2J\\x1b[31mEVIL``, a kernel log line may carry such a name, a
session file's columns may hold anything: printed raw, the escapes act on the reader's terminal
(clear it, recolour it, retitle the window, in some terminals worse). Human output passes such
text through :func:`printable`; JSON output needs nothing (``json.dumps`` escapes control
characters).
"""

from __future__ import annotations

import re
from typing import Final

# C0 controls but tab, DEL, C1 controls (0x80-0x9f: CSI 0x9b acts like ESC [ in many
# terminals), and the Unicode line/paragraph separators and bidirectional overrides that
# reorder what is shown.
_UNSAFE: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``-as-``\\x0a``,
    ``\\u202e``) instead of acting on the terminal; tab and printable text unchanged. A
    backslash is left as it is: the output is for eyes, not for parsing back."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)
