"""app.json (the Heroku button) and what Heroku's Python buildpack reads."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests" / "data" / "app-json.schema.json").read_text())
APP = json.loads((ROOT / "app.json").read_text())

# Heroku sets these itself: PORT for every web dyno, DYNO (its name) for every dyno, the
# rest by attaching the heroku-postgresql and heroku-redis add-ons. Declaring them in
# app.json would offer to override what Heroku owns, so they are the only variables it
# leaves out.
PLATFORM_VARIABLES = {"PORT", "DATABASE_URL", "REDIS_URL", "REDIS_TLS_URL", "DYNO"}


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every variable asked for, however it is asked."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_settings_read() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    return env.asked


def test_app_json_follows_herokus_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(APP, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    "mistake",
    [
        lambda a: a.update(unknown_key=1),
        lambda a: a["env"]["ADMIN_TOKEN"].update(default="x"),
        lambda a: a["env"]["ADMIN_TOKEN"].update(generator="random"),
        lambda a: a["formation"]["web"].update(quantity="1"),
        lambda a: a["addons"].append({"as": "NO_PLAN"}),
        lambda a: a["buildpacks"].append("heroku/python"),
    ],
)
def test_the_schema_catches_mistakes(mistake: Any) -> None:
    broken = copy.deepcopy(APP)
    mistake(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_every_variable_the_settings_read_is_described() -> None:
    read = variables_settings_read()
    assert "GITHUB_WEBHOOK_SECRET" in read and "JIRA_TOKEN" in read  # the recorder works
    declared = set(APP["env"])
    assert read - PLATFORM_VARIABLES - declared == set(), "add these to app.json env"
    assert declared - read == set(), "app.json describes variables nothing reads"
    assert PLATFORM_VARIABLES <= read and not PLATFORM_VARIABLES & declared
    for name, spec in APP["env"].items():
        assert isinstance(spec, dict) and spec.get("description"), name
        assert isinstance(spec.get("required"), bool), f"{name}: Heroku defaults to required"


def test_only_the_webhook_secret_is_required_and_secrets_are_generated() -> None:
    env = APP["env"]
    assert [n for n, spec in env.items() if spec["required"]] == ["GITHUB_WEBHOOK_SECRET"]
    assert env["GITHUB_WEBHOOK_SECRET"]["generator"] == "secret"
    assert env["ADMIN_TOKEN"]["generator"] == "secret"
    # The App is created by /setup after the first deploy, so its values cannot be required.
    assert not env["GITHUB_APP_ID"]["required"] and not env["GITHUB_PRIVATE_KEY"]["required"]
    # Pre-filled values must be ones the settings accept.
    values = {n: spec["value"] for n, spec in env.items() if "value" in spec}
    Settings.from_env(values)


def test_add_ons_formation_and_buildpack() -> None:
    assert APP["repository"] == "https://github.com/puppetlabs/puppet-webhooks"
    plans = [a if isinstance(a, str) else a["plan"] for a in APP["addons"]]
    assert {p.split(":")[0] for p in plans} == {"heroku-postgresql", "heroku-redis"}
    assert APP["buildpacks"] == [{"url": "heroku/python"}]
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert procfile == {
        "release": "python -m bot migrate",
        "web": "python -m bot web",
        "worker": "python -m bot worker",
    }
    assert set(APP["formation"]) == {"web", "worker"}
    for process in APP["formation"].values():
        assert process["quantity"] == 1 and process["size"] in ("basic", "eco")


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.txt as {name: (version, hashes)}."""
    text = (ROOT / "requirements.txt").read_text().replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement, *options = line.split(" --hash=")
            name, version = requirement.split(";")[0].strip().split("==")
            pins[canonicalize_name(name)] = (version, [o.strip() for o in options])
    return pins


def test_heroku_installs_exact_versions_with_their_hashes() -> None:
    """requirements.txt (scripts/lock) pins every runtime dependency and what they need,
    each with its files' hashes, and nothing of the embedded servers or the tests."""
    pins = locked()
    assert pins and all(
        re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) and hashes for v, hashes in pins.values()
    )
    assert all(h.startswith("sha256:") for _, hashes in pins.values() for h in hashes)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in map(Requirement, project["dependencies"]):
        version, _ = pins[canonicalize_name(dependency.name)]
        assert dependency.specifier.contains(version), f"{dependency}: locked {version}"
    extras = [Requirement(d) for e in project["optional-dependencies"].values() for d in e]
    assert not {canonicalize_name(r.name) for r in extras} & set(pins)
    assert "scripts/lock" in (ROOT / "requirements.txt").read_text().split("\n", 3)[1]
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.1[123]", version)
    assert project["requires-python"] == ">=3.11"
