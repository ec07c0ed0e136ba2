"""Slack: one message per pull request or issue; what happens to it later, in its thread."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.integrations.slack import SlackClient
from bot.model import Comment, Item, Link
from bot.outputs.base import Services
from bot.store import links

NAME = "slack"
LABEL = "Slack thread"
OPENED = "{kind} <{url}|{repository}#{number}> by {author}: {title}"
CLOSED = {False: "Closed.", True: "Merged."}
REOPENED = "Reopened."
COMMENTED = "{author} commented: {body}"


@dataclass(frozen=True)
class SlackConfig:
    token: str
    channel: str
    api_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig:
        env = settings.environ
        return cls(
            token=env.get("SLACK_TOKEN", ""),
            channel=env.get("SLACK_CHANNEL", ""),
            api_url=env.get("SLACK_API_URL", "https://slack.com/api"),
        )


def missing_settings(settings: Settings) -> list[str]:
    config = SlackConfig.from_settings(settings)
    return [
        name
        for name, value in [("SLACK_TOKEN", config.token), ("SLACK_CHANNEL", config.channel)]
        if not value
    ]


class SlackOutput:
    name = NAME
    makes_when_closed = True

    def __init__(self, services: Services) -> None:
        self.config = SlackConfig.from_settings(services.settings)
        self.client = SlackClient(services.http, self.config.token, self.config.api_url)
        self.pool = services.pool

    async def sync(self, item: Item) -> Link | None:
        known = await links.find(self.pool, NAME, item)
        if known is not None:
            return Link(NAME, known["external_id"], known["external_url"], LABEL)
        kind = "Pull request" if item.kind == "pull_request" else "Issue"
        text = OPENED.format(
            kind=kind,
            url=item.html_url,
            repository=item.repository,
            number=item.number,
            author=item.author,
            title=item.title,
        )
        posted = await self.client.post_message(self.config.channel, text)
        url = await self.client.permalink(posted["channel"], posted["ts"])
        await links.save(self.pool, NAME, item, posted["ts"], url)
        return Link(NAME, posted["ts"], url, LABEL)

    async def close(self, item: Item) -> Link | None:
        return await self._reply(item, CLOSED[item.merged])

    async def reopen(self, item: Item) -> Link | None:
        return await self._reply(item, REOPENED)

    async def comment(self, item: Item, comment: Comment) -> Link | None:
        if await links.find(self.pool, NAME, item) is None:
            return None  # only items with a thread get their comments copied
        return await self._reply(item, COMMENTED.format(author=comment.author, body=comment.body))

    async def edit(self, item: Item) -> Link | None:
        return await self._thread(item)  # the first message stays as it was posted

    async def relabel(self, item: Item) -> Link | None:
        return await self._thread(item)  # labels are not shown in Slack

    async def _thread(self, item: Item) -> Link | None:
        known = await links.find(self.pool, NAME, item)
        return Link(NAME, known["external_id"], known["external_url"], LABEL) if known else None

    async def _reply(self, item: Item, text: str) -> Link | None:
        thread = await self.sync(item)
        assert thread is not None
        await self.client.post_message(self.config.channel, text, thread_ts=thread.external_id)
        return thread
