"""What the settings alone tell: the webhook secret, the admin token, the outputs."""

from __future__ import annotations

from bot.config import Settings
from bot.doctor.findings import Finding, ok, problem, skipped
from bot.outputs import REGISTRY, missing_settings


def check_configuration(settings: Settings) -> list[Finding]:
    findings = [_webhook_secret(settings), _admin_token(settings)]
    return findings + check_outputs(settings)


def _webhook_secret(settings: Settings) -> Finding:
    if not settings.webhook_secrets:
        return problem(
            "webhook secret",
            "GITHUB_WEBHOOK_SECRET is not set: the web process will not start",
            "set it to the App's webhook secret (a new one: `python -m bot secret`, then "
            "the same in the App's settings)",
        )
    count = len(settings.webhook_secrets)
    return ok("webhook secret", "set" + (f" ({count}, rotating)" if count > 1 else ""))


def _admin_token(settings: Settings) -> Finding:
    if not settings.admin_token:
        return skipped("admin token", "ADMIN_TOKEN is not set: /events and details are off")
    return ok("admin token", "set")


def check_outputs(settings: Settings) -> list[Finding]:
    """Each output GITHUB_EVENT_OUTPUTS names is known and has its variables."""
    if not settings.outputs:
        return [
            problem(
                "outputs",
                "GITHUB_EVENT_OUTPUTS names no output: nothing is mirrored",
                "set GITHUB_EVENT_OUTPUTS to trello, jira or both",
            )
        ]
    findings = []
    for name in settings.outputs:
        if name not in REGISTRY:
            findings.append(
                problem(
                    f"output {name}",
                    "GITHUB_EVENT_OUTPUTS names an output that does not exist",
                    f"use the known ones: {', '.join(sorted(REGISTRY))}",
                )
            )
            continue
        missing = missing_settings(name, settings)
        if missing:
            findings.append(
                problem(
                    f"output {name}",
                    f"{', '.join(missing)} not set: the {name} output is off",
                    f"set {'them' if len(missing) > 1 else 'it'} (README: Configuration), or "
                    f"leave {name} out of GITHUB_EVENT_OUTPUTS",
                )
            )
        else:
            findings.append(ok(f"output {name}", "configured"))
    return findings


def ready(settings: Settings, name: str) -> bool:
    """Whether output ``name`` is on and has what it needs (so its service is checked)."""
    return name in settings.outputs and name in REGISTRY and not missing_settings(name, settings)
