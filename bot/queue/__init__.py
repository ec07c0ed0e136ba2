"""arq's queue in Redis: the connection, and jobs put into it in one round trip."""
