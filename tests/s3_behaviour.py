"""botocore event hooks that give moto another server's behaviour, or force two writers to interleave.

Each acts on one boto3 client (``store.client``), as a real server would on every request it gets:

- :func:`ignore_if_none_match`: Ceph RGW 16 ignores ``If-None-Match: *``; the header is dropped before
  moto sees it, so a second create-once write makes a second version there too.
- :func:`refuse_puts_while_blocked`: Ceph RGW 16 refuses every PutObject (a private ACL too) while
  the bucket's ``BlockPublicAcls`` is on; ``flags`` picks the flags that break writes.
- :func:`meet_before_put`: two writers each wait at a barrier just before their PutObject of a key
  (after any presence check), so both pass the check before either writes: the race is forced, not
  hoped for. A barrier, not a sleep: no timing is assumed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any

from botocore.exceptions import ClientError

RGW_WRITE_BREAKING_FLAGS = ("BlockPublicAcls",)


def ignore_if_none_match(client: Any) -> None:
    def drop(params: dict[str, Any], **_: Any) -> None:
        params.pop("IfNoneMatch", None)

    for operation in ("PutObject", "CompleteMultipartUpload"):
        client.meta.events.register(f"before-parameter-build.s3.{operation}", drop)


def refuse_puts_while_blocked(
    client: Any,
    observer: Any,
    flags: Collection[str] = RGW_WRITE_BREAKING_FLAGS,
    refused: list[str] | None = None,
) -> list[str]:
    """PutObject is AccessDenied while any of ``flags`` is on for the bucket, read with ``observer``
    (another client: the server's own view). Returns the list the refused keys are added to."""
    refused = [] if refused is None else refused

    def refuse(params: dict[str, Any], **_: Any) -> None:
        try:
            block = observer.get_public_access_block(Bucket=params["Bucket"])
        except ClientError:
            return  # no block at all
        on = block["PublicAccessBlockConfiguration"]
        if any(on.get(flag) for flag in flags):
            refused.append(str(params["Key"]))
            raise ClientError(
                {
                    "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                    "ResponseMetadata": {"HTTPStatusCode": 403},
                },
                "PutObject",
            )

    client.meta.events.register("before-parameter-build.s3.PutObject", refuse)
    return refused


def meet_before_put(client: Any, barrier: threading.Barrier, chosen: Callable[[str], bool]) -> None:
    """Wait at ``barrier`` before the first PutObject of a key ``chosen`` picks (bucket key), once."""
    used = threading.Event()

    def meet(params: dict[str, Any], **_: Any) -> None:
        if not used.is_set() and chosen(str(params["Key"])):
            used.set()
            barrier.wait()

    client.meta.events.register("before-parameter-build.s3.PutObject", meet)
