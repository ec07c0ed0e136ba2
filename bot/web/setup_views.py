"""Pure HTML builders for the GitHub App setup pages; every value is escaped here."""

from __future__ import annotations

import json
import shlex
from html import escape
from typing import Any
from urllib.parse import quote

STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:2.5em auto;padding:0 1em;
color:#1f2328}h1{font-size:1.6em}code,pre,textarea{font:13px/1.4 ui-monospace,monospace}
code{background:#f3f3f3;padding:0 .3em}pre{background:#f6f8fa;padding:.8em;white-space:pre-wrap;
word-break:break-all}textarea{width:100%;height:14em;box-sizing:border-box}table{border-collapse:collapse}
td,th{text-align:left;padding:.2em 1em .2em 0;vertical-align:top}th{white-space:nowrap}
button{font-size:1.05em;padding:.6em 1.2em;background:#1f883d;color:#fff;border:0;
border-radius:6px;cursor:pointer}.note{background:#fff8c5;padding:.6em .9em;border-radius:6px}
.bad{background:#ffebe9;padding:.6em .9em;border-radius:6px}
button.plain{background:#f6f8fa;color:#1f2328;border:1px solid #d0d7de;font-size:1em;
padding:.3em .8em}"""

PERMISSION_NAMES = {
    "issues": "Issues",
    "pull_requests": "Pull requests",
    "metadata": "Metadata",
    "contents": "Contents",
}


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · puppet-webhooks</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def setup_page(
    *,
    action: str,
    manifest: dict[str, Any],
    org: str,
    configured_app_id: str,
    token: str,
) -> str:
    """The page shows what the manifest asks for, read from the manifest itself."""
    permissions = "".join(
        f"<tr><td>{escape(PERMISSION_NAMES.get(k, k))}</td><td>{escape(v)}</td></tr>"
        for k, v in manifest["default_permissions"].items()
    )
    events = ", ".join(f"<code>{escape(e)}</code>" for e in manifest["default_events"])
    name = manifest["name"]
    owner = f"the organisation <b>{escape(org)}</b>" if org else "your personal account"
    status = (
        f'<p class="note">A GitHub App is already configured (<code>GITHUB_APP_ID='
        f"{escape(configured_app_id)}</code>). Creating another one changes nothing here "
        "until you set its values.</p>"
        if configured_app_id
        else "<p>No GitHub App is configured yet (<code>GITHUB_APP_ID</code> is unset), so "
        "this page is open. Once it is set, only the admin token opens it.</p>"
    )
    keep_token = f'<input type="hidden" name="token" value="{escape(token)}">' if token else ""
    body = f"""<h1>Set up the GitHub App</h1>
{status}
<p>This creates a private GitHub App for {owner} that sends its webhooks here. GitHub shows
you the settings and lets you change the name before anything is created, then sends you
back to this service, which shows the App's id, private key and webhook secret <b>once</b>.</p>
<table>
<tr><th>Name</th><td>{escape(name)}</td></tr>
<tr><th>Webhook URL</th><td><code>{escape(manifest["hook_attributes"]["url"])}</code></td></tr>
<tr><th>Returns to</th><td><code>{escape(manifest["redirect_url"])}</code></td></tr>
<tr><th>Events</th><td>{events} (installation events are always sent)</td></tr>
</table>
<h2>Repository permissions</h2>
<table>{permissions}</table>
<form action="{escape(action)}" method="post">
<input type="hidden" name="manifest" value="{escape(json.dumps(manifest))}">
<p><button type="submit">Create GitHub App on GitHub</button></p>
</form>
<h2>Another owner or name?</h2>
<form action="/setup" method="get">{keep_token}
<p><label>Organisation <input name="org" value="{escape(org)}" placeholder="login"></label>
<label>App name <input name="name" value="{escape(name)}" maxlength="34"></label>
<button class="plain" type="submit">Update</button></p>
</form>
<p>Prefer to click through GitHub's forms yourself? The README's "Setting up the GitHub App"
lists the permissions and events to choose.</p>"""
    return _document("Set up the GitHub App", body)


def config_command(app: dict[str, Any], key_file: str) -> str:
    """The one line that configures this service on Heroku with the new App."""
    parts = ["heroku config:set", f"GITHUB_APP_ID={shlex.quote(str(app['id']))}"]
    if app.get("webhook_secret"):
        parts.append(f"GITHUB_WEBHOOK_SECRET={shlex.quote(str(app['webhook_secret']))}")
    parts.append(f'GITHUB_PRIVATE_KEY="$(cat {shlex.quote(key_file)})"')
    return " ".join(parts)


def _link(url: Any) -> str:
    text = str(url or "")
    if not text.startswith(("https://", "http://")):
        return escape(text)
    return f'<a href="{escape(text)}">{escape(text)}</a>'


def credentials_page(app: dict[str, Any]) -> str:
    slug = str(app.get("slug") or "github-app")
    key_file = f"{slug}.private-key.pem"
    pem = str(app["pem"])
    html_url = str(app.get("html_url") or "")
    install = _link(f"{html_url}/installations/new") if html_url.startswith("http") else ""
    webhook_secret = escape(str(app.get("webhook_secret") or ""))
    secret_row = (
        f"<tr><th>Webhook secret</th><td><code>{webhook_secret}</code></td></tr>"
        if webhook_secret
        else "<tr><th>Webhook secret</th><td>none: set one in the App's settings and in "
        "<code>GITHUB_WEBHOOK_SECRET</code></td></tr>"
    )
    owner = (app.get("owner") or {}).get("login", "")
    body = f"""<h1>GitHub App created</h1>
<p class="bad">This page is shown <b>once</b>: GitHub's code cannot be used again and
nothing here is stored or logged. Save the private key now.</p>
<table>
<tr><th>App</th><td>{escape(str(app.get("name") or slug))} (owner {escape(str(owner))})</td></tr>
<tr><th>App id</th><td><code>{escape(str(app["id"]))}</code></td></tr>
<tr><th>Slug</th><td><code>{escape(slug)}</code></td></tr>
<tr><th>Settings</th><td>{_link(html_url)}</td></tr>
{secret_row}
</table>
<h2>1. Save the private key</h2>
<p>As <code>{escape(key_file)}</code>
(<a download="{escape(key_file)}" href="data:application/x-pem-file;charset=utf-8,{
        escape(quote(pem))
    }">download</a>):</p>
<textarea readonly>{escape(pem)}</textarea>
<h2>2. Configure this service</h2>
<p>In a checkout with the Heroku remote (or add <code>--app NAME</code>):</p>
<pre>{escape(config_command(app, key_file))}</pre>
<p>Other hosts: set the same variables in the environment and restart.</p>
<h2>3. Install the App</h2>
<p>Install it on the repositories to mirror: {install or "from the App's settings page"}.</p>
<p>Then delete <code>{escape(key_file)}</code> from your disk, or keep it in a password
manager.</p>"""
    return _document("GitHub App created", body)


def error_page(message: str) -> str:
    body = f"""<h1>Setting up the GitHub App</h1>
<p class="bad">{escape(message)}</p>
<p><a href="/setup">Start again</a></p>"""
    return _document("Setup problem", body)
