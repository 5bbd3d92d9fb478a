"""The investigators' portal: a front door over the use cases in ``flows/``, served by ``evidence serve``.

It is the one place that holds the vault identity key. People sign in (local account with TOTP, or
the force's OpenID Connect provider); every page that releases evidence verifies it first and records
the access, naming the person, how they signed in, the session, the client address and the purpose,
before any plaintext leaves (docs/access.md).
"""
