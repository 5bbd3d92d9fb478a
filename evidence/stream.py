"""Streaming authenticated encryption of evidence content, format v1 (``docs/format.md`` §3 and §4).

A STREAM construction (as in age and Tink's streaming AEAD) over AES-256-GCM: the plaintext is cut
into fixed-size segments, each sealed under a nonce holding its position and a last-segment flag, with
the stream header as associated data. Every segment is verified before any of its plaintext is
released, so a reader pulling chunks from storage never acts on forged bytes; reordering, truncation,
extension, splicing and header edits all raise :class:`~evidence.errors.IntegrityError`.

Pure code: callers bring the bytes (file objects, iterables of chunks, a ``fetch`` for ranged reads);
memory stays at about two segments whatever the size of the evidence.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from evidence.errors import IntegrityError, InvalidInput

FORMAT_VERSION: int = 1
MAGIC = b"EVSTRM"
ALGORITHM_AES_256_GCM = 1
DATA_KEY_SIZE = 32
SALT_SIZE = 32
TAG_SIZE: int = 16
PAYLOAD_KEY_INFO = b"evidence-pipeline/stream/v1"

_HEADER_LAYOUT = struct.Struct(">6sBBI32s")  # §3.1: magic, version, algorithm, segment_size, salt
HEADER_SIZE: int = _HEADER_LAYOUT.size

DEFAULT_SEGMENT_SIZE: int = 1024 * 1024
MIN_SEGMENT_SIZE = 16
MAX_SEGMENT_SIZE = 64 * 1024 * 1024
"""§3.1: a reader must buffer one whole segment before it can verify it, so a forged header must not be
able to make it buffer gigabytes."""
MAX_SEGMENTS = 2**32
"""§3.4: far inside the 11-byte counter; at 1 MiB segments that is 4 PiB, beyond any evidence file."""

_Bytes = bytes | bytearray | memoryview


def new_data_key() -> bytes:
    """A fresh per-item data key (§2): 32 bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(DATA_KEY_SIZE)


@dataclass(frozen=True)
class StreamDigests:
    """§3.6: computed in the same pass as the encryption."""

    plaintext_sha256: str
    plaintext_size: int
    ciphertext_sha256: str | None
    """Of the header and every segment exactly as emitted: what the store holds. ``None`` when the
    encryptor was built with ``hash_ciphertext=False``: the caller takes the figure from a store that
    hashes the bytes as it writes them (``storage.vault``), rather than hashing them twice."""
    ciphertext_size: int


@dataclass(frozen=True)
class StreamHeader:
    """§3.1. Field values map one-to-one onto the header bytes, so :meth:`to_bytes` reproduces them."""

    version: int
    algorithm: int
    segment_size: int
    salt: bytes

    def to_bytes(self) -> bytes:
        return _HEADER_LAYOUT.pack(MAGIC, self.version, self.algorithm, self.segment_size, self.salt)


def parse_header(data: bytes) -> StreamHeader:
    """Parse and check the header at the start of ``data`` (§3.1); trailing bytes are ignored."""
    if len(data) < HEADER_SIZE:
        raise IntegrityError(
            f"not an encrypted evidence stream: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    magic, version, algorithm, segment_size, salt = _HEADER_LAYOUT.unpack_from(data)
    if magic != MAGIC:
        raise IntegrityError(f"not an encrypted evidence stream: header starts {magic!r}, not {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise IntegrityError(
            f"encrypted stream format version {version} is not supported (this software reads version "
            f"{FORMAT_VERSION}); the header is damaged or a newer release wrote it"
        )
    if algorithm != ALGORITHM_AES_256_GCM:
        raise IntegrityError(f"encrypted stream names unknown algorithm {algorithm} (only 1, AES-256-GCM)")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise IntegrityError(
            f"encrypted stream header gives segment size {segment_size}, outside "
            f"{MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}: the header is damaged"
        )
    return StreamHeader(version=version, algorithm=algorithm, segment_size=segment_size, salt=salt)


def ciphertext_size(plaintext_size: int, segment_size: int) -> int:
    """Exact size of the v1 stream for a plaintext of ``plaintext_size`` bytes (§4.1)."""
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise InvalidInput(f"plaintext size cannot be negative, got {plaintext_size}")
    return HEADER_SIZE + plaintext_size + TAG_SIZE * _segment_count(plaintext_size, segment_size)


# --- writing --------------------------------------------------------------------------------------------


class StreamEncryptor:
    """Encrypts one stream incrementally (§3). Feed any chunk sizes to :meth:`update`, then call
    :meth:`finalize` once; concatenating every returned ``bytes`` gives the stream.

    ``hash_ciphertext=False`` leaves out the ciphertext SHA-256 (§3.6) for a caller whose sink hashes
    every emitted byte itself, in order: the same figure, one pass fewer. The plaintext SHA-256 is
    always taken, here, while the original is read once."""

    def __init__(
        self, data_key: bytes, *, segment_size: int = DEFAULT_SEGMENT_SIZE, hash_ciphertext: bool = True
    ) -> None:
        _check_data_key(data_key)
        _check_segment_size(segment_size)
        self.header = StreamHeader(
            version=FORMAT_VERSION,
            algorithm=ALGORITHM_AES_256_GCM,
            segment_size=segment_size,
            salt=secrets.token_bytes(SALT_SIZE),
        )
        self._header_bytes = self.header.to_bytes()
        self._aead = _payload_aead(data_key, self.header.salt)
        self._segments = _Segmenter(segment_size)
        self._next_index = 0
        self._header_sent = False
        self._finalized = False
        self._plaintext_hash = _BackgroundSha256()
        self._plaintext_size = 0
        self._ciphertext_hash = _BackgroundSha256() if hash_ciphertext else None
        self._ciphertext_size = 0
        self._digests: StreamDigests | None = None

    def update(self, plaintext: _Bytes) -> bytes:
        """Ciphertext ready so far; the header leads the first output. The last (up to one segment of)
        plaintext is held back: whether it is final is known only at :meth:`finalize`."""
        return _join(self._absorb(plaintext))

    def finalize(self) -> bytes:
        """The final-flagged segment (§3.3): an empty plaintext still yields one empty final segment."""
        return _join(self._finish())

    def digests(self) -> StreamDigests:
        if self._digests is None:
            raise InvalidInput("stream digests are known only after finalize()")
        return self._digests

    def _absorb(self, plaintext: _Bytes) -> list[bytes]:
        if self._finalized:
            raise InvalidInput("this stream is already finalized; start a new StreamEncryptor")
        out = self._header_if_unsent()
        view = memoryview(plaintext).cast("B")
        if view:
            # bytes cannot change under the worker; a buffer the caller may refill is hashed now
            self._plaintext_hash.update(view, immutable=isinstance(plaintext, bytes))
            self._plaintext_size += len(view)
            out.extend(
                self._seal_segment(segment, final=False)
                for segment in self._segments.feed(view, immutable=isinstance(plaintext, bytes))
            )
        return out

    def _finish(self) -> list[bytes]:
        if self._finalized:
            raise InvalidInput("this stream is already finalized")
        out = self._header_if_unsent()
        out.append(self._seal_segment(self._segments.rest(), final=True))
        self._finalized = True
        self._digests = StreamDigests(
            plaintext_sha256=self._plaintext_hash.hexdigest(),
            plaintext_size=self._plaintext_size,
            ciphertext_sha256=self._ciphertext_hash.hexdigest() if self._ciphertext_hash else None,
            ciphertext_size=self._ciphertext_size,
        )
        return out

    def abandon(self) -> None:
        """Give up on this stream (the caller failed part-way): stop the hashing threads."""
        self._finalized = True
        self._plaintext_hash.close()
        if self._ciphertext_hash is not None:
            self._ciphertext_hash.close()

    def _header_if_unsent(self) -> list[bytes]:
        if self._header_sent:
            return []
        self._header_sent = True
        self._count(self._header_bytes)
        return [self._header_bytes]

    def _seal_segment(self, segment: _Bytes, *, final: bool) -> bytes:
        if self._next_index >= MAX_SEGMENTS:
            raise InvalidInput(
                f"plaintext too long for one stream: more than {MAX_SEGMENTS} segments of "
                f"{self.header.segment_size} bytes; use a larger segment size"
            )
        sealed = self._aead.encrypt(_nonce(self._next_index, final=final), segment, self._header_bytes)
        self._next_index += 1
        self._count(sealed)
        return sealed

    def _count(self, emitted: bytes) -> None:
        if self._ciphertext_hash is not None:
            self._ciphertext_hash.update(emitted)
        self._ciphertext_size += len(emitted)


def encrypt_file(
    data_key: bytes,
    source: BinaryIO,
    sink: Callable[[bytes], None],
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    read_size: int = 1024 * 1024,
) -> StreamDigests:
    """Encrypt ``source`` to ``sink`` in one read pass, hashing plaintext and ciphertext on the way.
    ``sink`` receives the header, then each sealed segment, in order."""
    if read_size < 1:
        raise InvalidInput(f"read size must be at least 1 byte, got {read_size}")
    encryptor = StreamEncryptor(data_key, segment_size=segment_size)
    try:
        while chunk := source.read(read_size):
            for piece in encryptor._absorb(chunk):
                sink(piece)
        for piece in encryptor._finish():
            sink(piece)
    except BaseException:
        encryptor.abandon()
        raise
    return encryptor.digests()


def seal(data_key: bytes, plaintext: bytes) -> bytes:
    """A complete v1 stream for a small payload (sealed metadata, thumbnails)."""
    encryptor = StreamEncryptor(data_key)
    return encryptor.update(plaintext) + encryptor.finalize()


def open_sealed(data_key: bytes, sealed: bytes) -> bytes:
    """Inverse of :func:`seal` (any complete v1 stream); ``IntegrityError`` if anything was altered."""
    decryptor = StreamDecryptor(data_key)
    return decryptor.update(sealed) + decryptor.finalize()


# --- reading --------------------------------------------------------------------------------------------


class StreamDecryptor:
    """Decrypts one stream incrementally (§3.5). Every byte returned has been authenticated, but only
    :meth:`finalize` proves the stream was not cut short: act on the plaintext after it returns."""

    def __init__(self, data_key: bytes) -> None:
        _check_data_key(data_key)
        self._data_key = data_key
        self._header_buffer = bytearray()
        self._header_bytes = b""
        self.header: StreamHeader | None = None
        self._aead: AESGCM | None = None
        self._segments: _Segmenter | None = None
        self._next_index = 0
        self._finished = False

    def update(self, ciphertext: _Bytes) -> bytes:
        return _join(self._absorb(ciphertext))

    def finalize(self) -> bytes:
        """The last segment's plaintext; ``IntegrityError`` if the stream has no valid final segment."""
        return self._finish()

    def _absorb(self, ciphertext: _Bytes) -> list[bytes]:
        if self._finished:
            raise InvalidInput("this stream is already finalized; start a new StreamDecryptor")
        view = memoryview(ciphertext).cast("B")
        if self._segments is None:
            wanted = HEADER_SIZE - len(self._header_buffer)
            self._header_buffer += view[:wanted]
            view = view[wanted:]
            if len(self._header_buffer) < HEADER_SIZE:
                return []
            self._start(bytes(self._header_buffer))
            assert self._segments is not None
        return [
            self._open_segment(segment, final=False)
            for segment in self._segments.feed(view, immutable=isinstance(ciphertext, bytes))
        ]

    def _start(self, header_bytes: bytes) -> None:
        self.header = parse_header(header_bytes)
        self._header_bytes = header_bytes
        self._aead = _payload_aead(self._data_key, self.header.salt)
        self._segments = _Segmenter(self.header.segment_size + TAG_SIZE)

    def _finish(self) -> bytes:
        if self._finished:
            raise InvalidInput("this stream is already finalized")
        self._finished = True
        if self._segments is None:
            raise IntegrityError(
                f"encrypted stream truncated: {len(self._header_buffer)} bytes, shorter than the "
                f"{HEADER_SIZE}-byte header"
            )
        last = self._segments.rest()
        if len(last) < TAG_SIZE:
            where = "after the header" if self._next_index == 0 else f"after segment {self._next_index - 1}"
            raise IntegrityError(
                f"encrypted stream truncated: {len(last)} bytes {where}, too few for a segment "
                f"(each carries a {TAG_SIZE}-byte tag); the final segment is missing"
            )
        if len(last) == TAG_SIZE and self._next_index > 0:
            # §3.3: only an empty plaintext has an empty final segment; anything else is not v1 output.
            raise IntegrityError(
                f"encrypted stream has an empty final segment after segment {self._next_index - 1}, "
                "which format v1 never writes"
            )
        return self._open_segment(last, final=True)

    def _open_segment(self, sealed: _Bytes, *, final: bool) -> bytes:
        assert self._aead is not None
        if self._next_index >= MAX_SEGMENTS:
            raise IntegrityError(f"encrypted stream has more than {MAX_SEGMENTS} segments, which v1 forbids")
        plaintext = _open_segment(
            self._aead, self._header_bytes, self._next_index, sealed, final=final, stream_known_to_end=final
        )
        self._next_index += 1
        return plaintext


def decrypt_chunks(data_key: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Verified plaintext of a stream arriving as chunks, one segment at a time. The generator raises
    ``IntegrityError`` at the end if the stream was truncated: consume it to the end before trusting."""
    return _decrypted(StreamDecryptor(data_key), chunks)  # a bad key fails here, not at first next()


def _decrypted(decryptor: StreamDecryptor, chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield from decryptor._absorb(chunk)
    yield decryptor._finish()


# --- random access (§4) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CiphertextSpan:
    start: int
    """Offset into the stored object (inclusive)."""
    end: int
    """Exclusive. ``start == end`` means nothing needs fetching (empty range)."""
    first_segment: int
    skip: int
    """Plaintext bytes to drop from the first decrypted segment."""


def span_for_range(header: StreamHeader, plaintext_size: int, start: int, end: int) -> CiphertextSpan:
    """The stored bytes holding plaintext ``[start, end)`` (§4.2); ``end`` is clamped to the size and a
    range past the end is empty, as with slicing."""
    if start < 0 or start > end:
        raise InvalidInput(f"invalid byte range [{start}, {end}): need 0 <= start <= end")
    if plaintext_size < 0:
        raise InvalidInput(f"plaintext size cannot be negative, got {plaintext_size}")
    segment_size = header.segment_size
    end = min(end, plaintext_size)
    if start >= end:
        return CiphertextSpan(start=HEADER_SIZE, end=HEADER_SIZE, first_segment=0, skip=0)
    first = start // segment_size
    last = (end - 1) // segment_size
    last_length = min(segment_size, plaintext_size - last * segment_size)
    stored_segment = segment_size + TAG_SIZE
    return CiphertextSpan(
        start=HEADER_SIZE + first * stored_segment,
        end=HEADER_SIZE + last * stored_segment + last_length + TAG_SIZE,
        first_segment=first,
        skip=start - first * segment_size,
    )


def decrypt_range(
    data_key: bytes,
    header_bytes: bytes,
    plaintext_size: int,
    start: int,
    end: int,
    fetch: Callable[[int, int], Iterable[bytes]],
) -> Iterator[bytes]:
    """Verified plaintext ``[start, end)`` fetching only the segments that hold it (§4.3).

    ``plaintext_size`` must come from a trusted record (the manifest): it fixes which segment carries
    the final flag, so a stored object that was truncated or extended fails when its end is read.
    """
    _check_data_key(data_key)
    header = parse_header(header_bytes)
    total_segments = _segment_count(plaintext_size, header.segment_size)
    if total_segments > MAX_SEGMENTS:
        raise InvalidInput(f"plaintext size {plaintext_size} needs more than {MAX_SEGMENTS} segments")
    span = span_for_range(header, plaintext_size, start, end)
    if span.start == span.end:
        return iter(())
    return _decrypted_span(
        _payload_aead(data_key, header.salt),
        header,
        span,
        total_segments=total_segments,
        plaintext_size=plaintext_size,
        wanted=min(end, plaintext_size) - start,
        fetch=fetch,
    )


def _decrypted_span(
    aead: AESGCM,
    header: StreamHeader,
    span: CiphertextSpan,
    *,
    total_segments: int,
    plaintext_size: int,
    wanted: int,
    fetch: Callable[[int, int], Iterable[bytes]],
) -> Iterator[bytes]:
    header_bytes = header.to_bytes()
    remaining = wanted
    skip = span.skip
    index = span.first_segment
    stored_segment = header.segment_size + TAG_SIZE
    last_stored = plaintext_size - (total_segments - 1) * header.segment_size + TAG_SIZE
    wanted_sizes = (
        last_stored if i == total_segments - 1 else stored_segment
        for i in range(span.first_segment, total_segments)
    )
    for sealed in _exact_pieces(fetch(span.start, span.end), wanted_sizes, span.end - span.start):
        final = index == total_segments - 1
        plaintext = _open_segment(aead, header_bytes, index, sealed, final=final, stream_known_to_end=False)
        piece = plaintext[skip : skip + remaining]
        skip = 0
        remaining -= len(piece)
        index += 1
        yield piece


# --- internals ------------------------------------------------------------------------------------------


def _check_data_key(data_key: bytes) -> None:
    if len(data_key) != DATA_KEY_SIZE:
        raise InvalidInput(f"data key must be {DATA_KEY_SIZE} bytes, got {len(data_key)}")


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise InvalidInput(
            f"segment size must be {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE} bytes, got {segment_size}"
        )


def _segment_count(plaintext_size: int, segment_size: int) -> int:
    # §3.3: an empty plaintext is one empty final segment; a multiple of the size has no empty tail.
    return max(1, -(-plaintext_size // segment_size))


def _payload_aead(data_key: bytes, salt: bytes) -> AESGCM:
    """§3.2: a per-stream key, so one data key can safely seal several streams of one item."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=PAYLOAD_KEY_INFO)
    return AESGCM(hkdf.derive(data_key))


def _nonce(index: int, *, final: bool) -> bytes:
    """§3.4: 11-byte big-endian segment counter, then the last-segment flag."""
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _open_segment(
    aead: AESGCM, header_bytes: bytes, index: int, sealed: _Bytes, *, final: bool, stream_known_to_end: bool
) -> bytes:
    try:
        return aead.decrypt(_nonce(index, final=final), sealed, header_bytes)
    except InvalidTag:
        pass
    # Authentication failed. Trying the opposite flag tells a cut or extended stream apart from
    # altered bytes; it costs nothing on the success path and a failed open leaks nothing.
    try:
        aead.decrypt(_nonce(index, final=not final), sealed, header_bytes)
    except InvalidTag:
        altered = True
    else:
        altered = False
    if altered:
        hint = " or the stream header" if index == 0 else ""
        raise IntegrityError(
            f"encrypted segment {index} failed authentication: its bytes{hint} were altered, segments were "
            "reordered or spliced in from another stream, or this is not the item's data key"
        ) from None
    if final:
        cause = (
            "the stream was truncated there: its final segment is missing"
            if stream_known_to_end
            else "the stored object is longer than the recorded plaintext size"
        )
        raise IntegrityError(f"encrypted segment {index} is not marked final: {cause}") from None
    raise IntegrityError(
        f"encrypted segment {index} is marked final but more data follows it: bytes were appended "
        "after the end of the stream, or the recorded plaintext size is wrong"
    ) from None


def _join(pieces: list[bytes]) -> bytes:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class _Segmenter:
    """Cuts a byte stream into ``size``-byte segments. The last segment is always held back: whether
    it is final is known only once more bytes arrive or the stream ends.

    Segments that lie inside one input chunk are returned as views of it (no copy); only a segment
    spanning chunks is assembled, and held bytes of a mutable buffer are copied since the caller may
    reuse it.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._held: list[_Bytes] = []
        self._held_size = 0

    def feed(self, view: memoryview, *, immutable: bool) -> list[_Bytes]:
        size, total = self._size, len(view)
        out: list[_Bytes] = []
        position = 0
        if self._held_size:
            position = min(size - self._held_size, total)
            self._hold(view[:position], immutable=immutable)
            if position == total:
                return out
            out.append(self.rest())
        while total - position > size:
            out.append(view[position : position + size])
            position += size
        self._hold(view[position:], immutable=immutable)
        return out

    def rest(self) -> _Bytes:
        held = self._held
        self._held, self._held_size = [], 0
        if len(held) == 1:
            return held[0]
        return b"".join(held)

    def _hold(self, piece: memoryview, *, immutable: bool) -> None:
        if piece:
            self._held.append(piece if immutable else bytes(piece))
            self._held_size += len(piece)


def _exact_pieces(chunks: Iterable[bytes], sizes: Iterable[int], expected_total: int) -> Iterator[_Bytes]:
    """Regroup ``chunks`` into pieces of the given sizes, copying only pieces that span chunks."""
    received = 0
    buffer = bytearray()
    wanted_sizes = iter(sizes)
    wanted = next(wanted_sizes, 0)
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        received += len(view)
        if received > expected_total:
            raise IntegrityError(
                f"storage returned more than the {expected_total} bytes asked for; refusing to guess"
            )
        while view:
            if wanted == 0:  # unreachable while sizes cover expected_total; never loop on empty pieces
                raise IntegrityError("ranged read: more ciphertext than segments to hold it")
            if not buffer and len(view) >= wanted:
                piece: _Bytes = view[:wanted]
                view = view[wanted:]
            else:
                take = wanted - len(buffer)
                buffer += view[:take]
                view = view[take:]
                if len(buffer) < wanted:
                    continue
                piece, buffer = bytes(buffer), bytearray()
            yield piece
            wanted = next(wanted_sizes, 0)
    if received < expected_total:
        raise IntegrityError(
            f"encrypted object ended early: got {received} of {expected_total} bytes for the range; "
            "the stored object is shorter than its recorded size"
        )


_BACKGROUND_HASH_MIN = 64 * 1024


class _BackgroundSha256:
    """SHA-256 whose large updates run on one worker thread, in order, at most one update behind.

    hashlib releases the GIL on large buffers, so hashing there overlaps the caller's encryption (and
    the other hash): the plaintext and ciphertext SHA-256 cost about one pass of wall time on a
    multi-core station. Only immutable data goes to the worker (fresh ``bytes`` read from the file,
    sealed segments); a buffer the caller may reuse is hashed before ``update`` returns. A worker's
    failure is raised by the next call.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def update(self, data: _Bytes, *, immutable: bool = True) -> None:
        self._wait()
        if not immutable or len(data) < _BACKGROUND_HASH_MIN:
            self._hash.update(data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-sha256")
        self._pending = self._pool.submit(self._hash.update, data)

    def hexdigest(self) -> str:
        self._wait()
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
