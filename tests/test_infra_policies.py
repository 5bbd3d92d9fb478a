"""The least-privilege policies in infra/policies/ (docs/deployment.md, "Roles and credentials").

Three layers of evidence, each saying what it can and cannot show:

1. **The documents** are parsed and evaluated by a small IAM evaluator below (Allow/Deny, wildcards in
   Action and Resource, Principal, the condition operators the documents use; explicit Deny wins). It
   answers the issue's questions per role: who may delete, bypass governance, hold, read content,
   decrypt. The portable documents are also checked against MinIO's policy rules, because
   infra/compose.yaml loads them into MinIO. The Ceph RGW bucket policy is evaluated as RGW 16 does
   (an object's writer owns it, the bucket's owner holds the rest, where the policy is silent) and
   compared with the AWS documents, role by role; tests/test_rgw_least_privilege.py runs it on RGW.
2. **The real code paths**: an ingest, an investigator's reads and a storage admin's retention work
   and disposal run against moto while every S3 and KMS call is recorded; each call is turned into the
   IAM request(s) it needs (HeadObject is s3:GetObject and, for a missing key, s3:ListBucket; a put
   with lock headers is also s3:PutObjectRetention, as MinIO checks and as assumed for AWS; ...) and
   must be allowed for the role that made it, while the other roles are refused the calls that are not
   theirs.
3. **moto's own enforcement** (IAM users with these policies, real requests refused with
   AccessDenied). moto 5.2.5 enforces the Action and Resource of identity policies, and nothing else
   here: it treats every Condition as met (shown below), applies bucket policies only to object requests
   with principals and conditions ignored, does not evaluate KMS key policies, authorises
   PutObjectRetention and PutObjectLegalHold as s3:PutObject, never checks
   s3:BypassGovernanceRetention, and authorises a HEAD of a version as s3:GetObject. So the moto tests
   load only the identity policies' unconditional statements, and everything else is left to (1) and (2).

Both (2) and (3) run moto as ``tests.test_s3_station_reads.moto_answering_like_s3`` patches it: moto
5.2.5 has no GetObjectRetention, authorises GET ?retention and ?legal-hold as s3:GetObject, and leaves
the checksum out of its answer to CompleteMultipartUpload; S3 does none of that, and the station's
write path depends on all three to verify its uploads without reading them (docs/deployment.md §4.2).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from evidence import layout
from evidence.errors import AccessDenied, EvidenceError
from evidence.ids import load_id_key
from evidence.keyring import Keyring, X25519Recipient
from evidence.settings import Settings
from evidence.signing import SIGNING_KEY_FILE, SigningKey, generate_signing_key
from flows.journal import IngestJournal
from flows.keys import init_keys
from storage import lifecycle
from storage.kms import ENCRYPTION_CONTEXT, KmsKeyring
from storage.s3 import S3Store
from storage.vault import ID_KEY_FILE, IDENTITY_FILE, RECIPIENT_FILE, Vault
from tests.factories import make_jpeg, random_file
from tests.station import Station
from tests.test_s3_station_reads import moto_answering_like_s3

POLICIES = Path(__file__).resolve().parent.parent / "infra" / "policies"
BUCKET = "evidence-vault"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
ACCOUNT = "111122223333"
KEY_ARN = f"arn:aws:kms:eu-west-2:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MiB = 1024 * 1024
REGION = "eu-west-2"

ROLE_ARNS = {
    "station": f"arn:aws:iam::{ACCOUNT}:role/evidence-ingest-station",
    "investigator": f"arn:aws:iam::{ACCOUNT}:role/evidence-investigator",
    "admin": f"arn:aws:iam::{ACCOUNT}:role/evidence-storage-admin",
    "break-glass": f"arn:aws:iam::{ACCOUNT}:role/evidence-break-glass",
}
IDENTITY_POLICIES = {
    "station": ("ingest-station.json",),
    "investigator": ("investigator.json",),
    "admin": ("storage-admin.json", "storage-admin-aws.json"),
    "break-glass": (),
}
PORTABLE = ("ingest-station.json", "investigator.json", "storage-admin.json")
"""Identity policies infra/compose.yaml loads into MinIO as well as attaching on AWS."""
AWS_ONLY = ("storage-admin-aws.json", "bucket-policy.json", "kms-key-policy.json")
ROLES = ("station", "investigator", "admin")


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((POLICIES / name).read_text())
    return doc


def statements(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = doc["Statement"]
    return list(found) if isinstance(found, list) else [found]


# -- a small IAM evaluator ------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)
    why: str = ""
    """The code path that makes this request, for failure messages."""


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def glob(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda actual, expected: actual == expected,
    "StringLike": lambda actual, expected: glob(expected, actual),
    "ArnEquals": lambda actual, expected: actual == expected,
    "ArnLike": lambda actual, expected: glob(expected, actual),
    "NumericEquals": lambda actual, expected: float(actual) == float(expected),
    "NumericGreaterThan": lambda actual, expected: float(actual) > float(expected),
    "NumericGreaterThanEquals": lambda actual, expected: float(actual) >= float(expected),
    "NumericLessThan": lambda actual, expected: float(actual) < float(expected),
    "NumericLessThanEquals": lambda actual, expected: float(actual) <= float(expected),
    "Bool": lambda actual, expected: actual.lower() == str(expected).lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
    "NumericNotEquals": "NumericEquals",
}


def condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, str]) -> bool:
    values = [str(v) for v in _listed(expected)]
    if operator == "Null":
        return (key not in context) == (values[0].lower() == "true")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in _OPERATORS and base not in _NEGATED:
        raise AssertionError(f"the test evaluator does not know the condition operator {operator}")
    if key not in context:
        # IAM: an absent key fails a condition, except with ...IfExists, and except that a negated
        # operator (StringNotEquals, ArnNotEquals, ...) is then true
        return if_exists or base in _NEGATED
    if base in _NEGATED:
        return not any(_OPERATORS[_NEGATED[base]](context[key], v) for v in values)
    return any(_OPERATORS[base](context[key], v) for v in values)


def statement_applies(statement: Mapping[str, Any], request: Request, principal: str) -> bool:
    if "Action" in statement:
        action_ok = any(glob(a, request.action, case_sensitive=False) for a in _listed(statement["Action"]))
    else:
        action_ok = not any(
            glob(a, request.action, case_sensitive=False) for a in _listed(statement["NotAction"])
        )
    if not action_ok:
        return False
    if "Resource" in statement:
        resource_ok = any(glob(r, request.resource) for r in _listed(statement["Resource"]))
    else:
        resource_ok = not any(glob(r, request.resource) for r in _listed(statement["NotResource"]))
    if not resource_ok:
        return False
    if "Principal" in statement:
        named = statement["Principal"]
        principals = ["*"] if named == "*" else _listed(named["AWS"])
        if "*" not in principals and principal not in principals:
            return False
    if "NotPrincipal" in statement and principal in _listed(statement["NotPrincipal"]["AWS"]):
        return False
    context = {"aws:PrincipalArn": principal, **request.context}
    return all(
        condition_holds(operator, key, expected, context)
        for operator, tests in statement.get("Condition", {}).items()
        for key, expected in tests.items()
    )


def decide(documents: Sequence[Mapping[str, Any]], request: Request, principal: str) -> str:
    """``allow``, ``deny`` (an explicit Deny matched) or ``implicit-deny``, over all documents at once
    (an identity policy and a resource policy of the same account are evaluated together)."""
    allowed = False
    for document in documents:
        for statement in statements(document):
            if statement_applies(statement, request, principal):
                if statement["Effect"] == "Deny":
                    return "deny"
                allowed = True
    return "allow" if allowed else "implicit-deny"


def s3_documents(role: str) -> list[dict[str, Any]]:
    return [load(name) for name in IDENTITY_POLICIES[role]] + [load("bucket-policy.json")]


def s3_decision(role: str, request: Request) -> str:
    secure = {"aws:SecureTransport": "true"} | dict(request.context)
    full = Request(request.action, request.resource, secure, request.why)
    return decide(s3_documents(role), full, ROLE_ARNS[role])


def kms_decision(role: str, request: Request) -> str:
    # The key policy names every principal itself and does not delegate to the account, so IAM
    # identity policies cannot add KMS rights: the key policy alone decides.
    return decide([load("kms-key-policy.json")], request, ROLE_ARNS[role])


def obj(key: str) -> str:
    return f"{BUCKET_ARN}/{key}"


@dataclass(frozen=True)
class Call:
    role: str
    service: str
    operation: str
    params: Mapping[str, Any]


LOCKED_PREFIXES = ("objects/", "items/", "custody/")
"""Keys written with retention; a HEAD of one must see its lock (the lock headers need the lock reads)."""


def remaining_days(until: datetime, at: datetime) -> str:
    return str(math.ceil((until - at).total_seconds() / 86400))


def iam_requests(call: Call, at: datetime) -> list[Request]:
    """What AWS authorises for one recorded call (Amazon S3 User Guide, "Required permissions for
    Amazon S3 API operations"; AWS KMS, "Permissions reference")."""
    p = call.params
    why = f"{call.role}: {call.operation} {p.get('Key', p.get('Prefix', ''))}"
    if call.service == "kms":
        context = {f"kms:EncryptionContext:{k}": v for k, v in (p.get("EncryptionContext") or {}).items()}
        return [Request(f"kms:{call.operation}", KEY_ARN, context, why)]
    bucket = f"arn:aws:s3:::{p['Bucket']}"
    resource = f"{bucket}/{p['Key']}" if "Key" in p else bucket
    read = "s3:GetObjectVersion" if p.get("VersionId") else "s3:GetObject"
    lock: dict[str, str] = {}
    if "ObjectLockMode" in p:
        lock["s3:object-lock-mode"] = p["ObjectLockMode"]
        lock["s3:object-lock-remaining-retention-days"] = remaining_days(p["ObjectLockRetainUntilDate"], at)
    if "Retention" in p:
        lock["s3:object-lock-mode"] = p["Retention"]["Mode"]
        lock["s3:object-lock-remaining-retention-days"] = remaining_days(
            p["Retention"]["RetainUntilDate"], at
        )
    if_none_match = {"s3:if-none-match": p["IfNoneMatch"]} if "IfNoneMatch" in p else {}
    prefix = {"s3:prefix": p["Prefix"]} if "Prefix" in p else {}
    bypass = (
        [Request("s3:BypassGovernanceRetention", resource, {}, why)]
        if p.get("BypassGovernanceRetention")
        else []
    )

    def one(action: str, context: Mapping[str, str] | None = None) -> list[Request]:
        return [Request(action, resource, context or {}, why)]

    match call.operation:
        case "HeadObject":
            # the code HEADs keys that may not exist (has_item, create-once checks): without
            # s3:ListBucket, S3 answers those 403 instead of 404
            missing_is_404 = [Request("s3:ListBucket", bucket, {}, why)]
            needs_lock_state = p["Key"].startswith(LOCKED_PREFIXES)
            return (
                one(read)
                + missing_is_404
                + (one("s3:GetObjectRetention") + one("s3:GetObjectLegalHold") if needs_lock_state else [])
            )
        case "GetObject":
            return one(read)
        case "GetObjectRetention" | "GetObjectLegalHold":
            # their own actions, for a version too; no access to the object's bytes or metadata
            return one(f"s3:{call.operation}")
        case "PutObject" | "CreateMultipartUpload":
            return one("s3:PutObject", lock | if_none_match) + (
                one("s3:PutObjectRetention", lock) if lock else []
            )
        case "UploadPart":
            return one("s3:PutObject")
        case "CompleteMultipartUpload":
            return one("s3:PutObject", if_none_match)
        case "AbortMultipartUpload":
            return one("s3:AbortMultipartUpload")
        case "PutObjectRetention":
            return one("s3:PutObjectRetention", lock) + bypass
        case "PutObjectLegalHold":
            return one("s3:PutObjectLegalHold", {"s3:object-lock-legal-hold": p["LegalHold"]["Status"]})
        case "DeleteObject":
            return one("s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject") + bypass
        case "ListObjectsV2":
            return one("s3:ListBucket", prefix)
        case "ListObjectVersions":
            return one("s3:ListBucketVersions", prefix)
        case "ListMultipartUploads":
            return one("s3:ListBucketMultipartUploads", prefix)
        case "HeadBucket":
            return one("s3:ListBucket")
        case "GetObjectLockConfiguration":
            return one("s3:GetBucketObjectLockConfiguration")
        case "PutObjectLockConfiguration":
            return one("s3:PutBucketObjectLockConfiguration")
        case "PutBucketLifecycleConfiguration":
            return one("s3:PutLifecycleConfiguration")
        case "PutBucketPolicy":
            return one("s3:PutBucketPolicy")
        case "GetPublicAccessBlock" | "PutPublicAccessBlock":
            return one(f"s3:{call.operation.replace('PublicAccessBlock', 'BucketPublicAccessBlock')}")
        case "GetBucketTagging" | "PutBucketTagging":
            return one(f"s3:{call.operation}")
        case "DeleteBucketTagging":
            return one("s3:PutBucketTagging")
        case "GetBucketVersioning" | "PutBucketVersioning" | "CreateBucket":
            return one(f"s3:{call.operation}")
    raise AssertionError(f"no IAM mapping for {call.service}:{call.operation}: add it to iam_requests")


CONTENT_KEY = "objects/3f/3f2a9c0d1b4e5f60718293a4b5c6d7e8"
MANIFEST_KEY = "items/ev-xly67bnneyk23rd5okugjvhg7s/manifest.json"
CUSTODY_KEY = "custody/ev-xly67bnneyk23rd5okugjvhg7s/0000000001.json"
CONTENT, MANIFEST, CUSTODY = obj(CONTENT_KEY), obj(MANIFEST_KEY), obj(CUSTODY_KEY)
PURPOSE = {"kms:EncryptionContext:purpose": ENCRYPTION_CONTEXT["purpose"]}


def lock(days: int, mode: str = "GOVERNANCE") -> dict[str, Any]:
    """A put's lock headers, as storage/s3.py sends them."""
    return {"ObjectLockMode": mode, "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=days)}


def retention(days: int, mode: str = "GOVERNANCE") -> dict[str, Any]:
    return {"Retention": {"Mode": mode, "RetainUntilDate": datetime.now(UTC) + timedelta(days=days)}}


def may(role: str, operation: str, key: str | None = None, *, on: str = "aws", **params: Any) -> bool:
    """Whether ``role`` may make this S3 call: every IAM request it needs is allowed. ``on="aws"``:
    the identity policies and the bucket policy; ``on="minio"``: the portable identity policies alone
    (MinIO applies bucket policies to anonymous requests only)."""
    call = Call(role, "s3", operation, {"Bucket": BUCKET, **({"Key": key} if key else {}), **params})
    if on == "aws":
        return all(s3_decision(role, r) == "allow" for r in iam_requests(call, datetime.now(UTC)))
    documents = [load(name) for name in IDENTITY_POLICIES[role] if name in PORTABLE]
    return all(
        decide(documents, r, ROLE_ARNS[role]) == "allow" for r in iam_requests(call, datetime.now(UTC))
    )


def everywhere(role: str, operation: str, key: str | None = None, **params: Any) -> bool:
    """Allowed on AWS and on MinIO alike; ``False`` when refused on both; a failure when they differ
    (the difference is then a test of its own, naming the protection only AWS has)."""
    on_aws, on_minio = may(role, operation, key, **params), may(role, operation, key, on="minio", **params)
    assert on_aws == on_minio, f"{role} {operation} {key}: AWS says {on_aws}, MinIO {on_minio}"
    return on_aws


# -- 1. the documents -----------------------------------------------------------------------------


def test_evaluator_follows_iam_rules() -> None:
    allow_all = {"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": f"{BUCKET_ARN}/*"}]}
    deny_items = {"Statement": {"Effect": "Deny", "Action": "s3:GetObject", "Resource": obj("items/*")}}
    anyone = "arn:aws:iam::1:role/x"
    assert decide([allow_all], Request("S3:getobject", CONTENT), anyone) == "allow"  # actions ignore case
    assert decide([allow_all], Request("s3:PutObject", CONTENT), anyone) == "implicit-deny"
    assert decide([allow_all, deny_items], Request("s3:GetObject", MANIFEST), anyone) == "deny"
    assert decide([allow_all], Request("s3:GetObject", "arn:aws:s3:::other/x"), anyone) == "implicit-deny"
    assert not glob("items/*", "ITEMS/x") and glob("a?c", "abc") and not glob("a.c", "abc")
    assert condition_holds("ArnNotEquals", "aws:PrincipalArn", anyone, {}) is True
    assert condition_holds("StringEquals", "s3:object-lock-mode", "COMPLIANCE", {}) is False
    assert condition_holds("StringEqualsIfExists", "s3:object-lock-mode", "COMPLIANCE", {}) is True
    assert condition_holds("Null", "s3:if-none-match", "true", {}) is True
    assert condition_holds("Null", "s3:if-none-match", "true", {"s3:if-none-match": "*"}) is False
    with pytest.raises(AssertionError, match="does not know"):
        condition_holds("DateGreaterThan", "aws:CurrentTime", "2020-01-01", {"aws:CurrentTime": "x"})
    with pytest.raises(AssertionError, match="no IAM mapping"):
        iam_requests(Call("station", "s3", "SelectObjectContent", {"Bucket": BUCKET}), datetime.now(UTC))


def test_documents_are_well_formed() -> None:
    for name in PORTABLE + AWS_ONLY:
        doc = load(name)
        assert doc["Version"] == "2012-10-17", name
        sids = [s["Sid"] for s in statements(doc)]
        assert len(sids) == len(set(sids)) and all(sids), f"{name}: every statement needs its own Sid"
        for statement in statements(doc):
            assert statement["Effect"] in ("Allow", "Deny"), (name, statement["Sid"])
            is_resource_policy = name in ("bucket-policy.json", "kms-key-policy.json")
            assert ("Principal" in statement) == is_resource_policy, (name, statement["Sid"])
            for action in _listed(statement["Action"]):
                service = "kms" if name == "kms-key-policy.json" else "s3"
                assert action.startswith(f"{service}:"), (name, action)
            for resource in _listed(statement["Resource"]):
                if name == "kms-key-policy.json":
                    assert resource == "*", "a key policy's Resource is the key itself"
                else:
                    assert resource == BUCKET_ARN or resource.startswith(f"{BUCKET_ARN}/"), (name, resource)


def test_station_cannot_delete_bypass_hold_or_decrypt() -> None:
    for key in (CONTENT_KEY, MANIFEST_KEY, CUSTODY_KEY):
        assert not everywhere("station", "DeleteObject", key, VersionId="v1"), key
        assert not everywhere("station", "DeleteObject", key), key  # a delete marker
        assert not everywhere("station", "DeleteObject", key, VersionId="v1", BypassGovernanceRetention=True)
        assert not everywhere(
            "station",
            "PutObjectRetention",
            key,
            VersionId="v1",
            BypassGovernanceRetention=True,
            **retention(1),
        )
        for status in ("ON", "OFF"):
            assert not everywhere(
                "station", "PutObjectLegalHold", key, VersionId="v1", LegalHold={"Status": status}
            )
    assert not everywhere("station", "PutObjectLockConfiguration")
    assert not everywhere("station", "PutBucketVersioning")
    for action in ("kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:CreateGrant"):
        assert kms_decision("station", Request(action, KEY_ARN, PURPOSE)) != "allow", action
    # What it may do: write new objects, locked as new objects are, and wrap data keys.
    assert everywhere("station", "CreateMultipartUpload", CONTENT_KEY, **lock(31))
    assert everywhere("station", "UploadPart", CONTENT_KEY)
    assert everywhere("station", "CompleteMultipartUpload", CONTENT_KEY)
    assert everywhere("station", "PutObject", MANIFEST_KEY, IfNoneMatch="*", **lock(31))
    assert everywhere("station", "PutObjectRetention", CONTENT_KEY, VersionId="v1", **retention(31))
    assert kms_decision("station", Request("kms:Encrypt", KEY_ARN, PURPOSE)) == "allow"


def test_station_cannot_read_content_objects_only_their_lock() -> None:
    """The issue's "no get": a station may not fetch or HEAD what it stored under objects/ (HeadObject
    is authorised as s3:GetObject, s3:GetObjectVersion for a version). It verifies its uploads from
    the answers to its writes and reads their lock with GetObjectRetention and GetObjectLegalHold,
    their own permissions (storage/s3.py S3Store.verify_commit; docs/deployment.md §4.2)."""
    for params in ({}, {"VersionId": "v1"}):
        assert not everywhere("station", "GetObject", CONTENT_KEY, **params), params
        assert not everywhere("station", "HeadObject", CONTENT_KEY, **params), params
        assert not everywhere("station", "GetObject", CONTENT_KEY, Range="bytes=0-99", **params), params
    assert everywhere("station", "GetObjectRetention", CONTENT_KEY, VersionId="v1")
    assert everywhere("station", "GetObjectLegalHold", CONTENT_KEY, VersionId="v1")
    # a version listing shows what a server stored where its answer did not (Ceph RGW's to a completed
    # multipart upload) and which version of a create-once key came first: keys, version ids, sizes
    # and ETags, never content
    for prefix in (CONTENT_KEY, "items/", CUSTODY_KEY, "vault.json"):
        assert everywhere("station", "ListObjectVersions", Prefix=prefix), prefix
    # what dedupe, create-once records and custody appends read stays readable
    for key in ("vault.json", MANIFEST_KEY, CUSTODY_KEY, "signers/ab12cd34.pub"):
        assert everywhere("station", "GetObject", key), key
    assert everywhere("station", "HeadObject", MANIFEST_KEY, VersionId="v1")
    # ...and nothing outside the vault's own prefixes, such as the reserved ones
    for key in ("links/ev-x/0000000000.json", "disposals/ev-x.json", "something-else"):
        assert not everywhere("station", "GetObject", key), key
        assert not everywhere("station", "PutObject", key, IfNoneMatch="*", **lock(31)), key


def test_investigator_reads_and_decrypts_but_never_deletes_or_bypasses() -> None:
    assert everywhere("investigator", "GetObject", CONTENT_KEY, VersionId="v1", Range="bytes=0-99")
    assert kms_decision("investigator", Request("kms:Decrypt", KEY_ARN, PURPOSE)) == "allow"
    for key in (CONTENT_KEY, MANIFEST_KEY, CUSTODY_KEY):
        assert not everywhere("investigator", "DeleteObject", key, VersionId="v1"), key
        assert not everywhere("investigator", "DeleteObject", key), key
        assert not everywhere(
            "investigator", "DeleteObject", key, VersionId="v1", BypassGovernanceRetention=True
        )
    # Records accesses; never creates or replaces evidence, nor changes an item's lock.
    assert everywhere("investigator", "PutObject", CUSTODY_KEY, IfNoneMatch="*", **lock(31))
    assert not everywhere("investigator", "PutObject", CONTENT_KEY, **lock(31))
    assert not everywhere("investigator", "PutObject", MANIFEST_KEY, IfNoneMatch="*", **lock(31))
    assert not everywhere("investigator", "PutObjectRetention", CONTENT_KEY, VersionId="v1", **retention(31))
    # Places legal holds; only the storage admin releases them.
    assert everywhere(
        "investigator", "PutObjectLegalHold", CONTENT_KEY, VersionId="v1", LegalHold={"Status": "ON"}
    )
    assert not everywhere(
        "investigator", "PutObjectLegalHold", CONTENT_KEY, VersionId="v1", LegalHold={"Status": "OFF"}
    )
    # Decryption is bound to this software's purpose.
    other = {"kms:EncryptionContext:purpose": "something-else"}
    assert kms_decision("investigator", Request("kms:Decrypt", KEY_ARN, other)) == "implicit-deny"
    assert kms_decision("investigator", Request("kms:Decrypt", KEY_ARN)) == "implicit-deny"
    assert kms_decision("investigator", Request("kms:Encrypt", KEY_ARN, PURPOSE)) == "implicit-deny"


def test_storage_admin_manages_retention_and_disposal_but_never_decrypts() -> None:
    for key in (CONTENT_KEY, MANIFEST_KEY):
        assert everywhere("admin", "DeleteObject", key, VersionId="v1"), key
        # the storage lock backs the policy: disposal waits for it to run out, and cannot shorten it
        assert not everywhere("admin", "DeleteObject", key, VersionId="v1", BypassGovernanceRetention=True)
        assert not everywhere(
            "admin", "PutObjectRetention", key, VersionId="v1", BypassGovernanceRetention=True, **retention(1)
        )
        assert everywhere("admin", "PutObjectRetention", key, VersionId="v1", **retention(2557, "COMPLIANCE"))
        assert everywhere("admin", "PutObjectLegalHold", key, VersionId="v1", LegalHold={"Status": "OFF"})
        assert not everywhere("admin", "DeleteObject", key), "a delete marker would hide the item"
    assert kms_decision("admin", Request("kms:Decrypt", KEY_ARN, PURPOSE)) == "deny"
    assert kms_decision("admin", Request("kms:DisableKey", KEY_ARN)) == "allow"
    # Key administration stops short of what would let an admin grant itself decryption.
    for action in ("kms:PutKeyPolicy", "kms:CreateGrant", "kms:ScheduleKeyDeletion"):
        assert kms_decision("admin", Request(action, KEY_ARN)) != "allow", action
    # The custody chain outlives the evidence; an admin never creates evidence.
    assert not everywhere(
        "admin", "DeleteObject", CUSTODY_KEY, VersionId="v1", BypassGovernanceRetention=True
    )
    assert not everywhere("admin", "PutObject", CONTENT_KEY, **lock(31))
    assert not everywhere("admin", "PutObject", MANIFEST_KEY, IfNoneMatch="*", **lock(31))
    for operation in ("PutObjectLockConfiguration", "PutBucketLifecycleConfiguration", "PutBucketPolicy"):
        assert not everywhere("admin", operation), operation


def test_new_object_locks_are_bounded_for_stations_and_investigators() -> None:
    """Retention a station or investigator sets is a new object's: GOVERNANCE, about 31 days. Longer
    or COMPLIANCE would let a compromised writer pin junk (or evidence past its lawful end) beyond
    the storage admin's reach."""
    for role, key in (("station", CONTENT_KEY), ("investigator", CUSTODY_KEY)):
        assert not everywhere(role, "PutObject", key, IfNoneMatch="*", **lock(3650)), role
        assert not everywhere(role, "PutObject", key, IfNoneMatch="*", **lock(31, "COMPLIANCE")), role
        assert not everywhere(role, "PutObjectRetention", key, VersionId="v1", **retention(3650)), role
        assert not everywhere(
            role, "PutObjectRetention", key, VersionId="v1", **retention(31, "COMPLIANCE")
        ), role


def test_bucket_policy_adds_what_only_aws_enforces() -> None:
    # anyone else in the account, however broad their own policy
    outsider = "arn:aws:iam::111122223333:role/account-admin"
    everything = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    bucket = load("bucket-policy.json")
    secure = {"aws:SecureTransport": "true"}
    assert decide([everything, bucket], Request("s3:GetObject", CONTENT, secure), outsider) == "deny"
    # plain HTTP, even for a role that may read
    plain = Request("s3:GetObject", CONTENT, {"aws:SecureTransport": "false"})
    assert s3_decision("investigator", plain) == "deny"
    # Create-once records need If-None-Match, so no role can put a second version over one. On MinIO
    # this is the application's rule only (docs/deployment.md): storage policy cannot say it there.
    assert not may("station", "PutObject", MANIFEST_KEY, **lock(31))
    assert may("station", "PutObject", MANIFEST_KEY, on="minio", **lock(31))
    assert not may("investigator", "PutObject", CUSTODY_KEY, **lock(31))
    # only the break-glass role changes the lock configuration, lifecycle or this policy
    lifecycle_change = Request("s3:PutLifecycleConfiguration", BUCKET_ARN, secure)
    assert decide([everything, bucket], lifecycle_change, ROLE_ARNS["break-glass"]) == "allow"
    assert decide([everything, bucket], lifecycle_change, ROLE_ARNS["admin"]) == "deny"
    # nobody deletes or shortens a GOVERNANCE lock early, whatever their own policy says: break-glass
    # would have to change this policy first (docs/deployment.md)
    bypass = Request("s3:BypassGovernanceRetention", CONTENT, secure)
    for role in ("admin", "break-glass"):
        assert decide([everything, bucket], bypass, ROLE_ARNS[role]) == "deny", role


def test_storage_admin_cannot_grant_itself_decryption_through_iam() -> None:
    """An identity policy naming the key does not help: the key policy does not delegate to IAM, and
    its explicit Deny covers everyone but investigators."""
    broad = {"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": KEY_ARN}]}
    key_policy = load("kms-key-policy.json")
    request = Request("kms:Decrypt", KEY_ARN, PURPOSE)
    assert decide([broad, key_policy], request, ROLE_ARNS["admin"]) == "deny"
    assert decide([broad, key_policy], request, ROLE_ARNS["break-glass"]) == "deny"


# MinIO's policy rules (minio/pkg v3, policy/action.go): an action must name one MinIO knows (wildcards
# match against that list); object actions need an object resource and bucket actions a bucket
# resource; a condition key must be one MinIO supports for each action of its statement. A policy that
# breaks them is refused by `mc admin policy create`, so minio-init would fail.
MINIO_OBJECT_ACTIONS = {
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetObject",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
    "s3:BypassGovernanceRetention",
    "s3:PutObjectRetention",
    "s3:GetObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:GetObjectLegalHold",
    "s3:GetObjectTagging",
    "s3:PutObjectTagging",
    "s3:DeleteObjectTagging",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionTagging",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectVersionTagging",
    "s3:PutObjectVersionTagging",
    "s3:GetObjectAttributes",
    "s3:GetObjectVersionAttributes",
    "s3:RestoreObject",
}
MINIO_BUCKET_ACTIONS = {
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:ForceDeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucketCors",
    "s3:GetBucketLocation",
    "s3:GetBucketNotification",
    "s3:GetBucketPolicy",
    "s3:GetBucketCors",
    "s3:HeadBucket",
    "s3:ListAllMyBuckets",
    "s3:ListBucket",
    "s3:GetBucketPolicyStatus",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    "s3:PutLifecycleConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:PutBucketNotification",
    "s3:PutBucketPolicy",
    "s3:PutBucketCors",
    "s3:GetBucketObjectLockConfiguration",
    "s3:PutBucketObjectLockConfiguration",
    "s3:GetBucketTagging",
    "s3:PutBucketTagging",
    "s3:PutEncryptionConfiguration",
    "s3:GetEncryptionConfiguration",
    "s3:PutBucketVersioning",
    "s3:GetBucketVersioning",
    "s3:GetReplicationConfiguration",
    "s3:PutReplicationConfiguration",
}
MINIO_CONDITION_KEYS = {
    "s3:ListBucketVersions": {"s3:prefix", "s3:delimiter", "s3:max-keys"},
    "s3:PutObject": {"s3:object-lock-mode", "s3:object-lock-retain-until-date", "s3:object-lock-legal-hold"},
    "s3:PutObjectRetention": {
        "s3:object-lock-mode",
        "s3:object-lock-retain-until-date",
        "s3:object-lock-remaining-retention-days",
    },
    "s3:PutObjectLegalHold": {"s3:object-lock-legal-hold"},
}


def test_portable_policies_are_valid_for_minio() -> None:
    for name in PORTABLE:
        for statement in statements(load(name)):
            where = f"{name} {statement['Sid']}"
            resources = _listed(statement["Resource"])
            has_object = any(r.startswith(f"{BUCKET_ARN}/") for r in resources)
            has_bucket = BUCKET_ARN in resources
            keys = {key for tests in statement.get("Condition", {}).values() for key in tests}
            for pattern in _listed(statement["Action"]):
                matched = [a for a in MINIO_OBJECT_ACTIONS | MINIO_BUCKET_ACTIONS if glob(pattern, a)]
                assert matched, f"{where}: MinIO knows no action {pattern}"
                if any(a in MINIO_OBJECT_ACTIONS for a in matched):
                    assert has_object, f"{where}: {pattern} needs an object resource on MinIO"
                if any(a in MINIO_BUCKET_ACTIONS for a in matched):
                    assert has_bucket, f"{where}: {pattern} needs the bucket resource on MinIO"
                supported = set().union(*(MINIO_CONDITION_KEYS.get(a, set()) for a in matched))
                assert keys <= supported, (
                    f"{where}: MinIO refuses condition keys {keys - supported} for {pattern}"
                )


def test_aws_only_documents_hold_what_minio_would_refuse() -> None:
    """What is split out of the portable admin policy really is AWS-only (else it belongs there)."""
    for statement in statements(load("storage-admin-aws.json")):
        for action in _listed(statement["Action"]):
            assert not any(glob(action, a) for a in MINIO_OBJECT_ACTIONS | MINIO_BUCKET_ACTIONS), action


# Ceph RGW 16 (docs/deployment.md §4.6). RGW has no identity policies in this deployment: one bucket
# policy names each role's RGW user. Where it says nothing, RGW falls back to ACLs: the object's ACL
# gives whoever wrote the object full control of it (read, lock, hold, bypass, ACL), the bucket's ACL
# gives its owner (the storage admin) everything else (puts, deletes, listings, bucket settings). The
# tests in tests/test_rgw_least_privilege.py show each of these rules on a running RGW.
RGW_POLICY = "rgw-bucket-policy.json"
RGW_USERS = {
    "station": "arn:aws:iam:::user/evidence-ingest-station",
    "investigator": "arn:aws:iam:::user/evidence-investigator",
    "admin": "arn:aws:iam:::user/evidence-storage-admin",
    "break-glass": "arn:aws:iam:::user/evidence-break-glass",
}
RGW_BUCKET_OWNER = "admin"
# Every S3 action RGW 16 knows (ceph v16 src/rgw/rgw_iam_policy.h); a policy naming any other is
# refused whole with InvalidArgument, e.g. s3:PutEncryptionConfiguration or s3:HeadBucket.
RGW16_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
    "s3:GetObjectTorrent",
    "s3:GetObjectVersionTorrent",
    "s3:RestoreObject",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:ListAllMyBuckets",
    "s3:ListBucketMultipartUploads",
    "s3:GetAccelerateConfiguration",
    "s3:PutAccelerateConfiguration",
    "s3:GetBucketAcl",
    "s3:PutBucketAcl",
    "s3:GetBucketCORS",
    "s3:PutBucketCORS",
    "s3:GetBucketVersioning",
    "s3:PutBucketVersioning",
    "s3:GetBucketRequestPayment",
    "s3:PutBucketRequestPayment",
    "s3:GetBucketLocation",
    "s3:GetBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketPolicy",
    "s3:GetBucketNotification",
    "s3:PutBucketNotification",
    "s3:GetBucketLogging",
    "s3:PutBucketLogging",
    "s3:GetBucketTagging",
    "s3:PutBucketTagging",
    "s3:GetBucketWebsite",
    "s3:PutBucketWebsite",
    "s3:DeleteBucketWebsite",
    "s3:GetLifecycleConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutReplicationConfiguration",
    "s3:GetReplicationConfiguration",
    "s3:DeleteReplicationConfiguration",
    "s3:GetObjectTagging",
    "s3:PutObjectTagging",
    "s3:DeleteObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:PutBucketObjectLockConfiguration",
    "s3:GetBucketObjectLockConfiguration",
    "s3:PutObjectRetention",
    "s3:GetObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:GetObjectLegalHold",
    "s3:BypassGovernanceRetention",
    "s3:GetBucketPolicyStatus",
    "s3:PutPublicAccessBlock",
    "s3:GetPublicAccessBlock",
    "s3:DeletePublicAccessBlock",
    "s3:GetBucketPublicAccessBlock",
    "s3:PutBucketPublicAccessBlock",
    "s3:DeleteBucketPublicAccessBlock",
}
# Authorised against the object's ACL when the policy says nothing (ceph v16 rgw_op.cc:
# verify_object_permission); the rest against the bucket's.
RGW16_OBJECT_ACL_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:GetObjectTorrent",
    "s3:GetObjectVersionTorrent",
    "s3:RestoreObject",
    "s3:ListMultipartUploadParts",
    "s3:AbortMultipartUpload",
    "s3:GetObjectRetention",
    "s3:PutObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
}
RGW16_OBJECT_ACTIONS = RGW16_OBJECT_ACL_ACTIONS | {
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
}
# The condition operators and keys RGW 16 was seen to evaluate as the document needs. RGW sets no
# s3:object-lock-* and no s3:if-none-match key (a Deny on them never applies, or, with Null, always),
# and aws:SecureTransport only over HTTPS; aws:PrincipalArn does not exist there.
RGW16_CONDITIONS = {("BoolIfExists", "aws:SecureTransport")}


def rgw_decision(role: str, action: str, resource: str, *, writer: str | None) -> str:
    """What RGW 16 decides for ``role`` under the RGW bucket policy, over HTTPS: ``allow`` and
    ``deny`` as the policy says, else ``acl`` when RGW's ACLs let it through, else ``implicit-deny``.
    ``writer``: the role that wrote the object (its owner on RGW)."""
    secure = Request(action, resource, {"aws:SecureTransport": "true"})
    decision = decide([load(RGW_POLICY)], secure, RGW_USERS[role])
    if decision != "implicit-deny":
        return decision
    if action in RGW16_OBJECT_ACL_ACTIONS:
        return "acl" if resource != BUCKET_ARN and writer == role else "implicit-deny"
    return "acl" if role == RGW_BUCKET_OWNER else "implicit-deny"


def rgw_allows(role: str, action: str, key: str | None, *, writer: str | None) -> bool:
    return rgw_decision(role, action, obj(key) if key else BUCKET_ARN, writer=writer) in ("allow", "acl")


def test_rgw_policy_is_one_rgw_16_accepts() -> None:
    doc = load(RGW_POLICY)
    assert doc["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in statements(doc)]
    assert len(sids) == len(set(sids)) and all(sids)
    for statement in statements(doc):
        where = statement["Sid"]
        assert statement["Effect"] in ("Allow", "Deny") and "Action" in statement, where
        assert "NotAction" not in statement, f"{where}: RGW 16 does not honour NotAction in a Deny"
        named = statement.get("Principal", statement.get("NotPrincipal"))
        principals = ["*"] if named == "*" else _listed(named["AWS"])
        assert set(principals) <= set(RGW_USERS.values()) | {"*"}, where
        assert ("NotPrincipal" in statement) <= (statement["Effect"] == "Deny"), where
        for pattern in _listed(statement["Action"]):
            assert any(glob(pattern, a, case_sensitive=False) for a in RGW16_ACTIONS), (where, pattern)
            assert "*" in pattern or pattern in RGW16_ACTIONS, (where, pattern)
        for resource in _listed(statement.get("Resource", statement.get("NotResource"))):
            assert resource == BUCKET_ARN or resource.startswith(f"{BUCKET_ARN}/"), (where, resource)
        conditions = {(op, key) for op, tests in statement.get("Condition", {}).items() for key in tests}
        assert conditions <= RGW16_CONDITIONS, f"{where}: RGW 16 does not evaluate {conditions}"


# Object keys as the project writes them, and who writes each (its owner on RGW). Custody records
# and signer keys are written by every role: each role is taken to own the ones it is asked about.
RGW_SAMPLES: dict[str, str | None] = {
    "vault.json": "admin",
    CONTENT_KEY: "station",
    MANIFEST_KEY: "station",
    CUSTODY_KEY: "self",
    "signers/ab12cd34.pub": "self",
    "links/ev-x/0000000000.json": None,
    "something-else": None,
}
CREATE_ONCE = ("vault.json", "items/", "custody/", "signers/")


def aws_contexts(action: str, key: str | None) -> list[dict[str, str]]:
    """The request contexts of the project's own requests for this action on AWS: new objects locked
    GOVERNANCE for 31 days, create-once records with If-None-Match, holds placed and released."""
    if action == "s3:PutObjectLegalHold":
        return [{"s3:object-lock-legal-hold": status} for status in ("ON", "OFF")]
    if action in ("s3:PutObject", "s3:PutObjectRetention"):
        context = {"s3:object-lock-mode": "GOVERNANCE", "s3:object-lock-remaining-retention-days": "31"}
        if action == "s3:PutObject" and key is not None and key.startswith(CREATE_ONCE):
            context["s3:if-none-match"] = "*"
        return [context]
    return [{}]


def rgw_differences(role: str, actions: set[str]) -> set[tuple[str, str, str]]:
    """(action, key, who allows it) wherever AWS (identity and bucket policies) and RGW 16 (its bucket
    policy and its ACLs) decide differently for ``role``'s requests."""
    found = set()
    for action in sorted(actions):
        for key in list(RGW_SAMPLES) if action in RGW16_OBJECT_ACTIONS else [None]:
            writer = RGW_SAMPLES.get(key) if key else None
            on_rgw = rgw_allows(role, action, key, writer=role if writer == "self" else writer)
            resource = obj(key) if key else BUCKET_ARN
            for context in aws_contexts(action, key):
                on_aws = s3_decision(role, Request(action, resource, context)) == "allow"
                if on_aws != on_rgw:
                    label = key or "(bucket)"
                    found.add((action, label, "aws" if on_aws else "rgw"))
    return found


def test_rgw_policy_grants_the_station_what_ingest_station_json_grants() -> None:
    """Every action RGW 16 knows, on every kind of key, decided for the station as AWS decides it
    (ingest-station.json and bucket-policy.json) and as RGW does: the same, except for these, each
    for a reason docs/deployment.md §4.6 gives."""
    assert rgw_differences("station", RGW16_ACTIONS) == {
        # RGW cannot bound a lock's mode or length (no s3:object-lock-* keys), and the station does not
        # need the grant there: RGW keeps the lock headers of a put, and the bucket's default retention
        # locks a multipart upload, whose lock headers RGW drops
        ("s3:PutObjectRetention", CONTENT_KEY, "aws"),
        ("s3:PutObjectRetention", MANIFEST_KEY, "aws"),
        ("s3:PutObjectRetention", CUSTODY_KEY, "aws"),
    }


def test_rgw_policy_grants_investigators_and_the_admin_what_their_policies_grant() -> None:
    """The same comparison for the other two roles. The storage admin owns the bucket, and RGW lets a
    bucket's owner change any bucket setting no policy denies: those the AWS documents name are
    compared, the others (CORS, website, tagging, logging...) are the owner's on RGW."""
    assert rgw_differences("investigator", RGW16_ACTIONS) == {
        ("s3:PutObjectRetention", CUSTODY_KEY, "aws"),  # as for the station
        # RGW sets no s3:object-lock-legal-hold: an investigator who may place a hold may release it
        ("s3:PutObjectLegalHold", CONTENT_KEY, "rgw"),
        ("s3:PutObjectLegalHold", MANIFEST_KEY, "rgw"),
    }
    named = {
        action
        for name in (*IDENTITY_POLICIES["admin"], "bucket-policy.json")
        for statement in statements(load(name))
        for pattern in _listed(statement["Action"])
        if pattern != "s3:*"  # the bucket policy's rules for everyone: TLS, outsiders
        for action in RGW16_ACTIONS
        if glob(pattern, action, case_sensitive=False)
    }
    assert rgw_differences("admin", named | RGW16_OBJECT_ACTIONS) == set()


def test_rgw_policy_refuses_the_station_what_it_owns() -> None:
    """On RGW the station owns every object it writes: without the policy's Denies, RGW's ACLs would
    let it read its content, hold it, bypass its lock, or make it public."""
    for key in (CONTENT_KEY, MANIFEST_KEY):
        for action in (
            "s3:PutObjectLegalHold",
            "s3:BypassGovernanceRetention",
            "s3:PutObjectRetention",
            "s3:PutObjectAcl",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
        ):
            assert rgw_decision("station", action, obj(key), writer="station") == "deny", (action, key)
    for action in ("s3:GetObject", "s3:GetObjectVersion"):
        assert rgw_decision("station", action, CONTENT, writer="station") == "deny"
        assert rgw_decision("station", action, MANIFEST, writer="station") == "allow"
    assert rgw_decision("station", "s3:GetObjectRetention", CONTENT, writer="station") == "allow"
    # and the ACL fallback the Denies override is real in this model
    stripped = {"Version": "2012-10-17", "Statement": []}
    assert decide([stripped], Request("s3:GetObject", CONTENT), RGW_USERS["station"]) == "implicit-deny"
    assert "s3:GetObject" in RGW16_OBJECT_ACL_ACTIONS


def test_rgw_policy_keeps_outsiders_out_and_leaves_the_policy_to_break_glass() -> None:
    outsider = "arn:aws:iam:::user/someone-else"
    for action in ("s3:GetObject", "s3:ListBucket", "s3:PutObject"):
        resource = BUCKET_ARN if action == "s3:ListBucket" else CONTENT
        request = Request(action, resource, {"aws:SecureTransport": "true"})
        assert decide([load(RGW_POLICY)], request, outsider) == "deny", action
    plain = Request("s3:GetObject", MANIFEST, {})  # no aws:SecureTransport: plain HTTP on RGW
    assert decide([load(RGW_POLICY)], plain, RGW_USERS["investigator"]) == "deny"
    for action in (
        "s3:PutBucketPolicy",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutLifecycleConfiguration",
    ):
        assert rgw_decision("admin", action, BUCKET_ARN, writer=None) == "deny", action
        assert rgw_decision("break-glass", action, BUCKET_ARN, writer=None) == "allow", action
    for role in ("admin", "break-glass"):
        assert rgw_decision(role, "s3:BypassGovernanceRetention", CONTENT, writer=role) == "deny", role


# -- 2. the real code paths -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def attach(self, client: Any, role: str, service: str) -> Any:
        def record(params: Mapping[str, Any], model: Any, **_: Any) -> None:
            kept = {k: v for k, v in params.items() if k not in ("Body", "Plaintext", "CiphertextBlob")}
            self.calls.append(Call(role, service, model.name, kept))

        client.meta.events.register(f"provide-client-params.{service}.*", record)
        return client


def fake_client(service: str, **credentials: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id=credentials.get("key", "testing"),
        aws_secret_access_key=credentials.get("secret", "testing"),
    )


@dataclass
class Machine:
    """One role's machine: its settings and keys directory."""

    role: str
    settings: Settings
    key_arn: str
    """The vault's KMS key (a second keyring beside the X25519 key)."""

    @property
    def keys(self) -> Path:
        return self.settings.keys_path

    def vault(self, s3: Any, kms: Any, *, decrypts: bool, journal: IngestJournal | None = None) -> Vault:
        """As Vault.open builds it, with injected clients. ``decrypts``: KMS is also an identity (an
        investigator's workstation; the X25519 identity is left out so reads go through kms:Decrypt)."""
        kms_keyring = KmsKeyring(self.key_arn, client=kms)
        identities: list[Keyring] = [kms_keyring] if decrypts else []
        return Vault(
            S3Store(BUCKET, client=s3, part_size=5 * MiB, concurrency=2),
            settings=self.settings,
            id_key=load_id_key(self.keys / ID_KEY_FILE),
            recipients=[X25519Recipient.from_file(self.keys / RECIPIENT_FILE), kms_keyring],
            identities=identities,
            journal=journal,
            signer=SigningKey.from_file(self.keys / SIGNING_KEY_FILE),
        )


def make_machines(root: Path, key_arn: str) -> dict[str, Machine]:
    """The authority's keys (identity, id key), and each role's machine with only what it holds."""
    authority = Settings(data_dir=root / "authority", vault_url=f"s3://{BUCKET}")
    init_keys(authority)
    machines = {}
    for role in ROLES:
        settings = Settings(
            data_dir=root / role,
            vault_url=f"s3://{BUCKET}",
            station_id=f"{role}-host",
            settle_seconds=0,
            part_size=5 * MiB,
            catalog_url=f"sqlite:///{root / role / 'catalog.sqlite'}",
        )
        settings.keys_path.mkdir(parents=True)
        names = (RECIPIENT_FILE, ID_KEY_FILE) + ((IDENTITY_FILE,) if role == "investigator" else ())
        for name in names:
            (settings.keys_path / name).write_bytes((authority.keys_path / name).read_bytes())
        generate_signing_key(settings.keys_path)  # every machine signs with its own key
        machines[role] = Machine(role, settings, key_arn)
    return machines


def platform_setup(root_s3: Any, root_kms: Any) -> str:
    """What infra/compose.yaml's minio-init (or the platform team on AWS) does before any role acts.
    Returns the KMS key's ARN."""
    root_s3.create_bucket(
        Bucket=BUCKET,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=True,
    )
    return str(root_kms.create_key(Description="evidence data keys")["KeyMetadata"]["Arn"])


def make_device(root: Path, seed: int) -> Path:
    device = root / f"BWC-{seed:04d}"
    make_jpeg(device / "DCIM" / f"IMG_{seed:04d}.JPG", seed=seed)
    random_file(device / "DCIM" / f"CLIP_{seed:04d}.BIN", 6 * MiB, seed=seed)  # two 5 MiB parts
    return device


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Call], datetime]:
    """Every role's real code paths against one moto vault, with each S3 and KMS call recorded. The
    moto mock ends before the tests run: they only need the calls (and the per-test mocks of the
    moto tests below must not share its state)."""
    from moto import mock_aws

    root = tmp_path_factory.mktemp("recorded")
    with pytest.MonkeyPatch.context() as env:
        # module scope runs before the autouse per-test isolation (conftest), so isolate here too
        for name in list(os.environ):
            if name.startswith(("EVIDENCE_", "AWS_")):
                env.delenv(name)
        env.setenv("AWS_CONFIG_FILE", str(root / "no-aws-config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(root / "no-aws-credentials"))
        with mock_aws(), moto_answering_like_s3():
            return _recorded_scenarios(root)


def _recorded_scenarios(root: Path) -> tuple[list[Call], datetime]:
    started = datetime.now(UTC)
    recorder = Recorder()
    machines = make_machines(root, platform_setup(fake_client("s3"), fake_client("kms")))
    s3 = {role: recorder.attach(fake_client("s3"), role, "s3") for role in ROLES}
    kms = {role: recorder.attach(fake_client("kms"), role, "kms") for role in ROLES}

    # storage admin: `evidence vault init` and `evidence vault check`
    admin = machines["admin"].vault(s3["admin"], kms["admin"], decrypts=False)
    admin.initialise()
    assert admin.store.check() == []

    # ingest station: Vault.open's descriptor check, an ingest, a re-ingest (duplicates, aborted
    # uploads), and the interrupted-upload clean-up IngestJournal.recover does
    station_machine = machines["station"]
    journal = IngestJournal.for_station(station_machine.settings.journal_dir)
    station_vault = station_machine.vault(s3["station"], kms["station"], decrypts=False, journal=journal)
    station_vault.check_descriptor()
    station = Station(station_machine.settings, station_vault, journal)
    device = make_device(root, seed=1)
    first = station.ingest(device)
    assert first.counts == {"ingested": 2}, first
    assert station.ingest(device).counts == {"duplicate": 2}
    interrupted = station_vault.store.begin_upload("objects/ab/" + "ab" * 16, retention=None)
    interrupted.write(b"\0" * (6 * MiB))
    for upload in station_vault.store.list_incomplete_uploads(interrupted.key):
        station_vault.store.abort_incomplete_upload(upload)
    interrupted.abort()
    ids = sorted(o.evidence_id for o in first.outcomes if o.evidence_id)

    # investigator: read, range-read, thumbnail, record the access, verify the chain, hold
    investigator = machines["investigator"].vault(s3["investigator"], kms["investigator"], decrypts=True)
    investigator.check_descriptor()
    assert sorted(investigator.list_items()) == ids
    for evidence_id in ids:
        manifest = investigator.manifest(evidence_id)
        assert sum(len(c) for c in investigator.read_original(manifest)) == manifest.size
        assert b"".join(investigator.read_range(manifest, 10, 5000))
        investigator.thumbnail(manifest)
        investigator.custody.append(
            evidence_id,
            "access",
            actor="ivy",
            role="investigator",
            details={"action": "get", "purpose": None},
        )
        assert investigator.custody.verify(evidence_id).intact
        lifecycle.set_hold(investigator, evidence_id, True)

    # storage admin: extend locks, release the hold, re-hash content (fixity), dispose of one item
    for evidence_id in ids:
        lifecycle.extend_lock(admin, evidence_id, datetime.now(UTC) + timedelta(days=400))
        lifecycle.set_hold(admin, evidence_id, False)
        admin.custody.append(
            evidence_id,
            "release",
            actor="svc-retention",
            role="storage-admin",
            details={"hold": "incident:KNT-2026-000123"},
        )
        ref = admin.manifest(evidence_id).content
        assert sum(len(c) for c in admin.store.get(ref.key, version_id=ref.version_id)) == ref.size
    # the disposed item's lock runs out (shortened, as time would, by an unrecorded root client): the
    # admin deletes without any bypass
    root_s3 = fake_client("s3")
    for info in lifecycle.item_objects(admin, ids[0]).versions:
        root_s3.put_object_retention(
            Bucket=BUCKET,
            Key=info.key,
            VersionId=info.version_id,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) - timedelta(seconds=1)},
            BypassGovernanceRetention=True,
        )
    objects = lifecycle.item_objects(admin, ids[0])
    assert lifecycle.dispose(admin, objects) > 0
    lifecycle.extend_records(admin, ids[0], datetime.now(UTC) + timedelta(days=3650))
    return recorder.calls, started


@pytest.mark.parametrize("role", ROLES)
def test_every_call_a_role_makes_is_allowed_to_it(recorded: tuple[list[Call], datetime], role: str) -> None:
    calls, started = recorded
    mine = [c for c in calls if c.role == role]
    assert mine, f"the {role} scenario made no calls"
    refused = []
    for call in mine:
        for request in iam_requests(call, started):
            decision = kms_decision(role, request) if call.service == "kms" else s3_decision(role, request)
            if decision != "allow":
                refused.append(f"{request.why}: {request.action} on {request.resource} -> {decision}")
    assert not refused, "\n".join(sorted(set(refused)))


def test_the_scenarios_cover_every_kind_of_call(recorded: tuple[list[Call], datetime]) -> None:
    """So the test above cannot pass by recording nothing interesting."""
    calls, _ = recorded
    made = {(c.role, c.operation) for c in calls}
    expected = (
        {
            ("station", op)
            for op in (
                "CreateMultipartUpload",
                "UploadPart",
                "CompleteMultipartUpload",
                "AbortMultipartUpload",
                "PutObject",
                "PutObjectRetention",
                "HeadObject",
                "GetObject",
                "GetObjectRetention",
                "ListObjectsV2",
                "ListMultipartUploads",
                "Encrypt",
            )
        }
        | {
            ("investigator", op)
            for op in (
                "GetObject",
                "HeadObject",
                "ListObjectsV2",
                "ListObjectVersions",
                "PutObject",
                "PutObjectLegalHold",
                "Decrypt",
            )
        }
        | {
            ("admin", op)
            for op in (
                "HeadBucket",
                "PutBucketVersioning",
                "PutPublicAccessBlock",
                "GetPublicAccessBlock",
                "PutObjectRetention",
                "PutObjectLegalHold",
                "DeleteObject",
                "ListObjectVersions",
                "PutObject",
            )
        }
    )
    assert expected <= made, sorted(expected - made)


def test_the_station_never_reads_a_content_object(recorded: tuple[list[Call], datetime]) -> None:
    """An ingest (new items, a re-ingest of duplicates, an interrupted upload) reads no object under
    objects/: its uploads are verified from the answers to the writes and a read of their lock. So
    the test above holds without any read grant on objects/."""
    calls, _ = recorded
    station = [c for c in calls if c.role == "station"]
    content = [c for c in station if str(c.params.get("Key", "")).startswith("objects/")]
    assert content, "the station wrote no content: the test proves nothing"
    reads = [
        f"{c.operation} {c.params['Key']}" for c in content if c.operation in ("HeadObject", "GetObject")
    ]
    assert not reads, reads
    # each locked upload's lock is read back, with nothing but the lock read
    assert {c.operation for c in content} >= {"PutObject", "CompleteMultipartUpload", "GetObjectRetention"}


@pytest.mark.parametrize(
    ("role", "other", "forbidden"),
    [
        (
            "station",
            "admin",
            {"s3:DeleteObjectVersion", "s3:PutObjectLegalHold"},
        ),
        # (the station lists versions too: a create-once record is its key's first version)
        ("station", "investigator", {"kms:Decrypt", "s3:PutObjectLegalHold"}),
        ("investigator", "admin", {"s3:DeleteObjectVersion"}),
        ("investigator", "station", {"kms:Encrypt"}),
        ("admin", "investigator", {"kms:Decrypt"}),
        ("admin", "station", {"kms:Encrypt"}),
    ],
)
def test_a_role_is_refused_the_calls_that_are_another_roles(
    recorded: tuple[list[Call], datetime], role: str, other: str, forbidden: set[str]
) -> None:
    calls, started = recorded
    theirs = [r for c in calls if c.role == other for r in iam_requests(c, started)]
    refused = set()
    for request in theirs:
        decision = (
            kms_decision(role, request) if request.action.startswith("kms:") else s3_decision(role, request)
        )
        if decision != "allow":
            refused.add(request.action)
    assert forbidden <= refused, f"{role} may do {sorted(forbidden - refused)} as the {other} did"


def test_a_station_cannot_extend_locks_as_the_admin_did(
    recorded: tuple[list[Call], datetime],
) -> None:
    calls, started = recorded
    extensions = [
        r
        for c in calls
        if c.role == "admin" and c.operation == "PutObjectRetention"
        for r in iam_requests(c, started)
        if r.action == "s3:PutObjectRetention"
    ]
    assert extensions
    assert all(s3_decision("station", r) == "deny" for r in extensions)


# -- 3. moto's own enforcement ---------------------------------------------------------------------


def moto_enforceable(document: Mapping[str, Any]) -> dict[str, Any]:
    """The statements moto evaluates as AWS would: those without a Condition. moto treats every
    condition as met (test_moto_treats_every_condition_as_met), so a conditional Deny would refuse
    everything; those statements are covered by the evaluator tests above."""
    return {"Version": "2012-10-17", "Statement": [s for s in statements(document) if "Condition" not in s]}


def key_policy_for(role: str) -> dict[str, Any]:
    """The key policy's statements for one principal, as the identity policy moto can enforce (moto
    ignores key policies; a key policy statement naming a principal grants what this identity policy
    grants). Conditional statements for everyone are left to the evaluator tests."""
    kept = []
    for statement in statements(load("kms-key-policy.json")):
        principal = statement["Principal"]
        named = principal != "*" and ROLE_ARNS[role] in _listed(principal["AWS"])
        if named or (principal == "*" and "Condition" not in statement):
            kept.append({k: v for k, v in statement.items() if k != "Principal"})
    return {"Version": "2012-10-17", "Statement": kept}


@dataclass
class MotoWorld:
    root: Path
    machines: dict[str, Machine]
    iam: Any
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)

    def add_user(self, name: str, *documents: Mapping[str, Any]) -> dict[str, str]:
        self.iam.create_user(UserName=name)
        for index, document in enumerate(documents):
            self.iam.put_user_policy(
                UserName=name, PolicyName=f"p{index}", PolicyDocument=json.dumps(document)
            )
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        self.credentials[name] = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        return self.credentials[name]

    def client(self, service: str, user: str) -> Any:
        return fake_client(service, **self.credentials[user])


@pytest.fixture
def world(tmp_path: Path, moto_aws: None) -> Iterator[MotoWorld]:
    with moto_answering_like_s3():
        machines = make_machines(tmp_path, platform_setup(fake_client("s3"), fake_client("kms")))
        world = MotoWorld(tmp_path, machines, fake_client("iam"))
        for role in ROLES:
            documents = [moto_enforceable(load(name)) for name in IDENTITY_POLICIES[role]]
            world.add_user(role, *documents, key_policy_for(role))
        # the platform initialises the vault descriptor (vault init is covered by the evaluator tests:
        # moto authorises HeadBucket as a non-AWS action "s3:HeadBucket")
        machines["admin"].vault(fake_client("s3"), fake_client("kms"), decrypts=False).initialise()
        yield world


def denied(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ClientError as err:
        code = str(err.response["Error"]["Code"])
        return code in ("AccessDenied", "AccessDeniedException", "403")
    return False


def ingest_as_station(
    world: MotoWorld, station_user: str = "station", seed: int = 7, **settings: Any
) -> tuple[Vault, list[str]]:
    machine = world.machines["station"]
    if settings:
        machine = Machine(machine.role, machine.settings.model_copy(update=settings), machine.key_arn)
    journal = IngestJournal.for_station(machine.settings.journal_dir)
    vault = machine.vault(
        world.client("s3", station_user), world.client("kms", station_user), decrypts=False, journal=journal
    )
    vault.check_descriptor()
    report = Station(machine.settings, vault, journal).ingest(make_device(world.root, seed))
    assert report.counts == {"ingested": 2}, report
    return vault, sorted(o.evidence_id for o in report.outcomes if o.evidence_id)


def test_moto_treats_every_condition_as_met(moto_aws: None, tmp_path: Path) -> None:
    """Why the moto tests drop conditional statements: a Deny that should not apply still refuses."""
    from moto.core.authorization import enable_iam_authentication

    world = MotoWorld(tmp_path, {}, fake_client("iam"))
    fake_client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    world.add_user(
        "u",
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{BUCKET_ARN}/*"},
                {
                    "Effect": "Deny",
                    "Action": "s3:PutObject",
                    "Resource": f"{BUCKET_ARN}/*",
                    "Condition": {"StringEquals": {"s3:object-lock-mode": "COMPLIANCE"}},
                },
            ],
        },
    )
    with enable_iam_authentication():
        # no lock header at all, so on AWS the Deny does not apply and the put succeeds
        assert denied(lambda: world.client("s3", "u").put_object(Bucket=BUCKET, Key="x", Body=b"x"))


def test_station_ingests_under_its_policy_and_is_refused_the_rest(world: MotoWorld) -> None:
    """A photo (one put) and a 6 MiB clip (a multipart upload) stored, verified and recorded under the
    station's policy, which grants no read of objects/ at all; then a re-ingest of the same device
    (duplicates: their objects' locks are read, not the objects)."""
    from moto.core.authorization import enable_iam_authentication

    station = load("ingest-station.json")
    assert not any(
        decide([station], Request(action, CONTENT), ROLE_ARNS["station"]) == "allow"
        for action in ("s3:GetObject", "s3:GetObjectVersion")
    ), "the policy under test still grants reading content objects"
    with enable_iam_authentication():
        vault, ids = ingest_as_station(world)
        journal = IngestJournal.for_station(world.machines["station"].settings.journal_dir)
        again = Station(world.machines["station"].settings, vault, journal).ingest(make_device(world.root, 7))
        assert again.counts == {"duplicate": 2}, again
        manifest = vault.manifest(ids[0])
        s3, kms = world.client("s3", "station"), world.client("kms", "station")
        content = manifest.content
        # what it stored it can neither fetch nor HEAD, with or without the version
        versioned = {"Bucket": BUCKET, "Key": content.key, "VersionId": content.version_id}
        current = {"Bucket": BUCKET, "Key": content.key}
        assert denied(lambda: s3.get_object(**versioned)) and denied(lambda: s3.get_object(**current))
        assert denied(lambda: s3.head_object(**versioned)) and denied(lambda: s3.head_object(**current))
        with pytest.raises(AccessDenied):
            b"".join(vault.store.get(content.key, version_id=content.version_id))
        assert denied(lambda: s3.delete_object(Bucket=BUCKET, Key=content.key, VersionId=content.version_id))
        assert denied(lambda: s3.delete_object(Bucket=BUCKET, Key=content.key))
        assert denied(lambda: s3.put_object(Bucket=BUCKET, Key="links/ev-x/0000000000.json", Body=b"{}"))
        assert denied(lambda: s3.put_object(Bucket=BUCKET, Key="vault.json", Body=b"{}"))
        # versions it may list: a create-once record is its key's first version, and a write to one
        # is confirmed first by listing the key's versions (docs/storage.md, "Create-once without
        # If-None-Match"); a listing names keys and versions, never their bytes
        assert s3.list_object_versions(Bucket=BUCKET, Prefix=layout.manifest_key(ids[0]))["Versions"]
        assert denied(
            lambda: s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
        )
        blob = next(s["blob"] for s in manifest.recipients if s["type"] == "aws-kms")
        assert denied(
            lambda: kms.decrypt(CiphertextBlob=base64.b64decode(blob), EncryptionContext=ENCRYPTION_CONTEXT)
        )


def test_station_cannot_open_what_it_wrote(world: MotoWorld) -> None:
    """Not the ciphertext (no read of objects/), nor the key to it (no identity key, no kms:Decrypt)."""
    from moto.core.authorization import enable_iam_authentication

    with enable_iam_authentication():
        _, ids = ingest_as_station(world)
        machine = world.machines["station"]
        assert not (machine.keys / IDENTITY_FILE).exists()
        reader = machine.vault(world.client("s3", "station"), world.client("kms", "station"), decrypts=True)
        manifest = reader.manifest(ids[0])
        with pytest.raises(AccessDenied):
            b"".join(reader.store.get(manifest.content.key, version_id=manifest.content.version_id))
        # moto answers an IAM refusal with code "403" (AWS: AccessDeniedException); either way, no key
        with pytest.raises(EvidenceError):
            reader.data_key(manifest)


def test_without_reading_locks_a_station_cannot_verify_what_it_stored(world: MotoWorld) -> None:
    """The grant that replaced the read of objects/ is needed: without s3:GetObjectRetention on
    objects/ the lock of each upload cannot be read back, and the ingest fails (files stay on the
    device). So the lock really is checked, and by that read alone."""
    from moto.core.authorization import enable_iam_authentication

    station = moto_enforceable(load("ingest-station.json"))
    for statement in station["Statement"]:
        if "s3:GetObjectRetention" in statement["Action"]:
            statement["Resource"] = [r for r in statement["Resource"] if r != obj("objects/*")]
    world.add_user("station-without-lock-reads", station, key_policy_for("station"))
    with enable_iam_authentication(), pytest.raises(AccessDenied, match="reading the lock of objects/"):
        ingest_as_station(world, "station-without-lock-reads", seed=8)


def test_read_back_verification_needs_the_read_grant_the_station_no_longer_has(world: MotoWorld) -> None:
    """EVIDENCE_VERIFY_READBACK re-reads every stored object in full: under the station's policy that
    is refused, with a message that says what to change (docs/deployment.md §4.2)."""
    from moto.core.authorization import enable_iam_authentication

    with enable_iam_authentication(), pytest.raises(AccessDenied, match="EVIDENCE_VERIFY_READBACK"):
        ingest_as_station(world, seed=9, verify_readback=True)


def test_investigator_reads_and_records_but_cannot_delete_or_create_evidence(world: MotoWorld) -> None:
    from moto.core.authorization import enable_iam_authentication

    with enable_iam_authentication():
        _, ids = ingest_as_station(world)
        s3, kms = world.client("s3", "investigator"), world.client("kms", "investigator")
        vault = world.machines["investigator"].vault(s3, kms, decrypts=True)
        manifest = vault.manifest(ids[0])
        assert (
            sum(len(c) for c in vault.read_original(manifest)) == manifest.size
        )  # s3:GetObject, kms:Decrypt
        vault.custody.append(ids[0], "access", actor="ivy", role="investigator", details={"action": "get"})
        content = manifest.content
        assert denied(lambda: s3.delete_object(Bucket=BUCKET, Key=content.key, VersionId=content.version_id))
        assert denied(lambda: s3.put_object(Bucket=BUCKET, Key=f"items/{ids[0]}/manifest.json", Body=b"{}"))
        assert denied(lambda: s3.put_object(Bucket=BUCKET, Key=content.key, Body=b"forged"))
        assert denied(
            lambda: kms.encrypt(
                KeyId=world.machines["investigator"].key_arn,
                Plaintext=b"k" * 32,
                EncryptionContext=ENCRYPTION_CONTEXT,
            )
        )


def test_storage_admin_disposes_but_cannot_decrypt_forge_or_erase_custody(world: MotoWorld) -> None:
    from moto.core.authorization import enable_iam_authentication

    with enable_iam_authentication():
        station_vault, ids = ingest_as_station(world)
        s3, kms = world.client("s3", "admin"), world.client("kms", "admin")
        manifest = station_vault.manifest(ids[0])
        content = manifest.content
        custody = next(iter(station_vault.store.list(f"custody/{ids[0]}/")))
        assert denied(lambda: s3.put_object(Bucket=BUCKET, Key="objects/00/" + "0" * 32, Body=b"forged"))
        assert denied(
            lambda: s3.delete_object(
                Bucket=BUCKET, Key=custody.key, VersionId=custody.version_id, BypassGovernanceRetention=True
            )
        )
        assert denied(lambda: s3.delete_object(Bucket=BUCKET, Key=content.key))  # a delete marker
        blob = next(s["blob"] for s in manifest.recipients if s["type"] == "aws-kms")
        assert denied(
            lambda: kms.decrypt(CiphertextBlob=base64.b64decode(blob), EncryptionContext=ENCRYPTION_CONTEXT)
        )
        # a GOVERNANCE-locked version is not disposed of before its lock runs out (that the admin may
        # not send the bypass is the evaluator tests' to show: moto does not check the permission)
        assert denied(lambda: s3.delete_object(Bucket=BUCKET, Key=content.key, VersionId=content.version_id))
    # its lock runs out (a root client, outside IAM authentication, shortens it as time would)
    fake_client("s3").put_object_retention(
        Bucket=BUCKET,
        Key=content.key,
        VersionId=content.version_id,
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) - timedelta(seconds=1)},
        BypassGovernanceRetention=True,
    )
    with enable_iam_authentication():
        s3.delete_object(Bucket=BUCKET, Key=content.key, VersionId=content.version_id)
