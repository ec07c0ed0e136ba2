"""Outputs mirror GitHub items somewhere else; they all share one small interface.

To add an output (say, Slack): write ``bot/outputs/slack.py`` with a class implementing
``Output`` (and, if it talks to a new service, a client in ``bot/integrations/``), then
register it with one line in ``REGISTRY`` below.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.outputs.base import Comment, Contributor, Item, Link, Output, Services
from bot.outputs.jira import JiraOutput

REGISTRY: dict[str, Callable[[Services], Output]] = {}


def register(name: str, factory: Callable[[Services], Output]) -> None:
    REGISTRY[name] = factory


def build_outputs(names: tuple[str, ...], services: Services) -> list[Output]:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown output(s): {', '.join(unknown)}")
    return [REGISTRY[name](services) for name in names]


register("jira", JiraOutput)


__all__ = [
    "REGISTRY",
    "Comment",
    "Contributor",
    "Item",
    "Link",
    "Output",
    "Services",
    "build_outputs",
    "register",
]
