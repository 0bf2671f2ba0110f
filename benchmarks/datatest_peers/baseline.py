"""The hand-written baseline: every number of the suite from one DuckDB SELECT; no mlci code.

    python baseline.py profile REF.parquet SUITE.json PROFILE.json   # reference bins (untimed)
    python baseline.py run SUITE.json PROFILE.json OUT.json          # the measured run

SUITE.json is the `data_tests` dataset entry that datatest.py also writes as mlci.yaml. Drift:
PSI over the reference's decile bins (right-closed, ends open), fractions floored at 1e-4; KS is
the largest |F_ref(edge) - F_cur(edge)| over the decile edges; categorical PSI over the reference's
categories plus "other". Nulls are left out of every check but not_null/missing_ratio.
"""
from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import duckdb

FLOOR = 1e-4
DRIFT_DEFAULTS = {"psi": (0.1, 0.25), "ks": (0.1, 0.2)}


def _q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: Any) -> str:
    """A SQL literal for a string or number."""
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def _checks(suite: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(column, check, params) for every check of the suite; column '' for dataset-level ones."""
    items = [("", c) for c in suite.get("checks", [])]
    items += [(col, c) for col, checks in suite.get("columns", {}).items() for c in checks]
    out = []
    for col, check in items:
        name, params = (check, {}) if isinstance(check, str) else next(iter(check.items()))
        out.append((col, name, dict(params or {})))
    return out


def _bins(column: str, edges: list[float]) -> list[str]:
    """count_if expressions for the right-closed decile bins, ends open."""
    c = _q(column)
    first, last = f"count_if({c} <= {edges[0]!r})", f"count_if({c} > {edges[-1]!r})"
    inner = [f"count_if({c} > {lo!r} AND {c} <= {hi!r})" for lo, hi in itertools.pairwise(edges)]
    return [first, *inner, last]


def _drift_exprs(column: str, prof: dict[str, Any]) -> list[str]:
    """Counts per reference bin or category ("other" last) over the non-null values."""
    if "edges" in prof:
        return _bins(column, prof["edges"])
    cats = [f"count_if({_q(column)} = {_lit(v)})" for v in prof["categories"]]
    return [*cats, f"count_if({_q(column)} NOT IN ({', '.join(map(_lit, prof['categories']))}))"]


def profile(ref: str, suite: dict[str, Any], shared: dict[str, Any] | None = None) -> dict[str, Any]:
    """Reference bins for every drifted column: decile edges and shares, or category shares.

    With `shared` (an mlci reference profile), its bin edges and categories are used, so both tools
    measure drift against the same bins; the shares are still counted here."""
    con = duckdb.connect()
    out: dict[str, Any] = {}
    prof: dict[str, Any]
    for col, name, _ in _checks(suite):
        if name != "drift":
            continue
        kind = con.execute(f"SELECT typeof({_q(col)}) FROM read_parquet(?) LIMIT 1", [ref]).fetchone()[0]
        given = (shared or {}).get("columns", {}).get(col)
        if given and given["kind"] == "numeric":
            prof = {"edges": [float(e) for e in given["edges"]]}
        elif given:
            prof = {"categories": sorted(given["categories"])}
        elif kind in ("VARCHAR", "BOOLEAN"):
            query = f"SELECT DISTINCT {_q(col)} FROM read_parquet(?) WHERE {_q(col)} IS NOT NULL ORDER BY 1"
            cats = [r[0] for r in con.execute(query, [ref]).fetchall()]
            prof = {"categories": cats}
        else:
            query = f"SELECT quantile_cont({_q(col)}, [0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]) FROM read_parquet(?)"
            qs = con.execute(query, [ref]).fetchone()[0]
            prof = {"edges": [float(e) for e in qs]}
        query = f"SELECT count({_q(col)}), {', '.join(_drift_exprs(col, prof))} FROM read_parquet(?)"
        row = con.execute(query, [ref]).fetchone()
        prof["shares"] = [n / row[0] for n in row[1:]]
        out[col] = prof
    return out


def _exprs(col: str, name: str, p: dict[str, Any], prof: dict[str, Any]) -> list[str]:
    """The aggregate expressions one check needs."""
    c = _q(col) if col else ""
    if name == "row_count":
        return ["count(*)"]
    if name == "unique":
        cols = p["columns"]
        key = _q(cols[0]) if len(cols) == 1 else f"row({', '.join(map(_q, cols))})"
        return [f"count({key})" if len(cols) == 1 else "count(*)", f"count(DISTINCT {key})"]
    if name in ("not_null", "missing_ratio"):
        return ["count(*)", f"count({c})"]
    if name == "between":
        return [f"count_if({c} < {p['min']!r} OR {c} > {p['max']!r})", f"count({c})", f"min({c})", f"max({c})"]
    if name == "mean":
        return [f"avg({c})"]
    if name == "stddev":
        return [f"stddev_samp({c})", f"stddev_pop({c})"]
    if name == "quantile":
        return [f"quantile_cont({c}, {p['q']!r})"]
    if name == "allowed_values":
        return [f"count_if({c} NOT IN ({', '.join(map(_lit, p['values']))}))", f"count({c})"]
    if name == "regex":
        return [f"count_if(NOT regexp_full_match({c}, {_lit(p['pattern'])}))", f"count({c})"]
    if name == "drift":
        return [f"count({c})", *_drift_exprs(col, prof[col])]
    raise SystemExit(f"baseline: unknown check {name}")


def _psi(cur: list[float], ref: list[float]) -> float:
    """PSI with both shares floored at 1e-4."""
    floored = ((max(a, FLOOR), max(e, FLOOR)) for a, e in zip(cur, ref, strict=True))
    return sum((a - e) * math.log(a / e) for a, e in floored)


def _observe(name: str, p: dict[str, Any], v: list[Any], prof: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """(primary observed value, aliases a tool might report instead) from the check's aggregates."""
    if name == "row_count":
        return v[0], {"rows": v[0], "row_count": v[0], "count": v[0]}
    if name == "unique":
        d = v[0] - v[1]
        return d, {"duplicates": d, "duplicate_count": d, "duplicate_rows": d, "distinct": v[1]}
    if name in ("not_null", "missing_ratio"):
        nulls, ratio = v[0] - v[1], (v[0] - v[1]) / v[0] if v[0] else 0.0
        al = {"nulls": nulls, "null_count": nulls, "missing": nulls, "missing_count": nulls,
              "null_ratio": ratio, "missing_ratio": ratio, "ratio": ratio}
        return (nulls if name == "not_null" else ratio), al
    if name in ("between", "allowed_values", "regex"):
        bad, ratio = v[0], v[0] / v[1] if v[1] else 0.0
        al = {"invalid": bad, "invalid_count": bad, "failed": bad, "unexpected": bad, "out_of_range": bad,
              "not_allowed": bad, "not_matching": bad,
              "invalid_ratio": ratio, "failed_ratio": ratio, "unexpected_ratio": ratio, "ratio": ratio}
        return bad, al | ({"min": v[2], "max": v[3]} if name == "between" else {})
    if name in ("mean", "quantile"):
        return v[0], {name: v[0], "value": v[0]}
    if name == "stddev":
        return v[0], {"stddev": v[0], "stddev_samp": v[0], "stddev_pop": v[1], "value": v[0]}
    n, counts = v[0], v[1:]
    cur = [k / n if n else 0.0 for k in counts]
    if p.get("method", "psi") == "ks":
        fc = fr = ks = 0.0
        for a, e in zip(cur[:-1], prof["shares"][:-1], strict=False):
            fc, fr = fc + a, fr + e
            ks = max(ks, abs(fr - fc))
        return ks, {"ks": ks, "statistic": ks, "value": ks}
    psi = _psi(cur, prof["shares"])
    return psi, {"psi": psi, "statistic": psi, "value": psi}


def _status(name: str, p: dict[str, Any], value: float) -> str:
    """pass, warn or fail by the check's thresholds; `severity: warn` turns a fail into a warn."""
    if name == "drift":
        warn, fail = DRIFT_DEFAULTS[p.get("method", "psi")]
        warn, fail = p.get("warn", warn), p.get("fail", fail)
        status = "fail" if value >= fail else "warn" if value >= warn else "pass"
    elif name in ("row_count", "mean", "quantile", "stddev", "missing_ratio"):
        ok = p.get("min", -math.inf) <= value <= p.get("max", math.inf)
        status = "pass" if ok else "fail"
    else:
        status = "pass" if value == 0 else "fail"
    return "warn" if status == "fail" and p.get("severity") == "warn" else status


def run(suite: dict[str, Any], prof: dict[str, Any]) -> list[dict[str, Any]]:
    """Evaluate the suite with one SELECT over the Parquet file."""
    checks = _checks(suite)
    exprs = [_exprs(col, name, p, prof) for col, name, p in checks]
    sql = f"SELECT {', '.join(e for group in exprs for e in group)} FROM read_parquet({_lit(suite['path'])})"
    row = list(duckdb.connect().execute(sql).fetchone())
    results = []
    for (col, name, p), group in zip(checks, exprs, strict=False):
        values, row = row[:len(group)], row[len(group):]
        primary, aliases = _observe(name, p, values, prof.get(col, {}))
        results.append({"dataset": suite["name"], "column": col or None, "check": name,
                        "status": _status(name, p, primary), "observed": primary, "aliases": aliases})
    return results


def main() -> None:
    """Dispatch `profile` or `run`."""
    if sys.argv[1] == "profile":
        suite = json.loads(Path(sys.argv[3]).read_text())
        shared = json.loads(Path(sys.argv[5]).read_text()) if len(sys.argv) > 5 else None
        Path(sys.argv[4]).write_text(json.dumps(profile(sys.argv[2], suite, shared), indent=1))
    else:
        suite, prof = json.loads(Path(sys.argv[2]).read_text()), json.loads(Path(sys.argv[3]).read_text())
        results = run(suite, prof)
        Path(sys.argv[4]).write_text(json.dumps({"results": results}, indent=1, default=float))
        print(f"baseline: {len(results)} checks, " + ", ".join(
            f"{s} {sum(r['status'] == s for r in results)}" for s in ("pass", "warn", "fail")))


if __name__ == "__main__":
    main()
