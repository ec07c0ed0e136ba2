"""Outputs mirror GitHub items somewhere else; they all share one small interface.

To add an output (say, Slack): write ``bot/outputs/slack.py`` with a class implementing
``Output`` (and, if it talks to a new service, a client in ``bot/integrations/``), then
register it with one line in ``REGISTRY`` below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import ConfigError, Settings
from bot.logs import kv
from bot.outputs import jira, slack, trello
from bot.outputs.base import Output, Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    factory: Callable[[Services], Output]
    # Names of the variables an output needs but the settings lack (empty: ready).
    missing: Callable[[Settings], list[str]]


REGISTRY: dict[str, Registration] = {}


def register(
    name: str,
    factory: Callable[[Services], Output],
    missing: Callable[[Settings], list[str]] = lambda settings: [],
) -> None:
    REGISTRY[name] = Registration(factory, missing)


def check_names(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(
            [
                f"GITHUB_EVENT_OUTPUTS names unknown output(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(REGISTRY)) or 'none'}"
            ]
        )


def missing_settings(name: str, settings: Settings) -> list[str]:
    """The variables output ``name`` needs that ``settings`` lack: the one place that
    says what each output requires."""
    return REGISTRY[name].missing(settings)


def build_outputs(names: tuple[str, ...], services: Services) -> list[Output]:
    """The outputs GITHUB_EVENT_OUTPUTS names; an unconfigured one is skipped, loudly."""
    check_names(names)
    outputs = []
    for name in names:
        missing = missing_settings(name, services.settings)
        if missing and services.settings.outputs_explicit:
            raise ConfigError([f"{var} is not set: output {name} needs it" for var in missing])
        if missing:
            # Only the default output (GITHUB_EVENT_OUTPUTS unset) may be left unconfigured.
            log.warning(f"output {name} disabled", extra=kv(missing=",".join(missing)))
            continue
        outputs.append(REGISTRY[name].factory(services))
    return outputs


register("trello", trello.TrelloOutput, trello.missing_settings)
register("jira", jira.JiraOutput, jira.missing_settings)
register("slack", slack.SlackOutput, slack.missing_settings)


__all__ = [
    "REGISTRY",
    "Output",
    "Registration",
    "Services",
    "build_outputs",
    "check_names",
    "missing_settings",
    "register",
]
