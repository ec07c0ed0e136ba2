"""Jira the way teams use it (docs/jira.md): keys wherever developers write them, edited
titles, transitions, issue types and labels, against the fake Jira."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from bot.model import Label
from bot.outputs.base import Services
from bot.outputs.jira import JiraOutput
from bot.store import adoptions, projects
from bot.store.projects import Transitions
from tests.fakes.jira import FakeJira
from tests.test_jira_output import PR, issue_link, output, pull_request, services

__all__ = ["output", "services"]  # fixtures
API = "/rest/api/2"
FLOW = Transitions(on_merge="Done", on_close="Won't Do", on_reopen="In Progress")


async def map_project(pool: asyncpg.Pool, **options: Any) -> None:
    project = projects.make_project("puppetlabs/puppet", "PUP", ["community"], **options)
    await projects.save(pool, project)


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "fix pup-7: ordering of exec"},
        {"head_branch": "pup-7-exec-ordering"},
        {"head_branch": "ticket/PUP-7_refreshonly"},
        {"body": "Fixes Pup-7\n\nExec resources with refreshonly ran late."},
    ],
    ids=["title-lower-case", "branch", "branch-underscore", "body-first-line"],
)
async def test_a_key_in_the_title_branch_or_body_in_any_case_links_the_issue(
    fake_jira: FakeJira, output: JiraOutput, changes: dict[str, str]
) -> None:
    fake_jira.add_issue("PUP", "Exec ordering", key="PUP-7")
    assert await output.sync(dataclasses.replace(PR, **changes)) == issue_link(output, "PUP-7")
    assert list(fake_jira.issues) == ["PUP-7"]
    assert fake_jira.count("GET", "/issue/PUP-7") == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"body": "Exec resources ran late.\nSee PUP-7."},  # not the first line
        {"head_branch": "backup-7"},  # another word ending in -7
        {"title": "Fix SUPPUP-7 handling"},  # a longer project key
    ],
)
async def test_keys_elsewhere_or_of_longer_projects_do_not_count(
    fake_jira: FakeJira, output: JiraOutput, changes: dict[str, str]
) -> None:
    fake_jira.add_issue("PUP", "Exec ordering", key="PUP-7")
    link = await output.sync(dataclasses.replace(PR, **changes))
    assert link is not None and link.external_id == "PUP-1"  # a new issue, not PUP-7
    assert fake_jira.count("GET", "/issue/PUP-7") == 0


async def test_the_configured_issue_type_is_created(
    fake_jira: FakeJira, services: Services, pool: asyncpg.Pool, clean_state: None
) -> None:
    await map_project(pool, issue_type="Story")
    await JiraOutput(services).sync(PR)
    assert fake_jira.issues["PUP-1"].fields["issuetype"] == {"name": "Story"}


async def test_an_edited_title_links_the_issue_it_names(
    fake_jira: FakeJira, output: JiraOutput, pool: asyncpg.Pool
) -> None:
    created = await output.sync(PR)
    assert created == issue_link(output, "PUP-1")
    fake_jira.add_issue("PUP", "Exec refreshonly fires late", key="PUP-11993")
    fake_jira.requests.clear()

    edited = dataclasses.replace(PR, title="(pup-11993) Fix resource ordering")
    link = await output.edit(edited)

    assert link == dataclasses.replace(
        issue_link(output, "PUP-11993"),
        note="linked to PUP-11993, which the pull request names (was PUP-1)",
    )
    assert [li["object"]["url"] for li in fake_jira.issues["PUP-11993"].remote_links] == [
        PR.html_url
    ]
    assert await pool.fetchval("SELECT external_id FROM item_links") == "PUP-11993"
    # Closing is said on the issue it names now; the issue made before is left alone.
    await output.close(dataclasses.replace(edited, state="closed"))
    assert fake_jira.comment_bodies("PUP-11993") == [
        "Pull request (pup-11993) Fix resource ordering has been closed."
    ]
    assert fake_jira.comment_bodies("PUP-1") == []

    # Edited again (say, its body): nothing to ask Jira, the issue it names is linked.
    fake_jira.requests.clear()
    again = await output.edit(dataclasses.replace(edited, body="More detail"))
    assert again == issue_link(output, "PUP-11993")
    assert fake_jira.requests == []


async def test_an_edit_naming_nothing_changes_nothing_and_creates_nothing(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    assert await output.edit(PR) is None  # not tracked: nothing created
    assert fake_jira.issues == {} and fake_jira.requests == []
    await output.sync(PR)
    fake_jira.requests.clear()
    assert await output.edit(dataclasses.replace(PR, body="edited")) == issue_link(output, "PUP-1")
    assert fake_jira.requests == []


async def test_transitions_are_made_when_offered_and_skipped_with_the_reason(
    fake_jira: FakeJira, services: Services, pool: asyncpg.Pool, clean_state: None
) -> None:
    await map_project(pool, transitions=FLOW)
    output = JiraOutput(services)
    await output.sync(PR)
    assert fake_jira.status("PUP-1") == "To Do"

    merged = await output.close(dataclasses.replace(PR, state="closed", merged=True))
    assert merged is not None and merged.note == "PUP-1 moved to Done (Done)"
    assert fake_jira.status("PUP-1") == "Done"

    # From Done the workflow offers only "Reopen": "In Progress" is skipped, and says why.
    reopened = await output.reopen(PR)
    assert reopened is not None
    assert reopened.note == (
        "transition In Progress skipped: not offered from Done (offered: Reopen)"
    )
    assert fake_jira.status("PUP-1") == "Done"
    assert fake_jira.count("POST", "/transitions") == 1

    # Merged again (a job that runs twice): it is there already.
    again = await output.close(dataclasses.replace(PR, state="closed", merged=True))
    assert again is not None and again.note == "transition Done skipped: it is Done already"


async def test_a_transition_is_found_by_the_status_it_leads_to(
    fake_jira: FakeJira, services: Services, pool: asyncpg.Pool, clean_state: None
) -> None:
    await map_project(pool, transitions=Transitions(on_close="won't do", on_reopen="To Do"))
    output = JiraOutput(services)
    await output.sync(PR)

    closed = await output.close(dataclasses.replace(PR, state="closed"))
    assert closed is not None and closed.note == "PUP-1 moved to Won't Do (Won't Do)"
    reopened = await output.reopen(PR)  # "To Do" is where "Reopen" leads
    assert reopened is not None and reopened.note == "PUP-1 moved to To Do (Reopen)"
    assert fake_jira.status("PUP-1") == "To Do"
    # Comments come first, the transition after.
    assert fake_jira.comment_bodies("PUP-1")[-1].endswith("has been reopened.")


async def test_without_transitions_nothing_moves(fake_jira: FakeJira, output: JiraOutput) -> None:
    await output.sync(PR)
    closed = await output.close(dataclasses.replace(PR, state="closed", merged=True))
    assert closed == issue_link(output, "PUP-1")
    assert fake_jira.count(None, "/transitions") == 0


async def test_labels_are_mirrored_and_only_ours_are_removed(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    labelled = dataclasses.replace(PR, labels=(Label("bug"), Label("needs  triage")))
    await output.sync(labelled)
    issue = fake_jira.issues["PUP-1"]
    assert issue.fields["labels"] == ["community", "bug", "needs_triage"]

    issue.fields["labels"].append("customer")  # added in Jira by hand
    fake_jira.requests.clear()
    assert await output.relabel(dataclasses.replace(PR, labels=(Label("bug"),)))
    assert issue.fields["labels"] == ["community", "bug", "customer"]
    assert fake_jira.requests == [("PUT", f"{API}/issue/PUP-1")]

    # The same labels again cost nothing; removing the last one leaves the project's.
    fake_jira.requests.clear()
    await output.relabel(dataclasses.replace(PR, labels=(Label("bug"),)))
    assert fake_jira.requests == []
    await output.relabel(dataclasses.replace(PR, labels=(Label("community"),)))
    await output.relabel(PR)
    assert issue.fields["labels"] == ["community", "customer"]


async def test_labels_reach_an_issue_that_was_found(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    fake_jira.add_issue("PUP", "Exec ordering", key="PUP-11993", labels=["triaged"])
    await output.sync(dataclasses.replace(pull_request(), labels=(Label("bug"),)))
    assert fake_jira.issues["PUP-11993"].fields["labels"] == ["triaged", "bug"]


async def test_an_untracked_pull_request_is_not_labelled(
    fake_jira: FakeJira, output: JiraOutput
) -> None:
    assert await output.relabel(dataclasses.replace(PR, labels=(Label("bug"),))) is None
    assert fake_jira.requests == []


@pytest.mark.parametrize("setting", ["off", "auto"])
async def test_after_adoption_a_new_pull_request_is_not_searched_for(
    fake_jira: FakeJira, services: Services, pool: asyncpg.Pool, setting: str
) -> None:
    await map_project(pool)
    if setting == "auto":
        await adoptions.record(
            pool, adoptions.Adoption("jira", datetime.now(UTC), True, 0, 0, 0, 0)
        )
    settings = dataclasses.replace(services.settings, legacy_lookup=setting)
    output = JiraOutput(dataclasses.replace(services, settings=settings))
    await output.sync(PR)
    assert fake_jira.requests == [
        ("POST", f"{API}/issue"),
        ("POST", f"{API}/issue/PUP-1/remotelink"),
    ]
