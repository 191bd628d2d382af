#!/bin/sh
# docker-compose's PostgreSQL, on its first start: phq-monitor's roles (README, security). `phq` owns
# the database and runs the migrations (no superuser); each process role gets migration 0004's grants.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner="$PHQ_OWNER_DB_PASSWORD" -v api="$PHQ_API_DB_PASSWORD" \
  -v worker="$PHQ_WORKER_DB_PASSWORD" -v notify="$PHQ_NOTIFY_DB_PASSWORD" <<'SQL'
CREATE ROLE phq LOGIN PASSWORD :'owner';
CREATE ROLE phq_api LOGIN PASSWORD :'api';
CREATE ROLE phq_worker LOGIN PASSWORD :'worker';
CREATE ROLE phq_notify LOGIN PASSWORD :'notify';
ALTER DATABASE phq OWNER TO phq;
ALTER SCHEMA public OWNER TO phq;
SQL
