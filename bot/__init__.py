"""puppet-webhooks: GitHub App that mirrors activity into Trello and Jira."""
