"""The use cases as plain functions (ingest, retrieval, export, linking, holds, retention, fixity) and the
Prefect flows over them; the front doors (`cli/`, `web/`) call these, never `storage` internals."""
