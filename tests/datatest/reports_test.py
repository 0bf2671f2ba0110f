"""The reports as files other tools parse: JUnit stays XML 1.0 and the text reports stay one line per check."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from mlci.datatest import reports
from mlci.datatest.run import Result

CONTROL = "".join(chr(c) for c in range(32)) + "\x7f\x85\ufffe"


def _result(name: str, observed: object, status: str = "fail") -> Result:
    return Result("d" + CONTROL, None, "not_null", name, "fail", status, observed, "no NULL", "mlci.yaml:3")


def test_junit_escapes_every_character_xml_1_0_forbids() -> None:
    results = [_result("name" + CONTROL, {"missing_column": "col" + CONTROL}),
               _result("warned" + CONTROL, {"x": 1}, status="warn")]
    text = reports.junit(results)
    root = ET.fromstring(text.encode("utf-8"))  # raises on a character XML 1.0 does not allow
    case = root.find(".//testcase")
    assert case is not None and case.get("name") == "name" + reports.printable(CONTROL)
    assert case.get("name", "").startswith("name\\x00\\x01") and "\\x1f\\x7f\\x85\\ufffe" in case.get("name", "")
    failure = case.find("failure")
    assert failure is not None and "col\\x00" in (failure.get("message") or "")
    assert all(ch not in text for ch in CONTROL if ch != "\n")


def test_console_and_markdown_keep_one_line_per_check() -> None:
    results = [_result("a\nb|c\x1b[31m", {"x": 1})]
    assert len(reports.console(results).splitlines()) == 3  # header, the check, totals
    assert "\x1b" not in reports.console(results) and "a\\x0ab" in reports.console(results)
    row = reports.markdown(results).splitlines()[-1]
    assert row.startswith("| ❌ |") and "a\\x0ab\\|c\\x1b[31m" in row


def test_json_keeps_names_and_numbers_as_they_are() -> None:
    results = [_result("a\x01", {"psi": 0.12345678901234567, "ratio": 1 / 3})]
    data = json.loads(reports.as_json(results))["results"][0]
    assert data["name"] == "a\x01" and data["observed"] == {"psi": 0.12345678901234567, "ratio": 1 / 3}
