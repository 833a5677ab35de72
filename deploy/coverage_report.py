"""Print line coverage per Dormant package from the coverage data a ``pytest --cov`` run left behind.

One line per package (statements, missed, percent) and the total, from the data file and the package
list in ``[tool.coverage.run]`` of pyproject.toml (``source`` names the packages' directories). Files that
no test imported count as fully missed, as in ``coverage report``. Data files of child processes that
pytest-cov has not combined (a run that was interrupted) are combined first.

    python deploy/coverage_report.py [--fail-under PCT] [--files]

``--fail-under PCT`` exits 1 when any package is below PCT; ``--files`` also lists each file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tally:
    statements: int = 0
    missed: int = 0

    @property
    def percent(self) -> float:
        if self.statements == 0:
            return 100.0
        return 100.0 * (self.statements - self.missed) / self.statements

    def add(self, statements: int, missed: int) -> None:
        self.statements += statements
        self.missed += missed


def load() -> coverage.Coverage:
    """The project's coverage data, with any leftover per-process data files combined into it."""
    cov = coverage.Coverage(config_file=str(ROOT / "pyproject.toml"))
    data_file = Path(cov.config.data_file)
    if not data_file.is_absolute():
        data_file = ROOT / data_file
    if any(data_file.parent.glob(data_file.name + ".*")):
        cov.combine(keep=False)
        cov.save()
        # What is left could not be read: a child killed while it wrote its data. It would make every
        # later ``coverage report`` fail, so it goes.
        for leftover in data_file.parent.glob(data_file.name + ".*"):
            print(f"coverage_report: removed unreadable {leftover.name}", file=sys.stderr)
            leftover.unlink(missing_ok=True)
    cov.load()
    return cov


def per_file(cov: coverage.Coverage) -> dict[str, tuple[int, int]]:
    """Path (relative to the repository) → (statements, missed), including files never imported."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        # ignore_errors: a file measured during the run may since have been deleted or renamed.
        cov.json_report(outfile=str(out), ignore_errors=True)
        report = json.loads(out.read_text())
    files: dict[str, tuple[int, int]] = {}
    for name, entry in report["files"].items():
        path = Path(name)
        if path.is_absolute():
            path = path.relative_to(ROOT)
        summary = entry["summary"]
        files[path.as_posix()] = (summary["num_statements"], summary["missing_lines"])
    return files


def tally(packages: list[str], files: dict[str, tuple[int, int]]) -> dict[str, Tally]:
    """Sum each file into the package whose directory holds it (the longest matching directory)."""
    totals = {package: Tally() for package in packages}
    for path, (statements, missed) in files.items():
        owners = [p for p in packages if path.startswith(p.rstrip("/") + "/")]
        if owners:
            totals[max(owners, key=len)].add(statements, missed)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fail-under", type=float, default=None, metavar="PCT")
    parser.add_argument("--files", action="store_true", help="list every file too")
    args = parser.parse_args(argv)

    try:
        cov = load()
    except coverage.CoverageException as exc:
        print(f"coverage_report: {exc}", file=sys.stderr)
        return 1
    packages = [
        str(Path(p).relative_to(ROOT)) if Path(p).is_absolute() else p for p in cov.config.source or []
    ]
    files = per_file(cov)
    totals = tally(packages, files)

    width = max(len(p) for p in packages) if packages else 10
    print(f"{'package':<{width}}  {'stmts':>6}  {'missed':>6}  {'cover':>6}")
    total = Tally()
    for package in sorted(packages, key=lambda p: totals[p].percent):
        t = totals[package]
        total.add(t.statements, t.missed)
        print(f"{package:<{width}}  {t.statements:>6}  {t.missed:>6}  {t.percent:>5.1f}%")
        if args.files:
            for path in sorted(f for f in files if f.startswith(package + "/")):
                statements, missed = files[path]
                file_pct = Tally(statements, missed).percent
                print(f"  {path:<{width + 30}}  {statements:>6}  {missed:>6}  {file_pct:>5.1f}%")
    print(f"{'TOTAL':<{width}}  {total.statements:>6}  {total.missed:>6}  {total.percent:>5.1f}%")

    if args.fail_under is not None:
        low = [p for p in packages if totals[p].percent < args.fail_under]
        if low:
            print(f"coverage_report: below {args.fail_under:g}%: {', '.join(low)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
