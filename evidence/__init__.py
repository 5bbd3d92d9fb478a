"""The evidence domain: formats, crypto, metadata, policy. Plain Python; no Prefect, no boto3."""
