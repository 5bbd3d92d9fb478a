"""AWS KMS as a keyring for per-item data keys (``docs/format.md`` §5.3).

Lives in ``storage/`` because it needs boto3. The ingest station's role needs ``kms:Encrypt`` only
and investigators' ``kms:Decrypt``, so KMS policy, CloudTrail and key disabling give a second,
centrally revocable way to open evidence alongside the X25519 identity.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, NoReturn

import boto3  # type: ignore[import-untyped, unused-ignore]
import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]

from evidence.errors import (
    AccessDenied,
    ConfigError,
    IntegrityError,
    InvalidInput,
    StorageError,
    StorageUnavailable,
)
from evidence.keyring import Stanza

KMS_STANZA_TYPE = "aws-kms"
ENCRYPTION_CONTEXT = {"purpose": "evidence-pipeline/data-key/v1"}
"""§5.3: binds every blob to this use, so blobs other software made under the same key do not open."""

_DATA_KEY_SIZE = 32
_KEY_UUID = re.compile(r"^(mrk-)?[0-9a-f-]{32,36}$", re.IGNORECASE)

_CONFIG_CODES = frozenset(
    {"NotFoundException", "DisabledException", "KMSInvalidStateException", "InvalidKeyUsageException"}
)
_DENIED_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "403",  # an IAM refusal answered without a KMS error code (moto; some proxies)
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "IncompleteSignature",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestLimitExceeded",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
    }
)


class KmsKeyring:
    """Wraps data keys with one KMS key. ``key_id`` may be a key id, key ARN, alias or alias ARN;
    stanzas always record the key's ARN, as KMS reports it."""

    def __init__(self, key_id: str, *, client: Any = None) -> None:
        if not key_id:
            raise InvalidInput("a KMS key id, ARN or alias is required")
        self.key_id = key_id
        self._client = client
        # Known once KMS has told us (or key_id is itself a key ARN); lets unwrap skip foreign stanzas
        # without a network call.
        self._key_arn: str | None = key_id if _is_key_arn(key_id) else None

    @property
    def name(self) -> str:
        return f"aws-kms:{self._key_arn or self.key_id}"

    def wrap(self, data_key: bytes) -> Stanza:
        if len(data_key) != _DATA_KEY_SIZE:
            raise InvalidInput(f"data key must be {_DATA_KEY_SIZE} bytes, got {len(data_key)}")
        try:
            response = self._kms().encrypt(
                KeyId=self.key_id, Plaintext=data_key, EncryptionContext=ENCRYPTION_CONTEXT
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as err:
            _translate(err, self.key_id, "Encrypt")
        key_arn = str(response["KeyId"])
        self._key_arn = key_arn
        return {
            "type": KMS_STANZA_TYPE,
            "key_id": key_arn,
            "blob": base64.b64encode(response["CiphertextBlob"]).decode("ascii"),
        }

    def unwrap(self, stanza: Mapping[str, str]) -> bytes | None:
        if stanza.get("type") != KMS_STANZA_TYPE:
            return None
        if self._owns(stanza.get("key_id", "")) is False:
            return None
        blob = _blob(stanza)
        try:
            response = self._kms().decrypt(
                KeyId=self.key_id, CiphertextBlob=blob, EncryptionContext=ENCRYPTION_CONTEXT
            )
        except botocore.exceptions.ClientError as err:
            if _error_code(err) == "IncorrectKeyException":
                return None  # an alias we could not resolve locally names another key
            _translate(err, self.key_id, "Decrypt")
        except botocore.exceptions.BotoCoreError as err:
            _translate(err, self.key_id, "Decrypt")
        self._key_arn = str(response["KeyId"])
        data_key = bytes(response["Plaintext"])
        if len(data_key) != _DATA_KEY_SIZE:
            raise IntegrityError(
                f"KMS key {self._key_arn} opened a {len(data_key)}-byte value, not a data key: "
                "the stanza was not made by this software"
            )
        return data_key

    def _owns(self, stanza_key_arn: str) -> bool | None:
        """Whether a stanza's key ARN is this keyring's key; ``None`` when only KMS can say (alias)."""
        if self._key_arn is not None:
            return stanza_key_arn == self._key_arn
        if _KEY_UUID.match(self.key_id):
            return stanza_key_arn.endswith(f":key/{self.key_id}")
        return None

    def _kms(self) -> Any:
        if self._client is None:
            try:
                # boto3's default chain: AWS_PROFILE, AWS_ENDPOINT_URL(_KMS), instance roles
                self._client = boto3.client("kms")
            except botocore.exceptions.BotoCoreError as err:
                _translate(err, self.key_id, "connect")
        return self._client

    def __repr__(self) -> str:
        return f"KmsKeyring({self.key_id!r})"


def _is_key_arn(key_id: str) -> bool:
    return key_id.startswith("arn:") and ":key/" in key_id


def _blob(stanza: Mapping[str, str]) -> bytes:
    label = f"aws-kms stanza for key {stanza.get('key_id')}"
    value = stanza.get("blob")
    if not isinstance(value, str) or not value:
        raise IntegrityError(f"{label} has no 'blob' field")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"{label} has a 'blob' that is not valid base64") from None


def _error_code(err: botocore.exceptions.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _translate(err: Exception, key_id: str, action: str) -> NoReturn:
    """Map a botocore failure to our hierarchy (STYLE §13): nothing from botocore leaves storage/."""
    if isinstance(err, botocore.exceptions.ClientError):
        code = _error_code(err)
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = err.response.get("Error", {}).get("Message") or code
        if code in _DENIED_CODES:
            needed = "kms:Encrypt (ingest stations)" if action == "Encrypt" else "kms:Decrypt (investigators)"
            raise AccessDenied(
                f"KMS refused {action} with key {key_id}: {message}. This role needs {needed} on that key"
            ) from err
        if code in _CONFIG_CODES:
            raise ConfigError(
                f"KMS key {key_id} cannot be used ({code}: {message}); check kms_key_id in the settings "
                "and that the key is enabled"
            ) from err
        if code == "InvalidCiphertextException":
            raise IntegrityError(
                f"KMS could not open the wrapped data key for key {key_id}: the stanza was altered or "
                "was made for another purpose"
            ) from err
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            raise StorageUnavailable(f"KMS {action} failed for now ({code}); retry later") from err
        raise StorageError(f"KMS {action} with key {key_id} failed: {code}: {message}") from err
    if isinstance(err, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        raise ConfigError(
            f"no usable AWS credentials for KMS ({err}); set AWS_PROFILE or the instance role"
        ) from err
    if isinstance(err, botocore.exceptions.NoRegionError):
        raise ConfigError("no AWS region for KMS; set AWS_DEFAULT_REGION or the profile's region") from err
    if isinstance(err, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        raise StorageUnavailable(f"cannot reach KMS for {action}: {err}; retry later") from err
    raise StorageError(f"KMS {action} with key {key_id} failed: {err}") from err
