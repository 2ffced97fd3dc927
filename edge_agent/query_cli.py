"""`edgets query`: run InfluxQL or SQL against an edgets (or InfluxDB) server and print the result.

Prints a table, CSV or JSON; exits non-zero with the server's error text when a query fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="The InfluxQL (default) or SQL (--sql) query text.")
    parser.add_argument("--url", default="http://127.0.0.1:8086", help="Server URL (default %(default)s).")
    parser.add_argument("--db", default="edge", help="Database (default %(default)s).")
    parser.add_argument("--rp", default="", help="Retention policy of sources that name none (default: the database's default).")
    parser.add_argument("--sql", action="store_true", help="The query is SQL (/api/v3/query_sql).")
    parser.add_argument("--format", choices=["table", "csv", "json"], default="table", help="Output format.")
    parser.add_argument("--token", default="", help="API token (Authorization: Token ...).")
    parser.add_argument("--epoch", default="", help="InfluxQL time format: ns, u, ms, s (default RFC3339).")


def _request(url: str, data: bytes | None, token: str, content_type: str) -> Any:
    headers = {"Content-Type": content_type} if data is not None else {}
    if token:
        headers["Authorization"] = f"Token {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        try:
            message = json.loads(body).get("error") or json.loads(body).get("message") or body
        except (ValueError, AttributeError):
            message = body
        raise SystemExit(f"edgets query: server answered {err.code}: {message}") from err
    except urllib.error.URLError as err:
        raise SystemExit(f"edgets query: cannot reach {url}: {err.reason}") from err


def tables_from_influxql(results: list[dict]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, columns, rows) per series; statement errors raise SystemExit."""
    out = []
    for result in results:
        if "error" in result:
            raise SystemExit(f"edgets query: statement {result.get('statement_id')}: {result['error']}")
        for series in result.get("series", []):
            tags = ",".join(f"{k}={v}" for k, v in sorted(series.get("tags", {}).items()))
            title = series.get("name", "") + (f" [{tags}]" if tags else "")
            out.append((title, series["columns"], series.get("values", [])))
    return out


def print_table(title: str, columns: list[str], rows: list[list[Any]], out: TextIO) -> None:
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    if title:
        out.write(f"{title}\n")
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write("\n")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    base = args.url.rstrip("/")
    if args.sql:
        request = {"db": args.db, "q": args.query, "format": "json", **({"rp": args.rp} if args.rp else {})}
        body = json.dumps(request).encode()
        rows = _request(f"{base}/api/v3/query_sql", body, args.token, "application/json") or []
        columns = list(rows[0].keys()) if rows else []
        tables = [("", columns, [[r.get(c) for c in columns] for r in rows])]
        raw: Any = rows
    else:
        params = {"db": args.db, "q": args.query}
        if args.rp:
            params["rp"] = args.rp
        if args.epoch:
            params["epoch"] = args.epoch
        raw = _request(f"{base}/query", urllib.parse.urlencode(params).encode(), args.token,
                       "application/x-www-form-urlencoded")
        tables = tables_from_influxql(raw.get("results", []))
    if args.format == "json":
        json.dump(raw, out, indent=2)
        out.write("\n")
    elif args.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        for title, columns, rows in tables:
            writer.writerow(["series", *columns])
            writer.writerows([[title, *row] for row in rows])
    else:
        for title, columns, rows in tables:
            print_table(title, columns, rows, out)
    return 0
