"""Repository → Jira project mappings: the queries, and `python -m bot projects …`."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.cli import checks
from bot.cli.admin import projects_table
from bot.cli.common import UsageError
from bot.config import Settings
from bot.integrations.jira import JiraClient
from bot.store import projects
from bot.store.projects import InvalidProject, Project, Transitions
from tests.fakes.jira import FakeJira
from tests.test_cli import bot


async def test_save_get_list_delete(pool: asyncpg.Pool) -> None:
    first = projects.make_project("puppetlabs/puppet", "PUP", [" community ", "community"], [])
    assert first == Project("puppetlabs/puppet", "PUP", ("community",), ())
    assert await projects.save(pool, first) is True
    assert await projects.save(pool, projects.make_project("puppetlabs/facter", "FACT")) is True
    # GitHub names are case-insensitive: this replaces the mapping, it does not add one.
    replaced = projects.make_project("PuppetLabs/Puppet", "PUP", components=["Agent"])
    assert await projects.save(pool, replaced) is False

    assert await projects.get(pool, "puppetlabs/puppet") == replaced
    assert await projects.get(pool, "puppetlabs/hiera") is None
    assert [p.repository for p in await projects.list_all(pool)] == [
        "puppetlabs/facter",
        "PuppetLabs/Puppet",
    ]
    assert await projects.delete(pool, "puppetlabs/PUPPET") is True
    assert await projects.delete(pool, "puppetlabs/puppet") is False


@pytest.mark.parametrize(
    ("repository", "key", "labels", "message"),
    [
        ("puppet", "PUP", [], "OWNER/REPO"),
        ("puppetlabs/puppet/extra", "PUP", [], "OWNER/REPO"),
        ("puppetlabs/..", "PUP", [], "OWNER/REPO"),
        ("puppetlabs/puppet", "pup", [], "did you mean PUP?"),
        ("puppetlabs/puppet", "1PUP", [], "not a Jira project key"),
        ("puppetlabs/puppet", "PUP-1", [], "not a Jira project key"),
        ("puppetlabs/puppet", "PUP", ["two words"], "cannot contain spaces"),
    ],
)
def test_bad_mappings_are_refused(
    repository: str, key: str, labels: list[str], message: str
) -> None:
    with pytest.raises(InvalidProject, match=message):
        projects.make_project(repository, key, labels)


def test_the_table_is_aligned() -> None:
    table = projects_table(
        [
            Project(
                "puppetlabs/puppet",
                "PUP",
                ("community", "triage"),
                ("Agent",),
                "Story",
                Transitions("Done", "Won't Do", "In Progress"),
            ),
            Project("voxpupuli/puppet-nginx", "MODULES"),
        ]
    )
    assert table.splitlines() == [
        "REPOSITORY              KEY      ISSUE TYPE  LABELS             COMPONENTS"
        "  ON MERGE  ON CLOSE  ON REOPEN",
        "puppetlabs/puppet       PUP      Story       community, triage  Agent     "
        "  Done      Won't Do  In Progress",
        "voxpupuli/puppet-nginx  MODULES  Task        -                  -         "
        "  -         -         -",
    ]
    assert projects_table([]).startswith("no projects configured")


def jira_env(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.database_url
    return {
        "DATABASE_URL": settings.database_url,
        "JIRA_SITE": settings.jira_site,
        "JIRA_USERNAME": settings.jira_username,
        "JIRA_PASSWORD": settings.jira_password,
        **extra,
    }


async def test_the_cli_round_trip(
    jira_settings: Settings, fake_jira: FakeJira, pool: asyncpg.Pool
) -> None:
    fake_jira.projects.add("PUPPET")
    env = jira_env(jira_settings)
    code, out, err = await bot(
        "projects", "create", "puppetlabs/puppet", "PUP",
        "--labels", "community", "triage", "--components", "Agent",
        env=env,
    )  # fmt: skip
    assert (code, out, err) == (0, "created puppetlabs/puppet -> PUP\n", "")
    code, out, _ = await bot("projects", "create", "puppetlabs/puppet", "PUPPET", env=env)
    assert (code, out) == (0, "updated puppetlabs/puppet -> PUPPET\n")

    code, out, _ = await bot("projects", "list", env=env)
    assert code == 0
    assert out.splitlines() == [
        "REPOSITORY         KEY     ISSUE TYPE  LABELS  COMPONENTS  ON MERGE  ON CLOSE  ON REOPEN",
        "puppetlabs/puppet  PUPPET  Task        -       -           -         -         -",
    ]
    assert await projects.get(pool, "puppetlabs/puppet") == Project("puppetlabs/puppet", "PUPPET")

    code, out, _ = await bot("projects", "delete", "puppetlabs/puppet", env=env)
    assert (code, out) == (0, "deleted puppetlabs/puppet\n")
    code, out, _ = await bot("projects", "list", env=env)
    assert code == 0 and out.startswith("no projects configured")


async def test_create_asks_jira_first(
    jira_settings: Settings, fake_jira: FakeJira, pool: asyncpg.Pool
) -> None:
    fake_jira.issue_types["FACT"] = ("Bug", "Story")
    fake_jira.denied["PUP"].add("ADD_COMMENTS")
    env = jira_env(jira_settings)
    unknown, no_task, lacking, offline, unset, unchecked = await asyncio.gather(
        bot("projects", "create", "puppetlabs/puppet", "NOPE", env=env),
        bot("projects", "create", "puppetlabs/facter", "FACT", env=env),
        bot("projects", "create", "puppetlabs/puppet", "PUP", env=env),
        bot(
            "projects",
            "create",
            "puppetlabs/hiera",
            "PUP",
            env={**env, "JIRA_SITE": "http://127.0.0.1:9"},
        ),
        bot(
            "projects",
            "create",
            "puppetlabs/hiera",
            "PUP",
            env={"DATABASE_URL": env["DATABASE_URL"]},
        ),
        bot(
            "projects",
            "create",
            "puppetlabs/r10k",
            "NOPE",
            "--no-check",
            env={"DATABASE_URL": env["DATABASE_URL"]},
        ),
    )
    code, out, err = unknown
    assert code == 2 and out == "" and "Jira has no project NOPE" in err and "--no-check" in err
    code, out, err = no_task
    assert code == 2 and "cannot create 'Task' issues in FACT (it can create: Bug, Story)" in err
    code, out, err = lacking  # saved: the permission can be granted later
    assert code == 0 and out == "created puppetlabs/puppet -> PUP\n"
    assert "warning: the account lacks Add comments in PUP" in err
    code, out, err = offline
    assert code == 1 and "cannot check PUP in Jira" in err and "--no-check" in err
    code, out, err = unset
    assert code == 2 and "JIRA_SITE" in err and "--no-check" in err
    code, out, err = unchecked
    assert (code, out) == (0, "created puppetlabs/r10k -> NOPE\n")
    for _, _, err in (unknown, no_task, offline, unset):
        assert "Traceback" not in err and jira_settings.jira_password not in err
    assert [p.repository for p in await projects.list_all(pool)] == [
        "puppetlabs/puppet",
        "puppetlabs/r10k",
    ]


async def test_cli_errors_exit_2_with_a_message(service_urls: tuple[str, str]) -> None:
    env = {"DATABASE_URL": service_urls[0]}
    results = await asyncio.gather(
        bot("projects", "delete", "puppetlabs/nothing-here", env=env),
        bot("projects", "create", "not-a-repo", "PUP", env=env),
        bot("projects", "create", "puppetlabs/puppet", "pup", env=env),
        bot("projects", "create", "puppetlabs/puppet", env=env),
        bot("projects", env=env),
    )
    messages = [
        "no project is configured for puppetlabs/nothing-here",
        "'not-a-repo' is not a repository name of the form OWNER/REPO",
        "did you mean PUP?",
        "the following arguments are required: KEY",
        "the following arguments are required: ACTION",
    ]
    for (code, out, err), message in zip(results, messages, strict=True):
        assert code == 2 and out == ""
        assert message in err and "Traceback" not in err


async def test_every_projects_action_has_help() -> None:
    actions = ("create", "list", "delete")
    results = await asyncio.gather(*(bot("projects", action, "--help") for action in actions))
    for action, (code, out, _) in zip(actions, results, strict=True):
        assert code == 0 and f"usage: python -m bot projects {action}" in out


async def test_an_unreachable_database_is_reported_without_its_password() -> None:
    url = "postgresql://bot:hunter2-secret@127.0.0.1:9/bot"
    code, _, err = await bot("projects", "list", env={"DATABASE_URL": url})
    assert code == 1 and "cannot use the database" in err
    assert "hunter2" not in err and "Traceback" not in err


async def test_issue_type_and_transitions_are_checked_with_jira(
    service_urls: tuple[str, str], jira_settings: Settings, pool: asyncpg.Pool
) -> None:
    env = jira_env(jira_settings)
    code, out, err = await bot(
        "projects", "create", "puppetlabs/puppet", "PUP", "--issue-type", "story",
        "--on-merge", "done", "--on-close", "Won't Do", "--on-reopen", "In Progress",
        env=env,
    )  # fmt: skip
    assert (code, out, err) == (0, "created puppetlabs/puppet -> PUP\n", "")
    # Saved as Jira spells the names.
    saved = Project(
        "puppetlabs/puppet", "PUP", (), (), "Story", Transitions("Done", "Won't Do", "In Progress")
    )
    assert await projects.get(pool, "puppetlabs/puppet") == saved
    code, out, _ = await bot("projects", "list", env=env)
    assert (code, out) == (0, projects_table([saved]) + "\n")


@pytest.mark.parametrize(
    ("key", "options", "message"),
    [
        (
            "NOPE",
            {},
            "Jira has no project NOPE (or the account cannot see it); pass --no-check to save "
            "it without asking Jira",
        ),
        (
            "PUP",
            {"issue_type": "Epic"},
            "the account cannot create 'Epic' issues in PUP (it can create: Task, Bug, Story)",
        ),
        (
            "PUP",
            {"transitions": Transitions(on_merge="Dnoe")},
            "--on-merge 'Dnoe': Task issues in PUP have no such status (To Do, In Progress, "
            "Done, Won't Do); a transition named otherwise than the status it leads to is "
            "accepted with --no-check",
        ),
    ],
)
async def test_what_jira_does_not_know_is_refused(
    jira_settings: Settings, key: str, options: dict[str, Any], message: str
) -> None:
    project = projects.make_project("puppetlabs/puppet", key, **options)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UsageError) as refused:
            await checks.check_project(JiraClient(session, jira_settings), project)
    assert str(refused.value) == message


async def test_refusals_exit_2_or_1_and_nothing_is_saved(
    service_urls: tuple[str, str], jira_settings: Settings, pool: asyncpg.Pool
) -> None:
    env = jira_env(jira_settings)
    repo = "puppetlabs/puppet"
    no_jira = {"DATABASE_URL": service_urls[0]}
    bad_password = jira_env(jira_settings, JIRA_PASSWORD="wrong-password-99")
    results = await asyncio.gather(
        bot("projects", "create", repo, "NOPE", "--on-merge", "Done", env=env),
        bot("projects", "create", repo, "PUP", "--on-merge", " ", env=env),
        bot("projects", "create", repo, "PUP", "--on-close", "Done", env=no_jira),
        bot("projects", "create", repo, "PUP", "--on-merge", "Done", env=bad_password),
    )
    expected = [
        (2, "Jira has no project NOPE (or the account cannot see it)"),
        (2, "--on-merge cannot be empty"),
        (2, "checking the project against Jira needs JIRA_SITE"),
        (1, "GET /rest/api/2/project/PUP/statuses answered 401"),
    ]
    for (code, out, err), (status, message) in zip(results, expected, strict=True):
        assert (code, out) == (status, ""), err
        assert message in err and "Traceback" not in err and "wrong-password-99" not in err
    assert await projects.list_all(pool) == []

    # A transition named otherwise than its status is taken on trust with --no-check.
    code, out, _ = await bot(
        "projects", "create", repo, "PUP", "--on-merge", "Close Issue", "--no-check", env=env
    )
    assert (code, out) == (0, "created puppetlabs/puppet -> PUP\n")
    saved = await projects.get(pool, repo)
    assert saved is not None and saved.transitions.on_merge == "Close Issue"
