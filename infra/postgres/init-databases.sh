#!/usr/bin/env bash
# First start of the postgres container only (docker-entrypoint-initdb.d): one role and one database
# each for Prefect's server, the evidence catalog and the portal's accounts. Separate roles so the
# catalog's credentials (held by every worker) cannot touch Prefect's tables or people's password
# hashes, nor Prefect's the catalog's.
#
# Passwords arrive as psql variables, never spliced into SQL text: psql quotes :'name' as a literal.
set -euo pipefail

: "${PREFECT_DB_PASSWORD:?set PREFECT_DB_PASSWORD in infra/.env}"
: "${CATALOG_DB_PASSWORD:?set CATALOG_DB_PASSWORD in infra/.env}"
: "${ACCOUNTS_DB_PASSWORD:?set ACCOUNTS_DB_PASSWORD in infra/.env}"

psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set prefect_password="$PREFECT_DB_PASSWORD" \
    --set catalog_password="$CATALOG_DB_PASSWORD" \
    --set accounts_password="$ACCOUNTS_DB_PASSWORD" <<'SQL'
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
REVOKE ALL ON DATABASE prefect FROM PUBLIC;

CREATE ROLE catalog LOGIN PASSWORD :'catalog_password';
CREATE DATABASE catalog OWNER catalog;
REVOKE ALL ON DATABASE catalog FROM PUBLIC;

CREATE ROLE accounts LOGIN PASSWORD :'accounts_password';
CREATE DATABASE accounts OWNER accounts;
REVOKE ALL ON DATABASE accounts FROM PUBLIC;
SQL
