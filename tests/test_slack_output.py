"""The README's worked example: the Slack output, end to end, and its excerpts."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import asyncpg

from bot.config import Settings
from bot.outputs.slack import missing_settings
from bot.worker.status import MARKER
from tests.fakes.github import APP_ID, TEST_PRIVATE_PEM, FakeGitHub
from tests.fakes.slack import CHANNEL_ID, TOKEN, FakeSlack
from tests.support import ROOT, delivery, run_worker

EXCERPT = re.compile(r"<!-- excerpt: (\S+) -->\n```python\n(.*?)```", re.S)


def test_readme_excerpts_are_the_code() -> None:
    excerpts = EXCERPT.findall((ROOT / "README.md").read_text())
    assert len(excerpts) >= 3
    for path, code in excerpts:
        assert code in (ROOT / path).read_text(), f"README excerpt of {path} is out of date"


def test_missing_variables_are_named() -> None:
    assert missing_settings(Settings()) == ["SLACK_TOKEN", "SLACK_CHANNEL"]
    ready = Settings(environ={"SLACK_TOKEN": TOKEN, "SLACK_CHANNEL": "#community-prs"})
    assert missing_settings(ready) == []
    assert TOKEN in ready.secrets()  # an extension's token is redacted from logs too


async def test_slack_output_end_to_end(
    make_client: Any,
    settings: Settings,
    fake_slack: FakeSlack,
    fake_github: FakeGitHub,
    pool: asyncpg.Pool,
) -> None:
    slack_settings = dataclasses.replace(
        settings,
        outputs=("slack",),
        github_app_id=APP_ID,
        github_private_key=TEST_PRIVATE_PEM,
        github_api_url=fake_github.base_url,
        environ={
            "SLACK_TOKEN": TOKEN,
            "SLACK_CHANNEL": "#community-prs",
            "SLACK_API_URL": fake_slack.url,
        },
    )
    client = await make_client(
        outputs=slack_settings.outputs,
        environ=slack_settings.environ,
        github_app_id=APP_ID,
        github_private_key=TEST_PRIVATE_PEM,
        github_api_url=fake_github.base_url,
    )
    for name in (
        "pull_request/opened",
        "issue_comment/created_on_pull_request",
        "pull_request/labeled",  # the thread says nothing of labels or edits
        "pull_request/edited",
        "pull_request/closed_merged",
        "pull_request/opened",
    ):
        headers, body = delivery(name)
        assert (await client.post("/webhooks", data=body, headers=headers)).status == 202
    assert (await run_worker(slack_settings, pool)).jobs_failed == 0

    (opened,) = [m for m in fake_slack.messages if "thread_ts" not in m]
    assert opened["text"] == (
        "Pull request <https://github.com/puppetlabs/puppet/pull/8412|puppetlabs/puppet#8412>"
        " by adrienthebo: (PUP-11993) Fix resource ordering for exec with refreshonly"
    )
    replies = fake_slack.thread(opened["ts"])
    assert replies[0].startswith("joshcooper commented: ") and replies[1:] == ["Merged."]
    (status,) = [c for c in fake_github.comments.values() if MARKER in c["body"]]
    permalink = f"https://puppet.slack.com/archives/{CHANNEL_ID}/p{opened['ts'].replace('.', '')}"
    assert f"- Slack: [Slack thread]({permalink})" in status["body"]
