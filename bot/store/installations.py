"""Which GitHub App installations exist and which repositories each covers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg


async def record_installation(
    db: asyncpg.Pool, installation_id: int, data: Mapping[str, Any]
) -> str:
    """Apply an installation or installation_repositories payload."""
    installation = data["installation"]
    action = data.get("action") or ""
    status = {"deleted": "deleted", "suspend": "suspended"}.get(action, "active")
    account = (installation.get("account") or {}).get("login", "")
    added = [r["full_name"] for r in data.get("repositories") or []]
    added += [r["full_name"] for r in data.get("repositories_added") or []]
    removed = [r["full_name"] for r in data.get("repositories_removed") or []]
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO installations (id, account, target_type, repository_selection, status)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (id) DO UPDATE SET
                account = CASE WHEN EXCLUDED.account = '' THEN installations.account
                               ELSE EXCLUDED.account END,
                target_type = coalesce(EXCLUDED.target_type, installations.target_type),
                repository_selection = coalesce(EXCLUDED.repository_selection,
                                                installations.repository_selection),
                status = EXCLUDED.status, updated_at = now()
            """,
            installation_id,
            account,
            installation.get("target_type"),
            installation.get("repository_selection") or data.get("repository_selection"),
            status,
        )
        await conn.execute(
            "INSERT INTO installation_repositories (installation_id, repository)"
            " SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
            installation_id,
            added,
        )
        await conn.execute(
            "DELETE FROM installation_repositories"
            " WHERE installation_id = $1 AND repository = ANY($2::text[])",
            installation_id,
            removed,
        )
    return f"installation {installation_id} {status}"
