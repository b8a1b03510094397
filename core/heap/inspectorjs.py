"""What oomscope says to an inspected node process: the JavaScript it evaluates there, and the
DevTools message pieces that carry it (shared by :mod:`.devtools` and :mod:`.ownport`)."""

from __future__ import annotations

import json
from typing import Any, Final

# getBuiltinModule (node >= 20.16) works in every context; older nodes get ``require`` from the
# command-line API, which is why every evaluate asks for includeCommandLineAPI.
REQUIRE: Final = "(globalThis.process?.getBuiltinModule ?? require)"
THREAD_INFO_JS: Final = (
    f"(() => {{ const r = {REQUIRE}; "
    "return [r('worker_threads').threadId, r('v8').getHeapStatistics().heap_size_limit]; })()"
)
# The watchdog the move installs: stopped before an orderly close.
WATCHDOG: Final = "globalThis[Symbol.for('oomscope.inspector.watchdog')]"
CLOSE_JS: Final = f"(clearInterval({WATCHDOG}), {REQUIRE}('inspector').close())"


def move_js(host: str, owner_pid: int) -> str:
    """Re-open the inspector on a port the kernel picks, and close it by itself once oomscope
    (``owner_pid``) is gone (ESRCH only: EPERM means the PID lives, as another user).

    close() runs inside this evaluate, as CLOSE_JS does: it ends every session, ours included,
    while node dispatches our message. Called from a timer instead, it raced with our client's
    disconnect, and node 20 crashed (SIGSEGV) in 6 of 25 moves on a busy machine; open() then
    waits for a later turn of the event loop, with no session left."""
    return (
        f"(() => {{ const i = {REQUIRE}('inspector'); i.close(); setTimeout(() => {{ "
        f"i.open(0, {json.dumps(host)}); const t = setInterval(() => {{ "
        f"try {{ process.kill({owner_pid}, 0); }} catch (e) {{ if (e.code === 'ESRCH') "
        f"{{ clearInterval(t); i.close(); }} }} }}, 1000); t.unref(); {WATCHDOG} = t; }}, 50); "
        "return true; })()"
    )


def evaluate(expression: str) -> dict[str, Any]:
    return {"expression": expression, "includeCommandLineAPI": True, "returnByValue": True,
            "silent": True}


def thread_info(result: dict[str, Any] | None) -> tuple[int, int] | None:
    value = ((result or {}).get("result") or {}).get("value")
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return int(value[0]), int(value[1])
    return None


def parse(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def error_text(msg: dict[str, Any]) -> str:
    err = msg.get("error")
    return str(err.get("message", err))[:200] if isinstance(err, dict) else str(err)[:200]
