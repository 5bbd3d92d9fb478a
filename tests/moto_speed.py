"""moto 5.2.5's ListObjectVersions deep-copies every version of every key in the bucket, contents
included (``FakeKey.__getstate__`` reads the whole value and ``__setstate__`` writes it to a new
spooled temporary file), on every call: a listing of one key costs as much as re-writing the bucket.
Reading a create-once record's first version and confirming a create-once write are such listings
(docs/storage.md §5), so against moto the suite and the benchmarks slowed with everything stored
before. The copies are only marked latest or not and read for the answer: a shallow copy sharing the
stored bytes gives the same answer. Applied in-process by ``tests/conftest.py`` and in the benchmarks'
moto server process (``python -m tests.moto_speed``), which behave as moto otherwise does."""

from __future__ import annotations

import sys
from typing import Any


def apply() -> None:
    from moto.s3.models import FakeKey

    class ListedKey(FakeKey):  # type: ignore[misc]
        """A view of a key for one listing: it shares the key's stored bytes, so it must not close
        them when it goes (a FakeKey's ``__del__`` closes its buffer)."""

        __module__ = FakeKey.__module__  # moto's model registry names a class after its module

        def __del__(self) -> None:
            pass

    def shallow_copy(self: Any, memo: dict[int, Any]) -> Any:
        # not copy.copy: that too goes through __getstate__, which reads the whole value
        duplicate = object.__new__(ListedKey)
        duplicate.__dict__.update(self.__dict__)
        memo[id(self)] = duplicate
        return duplicate

    FakeKey.__deepcopy__ = shallow_copy  # type: ignore[attr-defined]


def main() -> None:
    """``python -m moto.server`` with the fix applied; the same arguments."""
    apply()
    from moto.server import main as moto_server

    sys.exit(moto_server(sys.argv[1:]))


if __name__ == "__main__":
    main()
