"""The command line's parser and entry point: `python -m bot COMMAND` (see --help)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bot.cli import arguments
from bot.cli.common import UsageError, ensure_logging
from bot.config import SUMMARY_HOUR_UTC, ConfigError
from bot.embedded import EmbeddedUnavailable
from bot.logs import kv


def command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """``bot.cli.MODULE.NAME``, imported when the command runs: a command loads only
    what it uses (and `--help` nothing but this parser)."""

    def run(args: argparse.Namespace) -> int:
        function = getattr(importlib.import_module(f"bot.cli.{module}"), name)
        return int(function(args) or 0)

    run.__qualname__ = f"{module}.{name}"
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="puppet-webhooks: mirror GitHub pull requests, issues and comments "
        "into Trello and Jira.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = commands.add_parser(
        "run",
        help="run web + worker locally (embedded PostgreSQL/Redis when none is configured)",
        description="Run the web process and one worker. With DATABASE_URL / REDIS_URL unset, "
        "real PostgreSQL and Redis servers are started in .data/ and stopped on exit; a "
        "webhook secret and admin token are generated there when unset.",
    )
    local.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 makes "
        "the service, and /setup until the App is configured, reachable from the network)",
    )
    local.set_defaults(func=command("processes", "run_all"))
    web = commands.add_parser(
        "web", help="serve the webhook endpoint on $PORT", description="Serve on $PORT."
    )
    web.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104  (a dyno is reached through Heroku's router)
        help="address to listen on (default: %(default)s, every interface)",
    )
    web.set_defaults(func=command("processes", "run_web"))
    commands.add_parser(
        "worker",
        help="run an arq worker (same as `arq worker.WorkerSettings`)",
        description="Run an arq worker processing the queued jobs.",
    ).set_defaults(func=command("processes", "run_worker"))
    commands.add_parser(
        "migrate", help="apply database migrations (idempotent)", description="Apply migrations."
    ).set_defaults(func=command("processes", "migrate"))

    receiver = commands.add_parser(
        "receive",
        help="sign a recorded delivery (or a bare payload) and POST it to the service",
        description="Sign FILE with the configured webhook secret and POST it, as GitHub "
        "would. FILE is a recorded delivery (JSON with headers and body), or, with --event, "
        'a bare payload as copied from the App\'s "Recent Deliveries" page.',
    )
    receiver.add_argument(
        "fixture",
        metavar="FILE",
        help="a recorded delivery, e.g. fixtures/pull_request/opened.json, or a payload",
    )
    receiver.add_argument(
        "-e",
        "--event",
        metavar="NAME",
        help="FILE is a bare payload of this event (e.g. pull_request); the delivery's "
        "headers are made up",
    )
    receiver.add_argument("--url", help="where to send it (default: the local service)")
    receiver.add_argument(
        "--keep-id",
        action="store_true",
        help="send the recorded X-GitHub-Delivery instead of a fresh one "
        "(a second send is then answered as a duplicate)",
    )
    receiver.set_defaults(func=command("receive", "receive"))

    events = commands.add_parser(
        "events", help="stored deliveries", description="List or replay stored deliveries."
    ).add_subparsers(dest="events_command", required=True, metavar="ACTION")
    listing = events.add_parser(
        "list", help="recent deliveries and their jobs", description="Recent deliveries."
    )
    listing.add_argument("--num", type=int, default=20, help="how many (default 20)")
    listing.add_argument(
        "--repo", metavar="OWNER/REPO", type=arguments.repository, help="only this repository's"
    )
    listing.add_argument(
        "--failed", action="store_true", help="only those with a job that failed for good"
    )
    listing.set_defaults(func=command("admin", "events_list"))
    replay = events.add_parser(
        "replay",
        help="dispatch a stored delivery again",
        description="Run a stored delivery through the handlers again, as new jobs "
        "(after a failed sync, or once a fix is deployed).",
    )
    replay.add_argument("delivery_id", metavar="DELIVERY_ID")
    replay.set_defaults(func=command("admin", "events_replay"))
    recover = events.add_parser(
        "recover",
        help="ask GitHub to send again the deliveries it failed to hand over (App only)",
        description="Read the App's webhook delivery log back to --since and ask GitHub to "
        "send again, once, every delivery whose last attempt failed and that is not stored "
        "here. The worker does this every ten minutes; GitHub keeps three days of the log.",
    )
    recover.add_argument(
        "--since",
        type=arguments.duration,
        metavar="AGE",
        help="how far back to look, e.g. 90m, 6h, 2d (default: where the last scan ended, "
        "or 6h; at most 3d)",
    )
    recover.add_argument(
        "--dry-run", action="store_true", help="list the missed deliveries; ask for none"
    )
    recover.set_defaults(func=command("admin", "events_recover"))

    jobs = commands.add_parser(
        "jobs",
        help="failed jobs, one job's record",
        description="List, show or retry jobs.",
    ).add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    failed = jobs.add_parser(
        "failed", help="jobs that failed for good, with their error", description="Failed jobs."
    )
    failed.add_argument("--num", type=int, default=50, help="how many (default 50)")
    failed.set_defaults(func=command("admin", "jobs_failed"))
    retry = jobs.add_parser(
        "retry",
        help="queue a failed job again",
        description="Queue a failed job again; outputs it already completed are not redone.",
    )
    retry.add_argument("job", metavar="ID", help="the ID or JOB column of `jobs failed`")
    retry.set_defaults(func=command("admin", "jobs_retry"))
    show = jobs.add_parser(
        "show",
        help="every field of one job, its steps and its whole error",
        description="Print every field of a job's record, the steps it completed, the "
        "delivery it came from and its whole error text.",
    )
    show.add_argument("job", metavar="ID", help="the ID or JOB column of `jobs failed`")
    show.set_defaults(func=command("history", "jobs_show"))
    watch = jobs.add_parser(
        "progress",
        help="follow an import's syncs: done, failed, waiting, rate and ETA",
        description="Follow the sync jobs of an import as the workers do them, with a rate "
        "and an ETA, until none is left; then a summary and the jobs that failed (exit 1 "
        "when some did). Ctrl-C stops watching, not the import.",
    )
    watch.add_argument(
        "import_id", metavar="IMPORT", type=int, nargs="?", help="the import (default: the latest)"
    )
    watch.set_defaults(func=command("progress", "jobs_progress"))

    add_import(commands)
    add_doctor(commands)
    add_items(commands)
    add_projects(commands)
    add_trello(commands)
    add_links(commands)
    add_summary(commands)

    commands.add_parser(
        "secret", help="print a new random webhook secret", description="Print a new secret."
    ).set_defaults(func=command("receive", "new_secret"))
    return parser


def add_doctor(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check every configured part against the real services",
        description="Check the settings, PostgreSQL (migrations, connection budget), Redis, "
        "the GitHub App (permissions, events, installations) or token, Trello (token, "
        "lists, boards) and Jira (credentials, every mapped project and its issue type): "
        "one line each, with how to fix what is wrong. Exit 0 when all is well, 1 otherwise.",
    )
    parser.add_argument(
        "--web",
        type=int,
        default=1,
        metavar="N",
        help="web processes sharing the database, for the connection budget (default 1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes sharing the database (default 1)",
    )
    parser.set_defaults(func=command("doctor", "doctor"))


def add_items(commands: Any) -> None:
    items = commands.add_parser(
        "items",
        help="one pull request's or issue's story; correct where it is tracked",
        description="What the service knows about one pull request or issue, and how to "
        "make it forget a wrong card or issue.",
    ).add_subparsers(dest="items_command", required=True, metavar="ACTION")
    show = items.add_parser(
        "show",
        help="its card and issue, status comment, and every delivery and job about it",
        description="Where OWNER/REPO#N is tracked (card, issue, status comment, with links) "
        "and every delivery and job about it, oldest first, with outcome, tries and error.",
    )
    show.add_argument("item", metavar="OWNER/REPO#N", help="or the pull request's URL")
    show.set_defaults(func=command("history", "items_show"))
    unlink = items.add_parser(
        "unlink",
        help="forget the card or issue it is linked to (all, or one output's)",
        description="Forget which card or issue tracks OWNER/REPO#N (nothing is deleted in "
        "Trello or Jira); the next event about it looks it up afresh, or creates one.",
    )
    unlink.add_argument("item", metavar="OWNER/REPO#N", help="or the pull request's URL")
    unlink.add_argument(
        "--output",
        metavar="NAME",
        help="only this output's link: an output's name, or github-status for the status "
        "comment (default: every link)",
    )
    unlink.set_defaults(func=command("history", "items_unlink"))


def add_import(commands: Any) -> None:
    importer = commands.add_parser(
        "import",
        help="sync the open pull requests (or issues) of every repository the App is "
        "installed on, or of one",
        description="Queue a sync job for every open pull request of every repository of "
        "every installation of the App (or of one installation, of OWNER/REPO, or just "
        "NUMBER), oldest first. The workers sync them as fast as Trello's, Jira's and "
        "GitHub's limits allow, live events first. Imported pull requests get no status "
        "comment unless --comment. Safe to run twice: an item imported before is not "
        "queued again, and an interrupted import is resumed. See docs/onboarding.md.",
    )
    importer.add_argument("repository", metavar="OWNER/REPO", nargs="?", type=arguments.repository)
    importer.add_argument("number", metavar="NUMBER", type=int, nargs="?")
    importer.add_argument(
        "--installation", type=int, metavar="ID", help="only the repositories of installation ID"
    )
    kinds = importer.add_mutually_exclusive_group()
    for flag, kind, what in (
        ("--pulls", "pulls", "open pull requests (the default)"),
        ("--issues", "issues", "open issues only"),
        ("--all", "all", "open pull requests and issues"),
    ):
        kinds.add_argument(flag, dest="kinds", action="store_const", const=kind, help=what)
    importer.add_argument(
        "--since",
        type=arguments.since,
        metavar="DATE",
        help="only items updated since DATE (2026-06-01, or an ISO 8601 time; UTC)",
    )
    importer.add_argument(
        "--comment",
        action="store_true",
        help="post the status comment on imported pull requests (by default they get none: "
        "no notification to their authors)",
    )
    importer.add_argument(
        "--again", action="store_true", help="queue items that were imported before, too"
    )
    importer.add_argument(
        "--wait",
        action="store_true",
        help="then follow the syncs until they are done (Ctrl-C stops watching, not the import)",
    )
    importer.set_defaults(func=command("imports", "import_command"))


def add_projects(commands: Any) -> None:
    projects = commands.add_parser(
        "projects",
        help="which Jira project each repository's pull requests go to",
        description="Map repositories to Jira projects. Pull requests of "
        "repositories without a mapping are ignored by the Jira output.",
    )
    actions = projects.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="map OWNER/REPO to a Jira project (replaces an existing mapping)",
        description="Map OWNER/REPO to the Jira project KEY; new issues get the issue type, "
        "labels and components given, and the transitions given are made when a pull "
        "request is merged, closed or reopened (when Jira offers them then). The issue type "
        "and transitions are checked with Jira first. Running it again for the same "
        "repository replaces the mapping.",
    )
    create.add_argument("repository", metavar="OWNER/REPO", help="e.g. puppetlabs/puppet")
    create.add_argument("key", metavar="KEY", help="Jira project key, e.g. PUP")
    create.add_argument(
        "--labels", nargs="+", default=[], metavar="LABEL", help="labels for new issues"
    )
    create.add_argument(
        "--components", nargs="+", default=[], metavar="COMPONENT", help="components for new issues"
    )
    create.add_argument(
        "--issue-type", metavar="TYPE", help="the type of new issues (default: Task)"
    )
    for event, when, example in (
        ("merge", "merged", "Done"),
        ("close", "closed without merging", "Won't Do"),
        ("reopen", "reopened", "In Progress"),
    ):
        create.add_argument(
            f"--on-{event}",
            metavar="TRANSITION",
            help=f"the transition (or the status it leads to) made when a pull request is "
            f"{when}, e.g. {example!r}",
        )
    create.add_argument(
        "--no-check",
        action="store_true",
        help="save without asking Jira whether the project, the issue type and the "
        "transitions exist (when offline)",
    )
    create.set_defaults(func=command("admin", "projects_create"))
    actions.add_parser(
        "list", help="show every mapping as a table", description="Show every mapping."
    ).set_defaults(func=command("admin", "projects_list"))
    delete = actions.add_parser(
        "delete", help="remove the mapping of OWNER/REPO", description="Remove a mapping."
    )
    delete.add_argument("repository", metavar="OWNER/REPO", type=arguments.repository)
    delete.set_defaults(func=command("admin", "projects_delete"))


def add_trello(commands: Any) -> None:
    trello = commands.add_parser(
        "trello",
        help="which Trello list each repository's cards go to",
        description="Give a repository its own Trello list for new cards (and reopened "
        "ones); repositories without one use TRELLO_TARGET_LIST_ID.",
    )
    actions = trello.add_subparsers(dest="action", required=True, metavar="ACTION")
    mapping = actions.add_parser(
        "map",
        help="send OWNER/REPO's new cards to LIST_ID (replaces an existing mapping)",
        description="Send the new cards of OWNER/REPO to the list LIST_ID, which Trello is "
        "asked about first. Running it again for the same repository replaces the mapping.",
    )
    mapping.add_argument("repository", metavar="OWNER/REPO")
    mapping.add_argument("list_id", metavar="LIST_ID", help="a list id (24 hex digits)")
    mapping.add_argument(
        "--no-check", action="store_true", help="save without asking Trello about the list"
    )
    mapping.set_defaults(func=command("trackers", "trello_map"))
    actions.add_parser(
        "list", help="show every repository's list", description="Show every mapping."
    ).set_defaults(func=command("trackers", "trello_list"))
    unmap = actions.add_parser(
        "unmap",
        help="send OWNER/REPO's new cards to TRELLO_TARGET_LIST_ID again",
        description="Remove a mapping.",
    )
    unmap.add_argument("repository", metavar="OWNER/REPO", type=arguments.repository)
    unmap.set_defaults(func=command("trackers", "trello_unmap"))


def add_links(commands: Any) -> None:
    links = commands.add_parser(
        "links",
        help="which card or issue tracks which item",
        description="The record of which Trello card or Jira issue tracks which item.",
    )
    actions = links.add_subparsers(dest="action", required=True, metavar="ACTION")
    adopt = actions.add_parser(
        "adopt",
        help="record every card and issue the old service made (once, when migrating)",
        description="Read every card of the target list's board, the repositories' own "
        "lists' boards and TRELLO_BOARDS, and every issue with a webhooks-id of the mapped "
        "Jira projects; record each card or issue the old service made as its item's. "
        "Items linked before keep their link; safe to run again. Once every one is "
        "recorded, new items stop looking for them (LEGACY_LOOKUP=auto).",
    )
    adopt.add_argument(
        "--owner",
        action="append",
        default=[],
        metavar="OWNER",
        help="the owner of repositories the old identifiers name (they omit it), when "
        "neither the card nor the service knows it; may be given more than once",
    )
    adopt.set_defaults(func=command("trackers", "links_adopt"))


def add_summary(commands: Any) -> None:
    parser = commands.add_parser(
        "summary",
        help="publish the finished-card summary to the summary gist",
        description="Read every card in TRELLO_FINISHED_LIST_ID with its labels and "
        "comments, render the summary template (SUMMARY_TEMPLATE_URL, or the default) and "
        "write it as SUMMARY.md into gist GITHUB_SUMMARY_GIST_ID (needs GITHUB_TOKEN). "
        f"The worker also does this every day at {SUMMARY_HOUR_UTC:02d}:00 UTC.",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the rendered Markdown instead of publishing it (no GitHub call)",
    )
    parser.add_argument(
        "--template",
        metavar="PATH_OR_URL",
        help="use this template instead of SUMMARY_TEMPLATE_URL (try one with --dry-run)",
    )
    parser.set_defaults(func=command("summary", "summary_command"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (EmbeddedUnavailable, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:
        # A bug: its traceback in one log line, masked like every other, then a short note.
        ensure_logging()
        logging.getLogger("bot.cli").exception("command failed", extra=kv(command=args.command))
        print(f"error: {args.command} failed unexpectedly (logged above)", file=sys.stderr)
        return 1
