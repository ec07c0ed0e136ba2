"""PostgreSQL: the pool and migrations, deliveries, jobs, item links, project mappings
and installations. Knows nothing of Redis or of the outputs."""
