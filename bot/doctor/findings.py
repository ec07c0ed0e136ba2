"""What a check finds: fine, a problem with how to fix it, or not checked; and a report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.logs import kv

Status = Literal["ok", "problem", "skipped"]
LABELS: dict[Status, str] = {"ok": "ok", "problem": "PROBLEM", "skipped": "skipped"}
SHOWN = 5  # names listed in one line before "and N more"


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked: "postgresql", "trello list", "jira project PUP"
    status: Status
    message: str
    fix: str = ""  # for a problem: what to change

    def line(self) -> str:
        text = f"{LABELS[self.status]:<8} {self.check}: {self.message}"
        return f"{text} Fix: {self.fix}" if self.fix else text


def listed(names: Sequence[str]) -> str:
    more = len(names) - SHOWN
    return ", ".join(names[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def ok(check: str, message: str) -> Finding:
    return Finding(check, "ok", message)


def problem(check: str, message: str, fix: str) -> Finding:
    return Finding(check, "problem", message, fix)


def skipped(check: str, message: str) -> Finding:
    return Finding(check, "skipped", message)


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    checked_at: datetime

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "problem"]

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def summary(self) -> str:
        """A count, naming nothing (shown to anyone on the home page)."""
        count = len(self.problems)
        passed = sum(1 for f in self.findings if f.status == "ok")
        if not count:
            return f"no problems ({passed} checks passed)"
        return f"{count} problem{'s' if count > 1 else ''} ({passed} checks passed)"

    def text(self) -> str:
        """One line per finding, then the summary naming the checks with problems."""
        names = ", ".join(f.check for f in self.problems)
        last = self.summary() + (f": {names}" if names else "")
        return "\n".join([*(f.line() for f in self.findings), last])


def log_report(report: Report, log: logging.Logger) -> None:
    """One line saying how it went, and one warning per problem."""
    level = logging.WARNING if report.problems else logging.INFO
    log.log(level, "configuration checked", extra=kv(result=report.summary()))
    for finding in report.problems:
        log.warning(
            "configuration problem",
            extra=kv(check=finding.check, problem=finding.message, fix=finding.fix),
        )
