"""``--junit FILE.xml``: the Jenkins/Ant JUnit format CI systems render natively; one test case
per worker, a failure for each death or broken budget with the kernel's lines as its text."""

from __future__ import annotations

import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from .summary import Others, WorkerSummary
from .verdict import Failure

# XML 1.0 has no way to carry most control characters: a worker's stderr may hold any byte.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("?", text)


def junit_xml(workers: Sequence[tuple[WorkerSummary, Sequence[Failure]]], started: float, ended: float,
              lines_of: dict[str, list[str]], others: Others | None = None) -> bytes:
    """``lines_of``: each worker's summary lines (by id), as its ``system-out``; ``others``: the
    passing workers added up, one test case for all of them."""
    failed = sum(1 for _, f in workers if f)
    elapsed = f"{max(0.0, ended - started):.3f}"
    aggregate = others is not None and others.workers > 0
    counts = {"tests": str(len(workers) + aggregate), "failures": str(failed), "errors": "0", "time": elapsed}
    root = ET.Element("testsuites", {"name": "oomscope watch", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": "oomscope watch", **counts, "skipped": "0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
        "hostname": socket.gethostname()})
    for w, failures in workers:
        ref = w.ref
        end = w.death.t if w.death is not None else ended
        slot = f"slot{ref.slot}" if ref.slot is not None else "attached"
        case = ET.SubElement(suite, "testcase", {
            "classname": f"oomscope.{slot}",
            "name": _clean(f"{ref.id} {' '.join(ref.cmd) or ref.name}"
                           + (f" (life {ref.life})" if ref.slot is not None and ref.life > 1 else "")),
            "time": f"{max(0.0, end - w.started):.3f}"})
        for f in failures:
            el = ET.SubElement(case, "failure", {"message": _clean(f.message), "type": f.kind})
            el.text = _clean("\n".join((f.message, *f.text)))
        out = ET.SubElement(case, "system-out")
        out.text = _clean("\n".join(lines_of.get(ref.id, [])))
        if w.death is not None and w.death.stderr_tail:
            err = ET.SubElement(case, "system-err")
            err.text = _clean("\n".join(w.death.stderr_tail))
    if others is not None and aggregate:
        case = ET.SubElement(suite, "testcase", {"classname": "oomscope.others", "time": "0.000",
                                                 "name": f"{others.workers} other workers: all passed"})
        ET.SubElement(case, "system-out").text = _clean(others.line())
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
