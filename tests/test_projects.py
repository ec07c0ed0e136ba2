"""Repository → Jira project mappings: the queries, and `python -m bot projects …`."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bot.cli.admin import projects_table
from bot.config import Settings
from bot.store import projects
from bot.store.projects import InvalidProject, Project
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
            Project("puppetlabs/puppet", "PUP", ("community", "triage"), ("Agent",)),
            Project("voxpupuli/puppet-nginx", "MODULES"),
        ]
    )
    assert table.splitlines() == [
        "REPOSITORY              KEY      LABELS             COMPONENTS",
        "puppetlabs/puppet       PUP      community, triage  Agent",
        "voxpupuli/puppet-nginx  MODULES  -                  -",
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
        "REPOSITORY         KEY     LABELS  COMPONENTS",
        "puppetlabs/puppet  PUPPET  -       -",
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
    assert code == 2 and "FACT has no issue type Task (it has Bug, Story)" in err
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
