"""The web process: verify a delivery, store it with the jobs its routers plan, answer;
also /events, /healthz, the home page and the GitHub App setup pages."""
