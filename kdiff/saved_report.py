"""``kdiff report REPORT.json -o REPORT.html``: the HTML page of a report saved with --json (by
kdiff, kdiff fix, kdiff train or kdiff attach), as --html would have written it."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from kdiff.cli_arguments import CommandParser, write_output
from kdiff.errors import InputError
from kdiff.preflight import readable_file, writable_file

MAX_REPORT_BYTES = 512 * 2**20


def report_parser() -> CommandParser:
    parser = CommandParser(prog="kdiff report", description="Write the HTML page of a report saved with --json.")
    parser.add_argument("report", metavar="REPORT.json", help="a report written by kdiff ... --json PATH")
    parser.add_argument("-o", "--output", required=True, metavar="PAGE.html", help="where to write the page")
    parser.add_argument("--title", default="", help="the page's title (default: the two backends)")
    return parser


def read_report(path: str) -> dict:
    """The JSON document, when it is one of kdiff's reports; else an InputError saying what it is."""
    file = readable_file(path, "report", "a JSON report written with --json")
    if file.stat().st_size > MAX_REPORT_BYTES:
        raise InputError("report-too-large", f"report {path} is {file.stat().st_size / 2**20:.0f} MiB",
                         "a kdiff report is a few MiB at most: pass the file --json wrote")
    try:
        document = json.loads(file.read_bytes())
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError("report-not-json", f"report {path} is not JSON ({str(exc).splitlines()[0][:200]})",
                         "pass the file that kdiff ... --json PATH wrote") from exc
    if not isinstance(document, dict) or "kdiff_version" not in document or not (
            isinstance(document.get("layers"), list) or isinstance(document.get("steps"), list)):
        raise InputError("report-not-kdiff", f"report {path} is JSON but not a kdiff report",
                         "pass the file that kdiff, kdiff fix, kdiff train or kdiff attach wrote with --json PATH")
    return document


def title_of(document: dict) -> str:
    backends = document.get("backends") if isinstance(document.get("backends"), dict) else {}
    names = [side.get("name") if isinstance(side, dict) else None for side in (backends.get("a"), backends.get("b"))]
    return f"kdiff: {names[0]} against {names[1]}" if all(isinstance(n, str) for n in names) else "kdiff report"


def main(argv: list[str], out: Console) -> int:
    from kdiff.ui.html import render_html

    args = report_parser().parse_args(argv)
    writable_file(args.output, "-o")
    document = read_report(args.report)
    write_output(args.output, render_html(document, args.title or title_of(document)), "-o")
    out.print(f"kdiff: wrote {Path(args.output)}", highlight=False)
    return 0
