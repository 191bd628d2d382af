"""Care teams: the HTTP API and dashboard, teams and tokens, alert delivery and erasure."""
