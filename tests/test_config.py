"""Settings from the environment: every problem named at once, secrets never shown."""

import base64

import pytest

from bot.config import ConfigError, Settings

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----"


def test_defaults_with_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.outputs == ("trello",)
    assert settings.stored_event_limit == 100
    assert settings.job_history_days == 30
    assert Settings.from_env({"JOB_HISTORY_DAYS": "7"}).job_history_days == 7
    with pytest.raises(ConfigError, match="JOB_HISTORY_DAYS must be a whole number ≥ 1"):
        Settings.from_env({"JOB_HISTORY_DAYS": "0"})
    assert settings.github_api_url == "https://api.github.com"
    assert settings.database_url is None and settings.redis_url is None


def test_old_services_secret_variable_and_rotation_list() -> None:
    settings = Settings.from_env(
        {"GITHUB_WEBHOOK_SECRET": "new1, new2", "GITHUB_X_HUB_SIGNATURE_SECRET": "old"}
    )
    assert settings.webhook_secrets == ("new1", "new2", "old")


def test_every_problem_is_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "PORT": "http",
                "STORED_EVENT_LIMIT": "-3",
                "GITHUB_EVENT_OUTPUTS": "trello,sl@ck",
                "ARCHIVE_CARD": "maybe",
                "TZ": "Mars/Olympus",
                "GITHUB_API_URL": "ftp://x",
            }
        )
    text = str(caught.value)
    for name in (
        "PORT",
        "STORED_EVENT_LIMIT",
        "GITHUB_EVENT_OUTPUTS",
        "ARCHIVE_CARD",
        "TZ",
        "GITHUB_API_URL",
    ):
        assert name in text
    assert len(caught.value.problems) == 6


def test_web_requirement_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET"):
        Settings.from_env({}).require("webhook_secret")


def test_repr_hides_secrets() -> None:
    settings = Settings.from_env(
        {
            "GITHUB_WEBHOOK_SECRET": "hush-hush",
            "ADMIN_TOKEN": "tok-tok-tok",
            "DATABASE_URL": "postgres://u:dbpass99@h/db",
            "TRELLO_USER_TOKEN": "trello-tok",
        }
    )
    text = repr(settings)
    for secret in ("hush-hush", "tok-tok-tok", "dbpass99", "trello-tok"):
        assert secret not in text
    assert "admin_token=<set>" in text
    assert {"hush-hush", "tok-tok-tok", "dbpass99", "trello-tok"} <= set(settings.secrets())


@pytest.mark.parametrize("form", ["pem", "escaped", "base64"])
def test_private_key_forms(form: str) -> None:
    value = {
        "pem": PEM,
        "escaped": PEM.replace("\n", "\\n"),
        "base64": base64.b64encode(PEM.encode()).decode(),
    }[form]
    assert Settings.from_env({"GITHUB_PRIVATE_KEY": value}).github_private_key == PEM


def test_private_key_from_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "app.pem"
    path.write_text(PEM + "\n")
    assert Settings.from_env({"GITHUB_PRIVATE_KEY_PATH": str(path)}).github_private_key == PEM
    with pytest.raises(ConfigError, match="GITHUB_PRIVATE_KEY_PATH"):
        Settings.from_env({"GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem")})


def test_garbage_private_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GITHUB_PRIVATE_KEY": "not-a-key-at-all"})
    assert "not-a-key-at-all" not in str(caught.value)
