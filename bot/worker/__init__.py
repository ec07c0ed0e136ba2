"""The worker side: job bodies, how each job runs (order, retries, records), the sweep,
the status comment and the daily summary. ``worker.py`` at the top holds arq's settings."""
