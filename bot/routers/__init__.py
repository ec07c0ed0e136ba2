"""Every event family's router, combined once.

To add a reaction to an event, write a module with its own ``router`` and add it here.
Handlers read ``event.data``, a read-only Mapping (``bot.jsonvalues.JSONObject``), and only
plan jobs (``queue.enqueue``).
"""

from gidgethub import routing

from bot.routers import comments, installations, issues, pull_requests

router = routing.Router(
    pull_requests.router,
    issues.router,
    comments.router,
    installations.router,
)
