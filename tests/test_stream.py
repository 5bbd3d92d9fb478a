"""Encrypted stream format v1 (docs/format.md §3-§4): round trips, every tamper class, ranged reads."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
import struct
import threading
import tracemalloc
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence import stream
from evidence.errors import IntegrityError, InvalidInput

SEGMENT = 4096
STORED = SEGMENT + stream.TAG_SIZE
KEY = bytes(range(32))

fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encrypt(plaintext: bytes, *, key: bytes = KEY, segment_size: int = SEGMENT) -> bytes:
    encryptor = stream.StreamEncryptor(key, segment_size=segment_size)
    return encryptor.update(plaintext) + encryptor.finalize()


def decrypt(ciphertext: bytes, *, key: bytes = KEY) -> bytes:
    decryptor = stream.StreamDecryptor(key)
    return decryptor.update(ciphertext) + decryptor.finalize()


def segments_of(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    body = ciphertext[stream.HEADER_SIZE :]
    return ciphertext[: stream.HEADER_SIZE], [body[i : i + STORED] for i in range(0, len(body), STORED)]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 5 * SEGMENT + 123], ids=str
)
def test_round_trip_at_segment_boundaries(size: int) -> None:
    plaintext = os.urandom(size)
    encryptor = stream.StreamEncryptor(KEY, segment_size=SEGMENT)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()

    assert len(ciphertext) == stream.ciphertext_size(size, SEGMENT)
    assert decrypt(ciphertext) == plaintext
    assert b"".join(stream.decrypt_chunks(KEY, [ciphertext])) == plaintext
    expected_segments = max(1, -(-size // SEGMENT))
    assert len(ciphertext) == stream.HEADER_SIZE + size + 16 * expected_segments
    digests = encryptor.digests()
    assert digests == stream.StreamDigests(
        plaintext_sha256=hashlib.sha256(plaintext).hexdigest(),
        plaintext_size=size,
        ciphertext_sha256=hashlib.sha256(ciphertext).hexdigest(),
        ciphertext_size=len(ciphertext),
    )


@fast
@given(
    plaintext=st.binary(max_size=6 * 100),
    segment_size=st.sampled_from([16, 100, 4096]),
    input_cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    output_cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_round_trip_any_chunking(
    plaintext: bytes, segment_size: int, input_cuts: list[int], output_cuts: list[int]
) -> None:
    encryptor = stream.StreamEncryptor(KEY, segment_size=segment_size)
    ciphertext = b"".join(encryptor.update(piece) for piece in split_at(plaintext, input_cuts))
    ciphertext += encryptor.finalize()

    assert len(ciphertext) == stream.ciphertext_size(len(plaintext), segment_size)
    assert encryptor.digests().ciphertext_sha256 == hashlib.sha256(ciphertext).hexdigest()
    assert encryptor.digests().plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
    pieces = list(stream.decrypt_chunks(KEY, split_at(ciphertext, output_cuts)))
    assert b"".join(pieces) == plaintext


@fast
@given(plaintext=st.binary(min_size=1, max_size=3000), read_size=st.integers(min_value=1, max_value=700))
def test_encrypt_file_streams_the_same_format(plaintext: bytes, read_size: int) -> None:
    sunk: list[bytes] = []
    digests = stream.encrypt_file(
        KEY, io.BytesIO(plaintext), sunk.append, segment_size=256, read_size=read_size
    )
    ciphertext = b"".join(sunk)
    assert decrypt(ciphertext) == plaintext
    assert digests.ciphertext_sha256 == hashlib.sha256(ciphertext).hexdigest()
    assert digests.ciphertext_size == len(ciphertext)
    assert digests.plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
    assert digests.plaintext_size == len(plaintext)


def test_without_the_ciphertext_hash_the_stream_and_plaintext_digest_are_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # For a sink that hashes every byte it is given (the local store): the same stream, one pass fewer.
    plaintext = os.urandom(2 * 1024 * 1024 + 5)
    monkeypatch.setattr(stream.secrets, "token_bytes", lambda n: b"s" * n)  # one salt: the same bytes
    hashed = stream.StreamEncryptor(KEY, segment_size=SEGMENT)
    unhashed = stream.StreamEncryptor(KEY, segment_size=SEGMENT, hash_ciphertext=False)
    with_hash = hashed.update(plaintext) + hashed.finalize()
    without_hash = unhashed.update(plaintext) + unhashed.finalize()

    assert without_hash == with_hash
    assert decrypt(without_hash) == plaintext
    assert unhashed.digests() == stream.StreamDigests(
        plaintext_sha256=hashlib.sha256(plaintext).hexdigest(),
        plaintext_size=len(plaintext),
        ciphertext_sha256=None,
        ciphertext_size=len(with_hash),
    )
    assert hashed.digests().ciphertext_sha256 == hashlib.sha256(with_hash).hexdigest()


def _hashing_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("stream-sha256")]


def test_a_reused_buffer_is_hashed_before_update_returns() -> None:
    # The plaintext is hashed on a worker only when it is bytes; a buffer the caller refills after
    # update() must be hashed as it was, so it never goes to the worker.
    encryptor = stream.StreamEncryptor(KEY, segment_size=SEGMENT)
    threads_before = set(_hashing_threads())
    buffer = bytearray(b"a" * 200_000)
    ciphertext = encryptor.update(buffer)
    assert set(_hashing_threads()) == threads_before  # no worker (4 KiB segments: none for them either)
    buffer[:] = b"b" * 200_000
    ciphertext += encryptor.update(buffer) + encryptor.finalize()

    expected = b"a" * 200_000 + b"b" * 200_000
    assert encryptor.digests().plaintext_sha256 == hashlib.sha256(expected).hexdigest()
    assert decrypt(ciphertext) == expected


def test_a_failure_on_the_hashing_thread_is_raised_to_the_caller() -> None:
    class BrokenHash:
        def update(self, data: bytes) -> None:
            raise MemoryError("hash state lost")

    hasher = stream._BackgroundSha256()
    hasher._hash = BrokenHash()  # type: ignore[assignment]
    hasher.update(b"x" * (1024 * 1024))  # goes to the worker, which fails there
    with pytest.raises(MemoryError, match="hash state lost"):
        hasher.hexdigest()
    hasher.close()
    assert _hashing_threads() == []


def test_abandoning_a_stream_stops_its_hashing_threads() -> None:
    encryptor = stream.StreamEncryptor(KEY)
    encryptor.update(os.urandom(3 * 1024 * 1024))  # both hashes now have a worker thread
    assert _hashing_threads()
    encryptor.abandon()
    assert _hashing_threads() == []
    with pytest.raises(InvalidInput, match="already finalized"):
        encryptor.update(b"more")


def test_large_segments_hash_in_background_and_still_match() -> None:
    plaintext = os.urandom(3 * 1024 * 1024 + 17)  # 1 MiB segments go through the worker thread
    sunk: list[bytes] = []
    digests = stream.encrypt_file(KEY, io.BytesIO(plaintext), sunk.append, read_size=300_000)
    ciphertext = b"".join(sunk)
    assert digests.ciphertext_sha256 == hashlib.sha256(ciphertext).hexdigest()
    assert digests.plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
    assert decrypt(ciphertext) == plaintext


def test_caller_may_reuse_its_buffer_after_update() -> None:
    plaintext = os.urandom(3 * SEGMENT + 500)
    buffer = bytearray(1000)
    encryptor = stream.StreamEncryptor(KEY, segment_size=SEGMENT)
    out = []
    for start in range(0, len(plaintext), 1000):
        piece = plaintext[start : start + 1000]
        buffer[: len(piece)] = piece
        out.append(encryptor.update(memoryview(buffer)[: len(piece)]))
        buffer[:] = bytes(1000)  # scribble over it: held-back bytes must have been copied
    out.append(encryptor.finalize())
    ciphertext = b"".join(out)
    assert decrypt(ciphertext) == plaintext

    decryptor = stream.StreamDecryptor(KEY)
    recovered = []
    for start in range(0, len(ciphertext), 999):
        buffer = bytearray(ciphertext[start : start + 999])
        recovered.append(decryptor.update(buffer))
        buffer[:] = bytes(len(buffer))
    recovered.append(decryptor.finalize())
    assert b"".join(recovered) == plaintext


def test_seal_and_open_sealed() -> None:
    payload = b'{"file_name": "DSC_0001.JPG", "gps": [51.5, -0.12]}'
    sealed = stream.seal(KEY, payload)
    assert stream.open_sealed(KEY, sealed) == payload
    assert stream.seal(KEY, payload) != sealed  # fresh salt every time
    assert stream.open_sealed(KEY, stream.seal(KEY, b"")) == b""
    with pytest.raises(IntegrityError):
        stream.open_sealed(stream.new_data_key(), sealed)
    with pytest.raises(IntegrityError):
        stream.open_sealed(KEY, sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_one_data_key_seals_several_streams_independently() -> None:
    content, thumbnail = encrypt(b"A" * 5000), encrypt(b"A" * 5000)
    assert content[12:44] != thumbnail[12:44]
    assert content[44:] != thumbnail[44:]  # different payload keys: no keystream shared


def test_new_data_keys_are_random_32_bytes() -> None:
    keys = {stream.new_data_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(key) == 32 for key in keys)


def test_no_run_of_plaintext_appears_in_ciphertext() -> None:
    for plaintext in (
        os.urandom(4 * SEGMENT),
        b"".join(b"frame %08d gps 51.50%04d -0.12 officer 4471;" % (i, i) for i in range(500)),
    ):
        ciphertext = encrypt(plaintext)
        windows = {ciphertext[i : i + 64] for i in range(len(ciphertext) - 63)}
        leaked = [i for i in range(len(plaintext) - 63) if plaintext[i : i + 64] in windows]
        assert leaked == []


# --- the format is what docs/format.md says ----------------------------------------------------------


def _spec_payload_key(key: bytes, salt: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"evidence-pipeline/stream/v1")
    return AESGCM(hkdf.derive(key))


def test_output_matches_the_documented_layout() -> None:
    plaintext = os.urandom(2 * SEGMENT + 10)
    ciphertext = encrypt(plaintext)
    magic, version, algorithm, segment_size, salt = struct.unpack(">6sBBI32s", ciphertext[:44])
    assert (magic, version, algorithm, segment_size) == (b"EVSTRM", 1, 1, SEGMENT)
    assert stream.HEADER_SIZE == 44
    aead = _spec_payload_key(KEY, salt)
    header, sealed = segments_of(ciphertext)
    assert [len(s) for s in sealed] == [STORED, STORED, 10 + 16]
    opened = [
        aead.decrypt(i.to_bytes(11, "big") + bytes([i == len(sealed) - 1]), s, header)
        for i, s in enumerate(sealed)
    ]
    assert b"".join(opened) == plaintext


def _spec_stream(parts: list[bytes], *, segment_size: int = 16) -> bytes:
    salt = os.urandom(32)
    header = b"EVSTRM" + bytes([1, 1]) + segment_size.to_bytes(4, "big") + salt
    aead = _spec_payload_key(KEY, salt)
    return header + b"".join(
        aead.encrypt(i.to_bytes(11, "big") + bytes([i == len(parts) - 1]), part, header)
        for i, part in enumerate(parts)
    )


def test_rejects_an_empty_final_segment_after_data() -> None:
    # Only a key holder could make this; v1 writers never do, so one canonical encoding per plaintext.
    assert stream.open_sealed(KEY, _spec_stream([b"0123456789abcdef", b"x"])) == b"0123456789abcdefx"
    with pytest.raises(IntegrityError, match="empty final segment after segment 0"):
        stream.open_sealed(KEY, _spec_stream([b"0123456789abcdef", b""]))


def test_reads_a_stream_built_from_the_spec_alone() -> None:
    salt = os.urandom(32)
    header = b"EVSTRM" + bytes([1, 1]) + (16).to_bytes(4, "big") + salt
    aead = _spec_payload_key(KEY, salt)
    parts = [b"0123456789abcdef", b"tail"]
    body = b"".join(
        aead.encrypt(i.to_bytes(11, "big") + bytes([i == len(parts) - 1]), part, header)
        for i, part in enumerate(parts)
    )
    assert stream.open_sealed(KEY, header + body) == b"0123456789abcdeftail"
    assert stream.parse_header(header) == stream.StreamHeader(1, 1, 16, salt)
    assert stream.parse_header(header).to_bytes() == header


# --- tampering ------------------------------------------------------------------------------------------


@pytest.fixture
def sample() -> tuple[bytes, bytes]:
    plaintext = os.urandom(4 * SEGMENT + 1000)
    return plaintext, encrypt(plaintext)


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x40]) + data[offset + 1 :]


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (0, "not an encrypted evidence stream"),
        (6, "version"),
        (7, "algorithm"),
        (8, "segment size"),
        (11, "segment 0 failed authentication"),  # segment size still in range, but not the sealed one
        (12, "segment 0 failed authentication"),
        (43, "segment 0 failed authentication"),
    ],
)
def test_header_edits_are_detected(sample: tuple[bytes, bytes], offset: int, message: str) -> None:
    _, ciphertext = sample
    with pytest.raises(IntegrityError, match=message):
        decrypt(_flip(ciphertext, offset))


def test_flipped_byte_in_a_segment_is_detected_before_its_plaintext_is_released(
    sample: tuple[bytes, bytes],
) -> None:
    plaintext, ciphertext = sample
    tampered = _flip(ciphertext, stream.HEADER_SIZE + 2 * STORED + 100)
    released = []
    with pytest.raises(IntegrityError, match="segment 2 failed authentication"):
        for piece in stream.decrypt_chunks(
            KEY, [tampered[i : i + 1000] for i in range(0, len(tampered), 1000)]
        ):
            released.append(piece)
    assert b"".join(released) == plaintext[: 2 * SEGMENT]


def test_flipped_byte_in_a_tag_is_detected(sample: tuple[bytes, bytes]) -> None:
    _, ciphertext = sample
    with pytest.raises(IntegrityError, match="segment 1 failed authentication"):
        decrypt(_flip(ciphertext, stream.HEADER_SIZE + 2 * STORED - 1))
    with pytest.raises(IntegrityError, match="segment 4 failed authentication"):
        decrypt(_flip(ciphertext, len(ciphertext) - 1))


def test_dropping_the_last_segment_is_detected_as_truncation(sample: tuple[bytes, bytes]) -> None:
    _, ciphertext = sample
    header, sealed = segments_of(ciphertext)
    with pytest.raises(IntegrityError, match="segment 3 is not marked final: the stream was truncated"):
        decrypt(header + b"".join(sealed[:-1]))


def test_dropping_a_middle_segment_is_detected(sample: tuple[bytes, bytes]) -> None:
    _, ciphertext = sample
    header, sealed = segments_of(ciphertext)
    with pytest.raises(IntegrityError, match="segment 2 failed authentication"):
        decrypt(header + b"".join(sealed[:2] + sealed[3:]))


def test_swapping_segments_is_detected(sample: tuple[bytes, bytes]) -> None:
    _, ciphertext = sample
    header, sealed = segments_of(ciphertext)
    sealed[1], sealed[2] = sealed[2], sealed[1]
    with pytest.raises(IntegrityError, match="segment 1 failed authentication"):
        decrypt(header + b"".join(sealed))


def test_appending_after_the_final_segment_is_detected(sample: tuple[bytes, bytes]) -> None:
    _, ciphertext = sample
    _, sealed = segments_of(ciphertext)
    # the short final segment is now framed together with what follows it
    with pytest.raises(IntegrityError, match="segment 4 failed authentication"):
        decrypt(ciphertext + sealed[0])
    with pytest.raises(IntegrityError, match="segment 4 failed authentication"):
        decrypt(ciphertext + bytes(stream.TAG_SIZE))


def test_appending_to_a_stream_ending_on_a_segment_boundary_is_detected() -> None:
    ciphertext = encrypt(os.urandom(2 * SEGMENT))
    _, sealed = segments_of(ciphertext)
    with pytest.raises(IntegrityError, match="segment 1 is marked final but more data follows"):
        decrypt(ciphertext + sealed[0])
    with pytest.raises(IntegrityError, match="segment 1 is marked final but more data follows"):
        decrypt(ciphertext + bytes(stream.TAG_SIZE))


def test_splicing_a_segment_from_another_stream_with_the_same_key_is_detected(
    sample: tuple[bytes, bytes],
) -> None:
    plaintext, ciphertext = sample
    header, sealed = segments_of(ciphertext)
    _, other = segments_of(encrypt(plaintext))  # same key, same plaintext, different salt
    sealed[1] = other[1]
    with pytest.raises(IntegrityError, match="segment 1 failed authentication"):
        decrypt(header + b"".join(sealed))


@pytest.mark.parametrize("cut", [1, 15, 16, 17, STORED // 2])
def test_truncation_inside_a_segment_is_detected(sample: tuple[bytes, bytes], cut: int) -> None:
    _, ciphertext = sample
    with pytest.raises(IntegrityError, match=r"segment|truncated"):
        decrypt(ciphertext[:-cut])


@pytest.mark.parametrize("length", [0, 10, stream.HEADER_SIZE, stream.HEADER_SIZE + 15])
def test_streams_too_short_to_hold_a_segment_are_rejected(sample: tuple[bytes, bytes], length: int) -> None:
    _, ciphertext = sample
    with pytest.raises(IntegrityError, match="truncated"):
        decrypt(ciphertext[:length])


def test_wrong_data_key_is_detected(sample: tuple[bytes, bytes]) -> None:
    _, ciphertext = sample
    with pytest.raises(IntegrityError, match=r"segment 0 failed authentication.*not the item's data key"):
        decrypt(ciphertext, key=stream.new_data_key())


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            b"EVSTRX" + bytes([1, 1]) + (4096).to_bytes(4, "big") + bytes(32),
            "not an encrypted evidence stream",
        ),
        (b"EVSTRM" + bytes([2, 1]) + (4096).to_bytes(4, "big") + bytes(32), "version 2"),
        (b"EVSTRM" + bytes([1, 9]) + (4096).to_bytes(4, "big") + bytes(32), "algorithm 9"),
        (b"EVSTRM" + bytes([1, 1]) + (0).to_bytes(4, "big") + bytes(32), "segment size 0"),
        (b"EVSTRM" + bytes([1, 1]) + (2**32 - 1).to_bytes(4, "big") + bytes(32), "segment size"),
        (b"EVSTRM\x01\x01", "shorter than"),
    ],
)
def test_bad_headers_are_rejected(header: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        stream.parse_header(header)


# --- limits and misuse --------------------------------------------------------------------------------


def test_segment_counter_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    ciphertext = encrypt(os.urandom(3 * 16 + 1), segment_size=16)  # four segments
    monkeypatch.setattr(stream, "MAX_SEGMENTS", 3)
    encryptor = stream.StreamEncryptor(KEY, segment_size=16)
    with pytest.raises(InvalidInput, match="more than 3 segments"):
        encryptor.update(os.urandom(3 * 16 + 1))
        encryptor.finalize()
    with pytest.raises(IntegrityError, match="more than 3 segments"):
        decrypt(ciphertext)


def test_misuse_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="32 bytes"):
        stream.StreamEncryptor(b"short")
    with pytest.raises(InvalidInput, match="32 bytes"):
        stream.StreamDecryptor(b"short")
    with pytest.raises(InvalidInput, match="segment size"):
        stream.StreamEncryptor(KEY, segment_size=8)
    with pytest.raises(InvalidInput, match="segment size"):
        stream.StreamEncryptor(KEY, segment_size=128 * 1024 * 1024)
    encryptor = stream.StreamEncryptor(KEY, segment_size=SEGMENT)
    with pytest.raises(InvalidInput, match="after finalize"):
        encryptor.digests()
    encryptor.finalize()
    with pytest.raises(InvalidInput, match="finalized"):
        encryptor.update(b"more")
    with pytest.raises(InvalidInput, match="read size"):
        stream.encrypt_file(KEY, io.BytesIO(b"x"), lambda _: None, read_size=0)


def test_memory_stays_bounded_whatever_the_size() -> None:
    segment_size = 256 * 1024
    total = 48 * 1024 * 1024
    block = os.urandom(1024 * 1024)

    class Camera(io.RawIOBase):  # a 48 MiB file that never exists in memory at once
        remaining = total

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            size = min(size, self.remaining, len(block))
            self.remaining -= size
            return block[:size]

    ciphertext_hash = hashlib.sha256()
    stored: list[bytes] = []

    def sink(piece: bytes) -> None:
        ciphertext_hash.update(piece)
        stored.append(piece)
        if len(stored) > 4:
            stored.pop(0)

    tracemalloc.start()
    try:
        digests = stream.encrypt_file(KEY, Camera(), sink, segment_size=segment_size, read_size=700_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digests.plaintext_size == total
    assert digests.ciphertext_sha256 == ciphertext_hash.hexdigest()
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes for a {total}-byte stream"


def test_decrypting_holds_at_most_about_two_segments() -> None:
    segment_size = 64 * 1024

    def encrypted_chunks() -> Iterator[bytes]:
        encryptor = stream.StreamEncryptor(KEY, segment_size=segment_size)
        for i in range(400):  # 25 MiB
            yield encryptor.update(i.to_bytes(4, "big") * 16384)
        yield encryptor.finalize()

    tracemalloc.start()
    try:
        size = sum(len(piece) for piece in stream.decrypt_chunks(KEY, encrypted_chunks()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 400 * 65536
    assert peak < 1024 * 1024


# --- ranged reads (§4) --------------------------------------------------------------------------------


class RecordingStore:
    """A stored object answering ranged GETs in uneven chunks, recording what was asked."""

    def __init__(self, ciphertext: bytes, chunk: int = 1500) -> None:
        self.ciphertext = ciphertext
        self.chunk = chunk
        self.calls: list[tuple[int, int]] = []

    def fetch(self, start: int, end: int) -> Iterator[bytes]:
        self.calls.append((start, end))
        data = self.ciphertext[start:end]
        return iter([data[i : i + self.chunk] for i in range(0, len(data), self.chunk)])


@fast
@given(
    size=st.integers(min_value=0, max_value=6 * 256 + 50),
    segment_size=st.sampled_from([16, 100, 256]),
    start=st.integers(min_value=0, max_value=2000),
    length=st.integers(min_value=0, max_value=2000),
    chunk=st.integers(min_value=1, max_value=600),
)
def test_ranged_decrypt_equals_slicing_and_fetches_only_needed_segments(
    size: int, segment_size: int, start: int, length: int, chunk: int
) -> None:
    plaintext = random.Random(size).randbytes(size)
    ciphertext = encrypt(plaintext, segment_size=segment_size)
    store = RecordingStore(ciphertext, chunk=chunk)
    end = start + length

    got = b"".join(stream.decrypt_range(KEY, ciphertext[: stream.HEADER_SIZE], size, start, end, store.fetch))

    assert got == plaintext[start:end]
    wanted = plaintext[start:end]
    if not wanted:
        assert store.calls == []
        return
    stored_segment = segment_size + 16
    first, last = start // segment_size, (min(end, size) - 1) // segment_size
    assert len(store.calls) == 1
    fetch_start, fetch_end = store.calls[0]
    assert fetch_start == stream.HEADER_SIZE + first * stored_segment
    assert fetch_end == min(stream.HEADER_SIZE + (last + 1) * stored_segment, len(ciphertext))
    assert fetch_end - fetch_start <= (last - first + 1) * stored_segment


def test_span_for_range() -> None:
    header = stream.StreamHeader(1, 1, 1000, bytes(32))
    span = stream.span_for_range(header, 3500, 1500, 2500)
    assert span == stream.CiphertextSpan(start=44 + 1016, end=44 + 3 * 1016, first_segment=1, skip=500)
    last = stream.span_for_range(header, 3500, 3400, 10_000)
    assert last == stream.CiphertextSpan(
        start=44 + 3 * 1016, end=44 + 3 * 1016 + 500 + 16, first_segment=3, skip=400
    )
    assert last.end == stream.ciphertext_size(3500, 1000)
    empty = stream.span_for_range(header, 3500, 5000, 6000)
    assert empty.start == empty.end
    with pytest.raises(InvalidInput):
        stream.span_for_range(header, 3500, -1, 10)
    with pytest.raises(InvalidInput):
        stream.span_for_range(header, 3500, 20, 10)


def test_ranged_read_detects_tampering_in_the_fetched_segments(sample: tuple[bytes, bytes]) -> None:
    plaintext, ciphertext = sample
    tampered = _flip(ciphertext, stream.HEADER_SIZE + STORED + 7)
    store = RecordingStore(tampered)
    header = tampered[: stream.HEADER_SIZE]
    assert b"".join(stream.decrypt_range(KEY, header, len(plaintext), 0, 100, store.fetch)) == plaintext[:100]
    with pytest.raises(IntegrityError, match="segment 1 failed authentication"):
        b"".join(stream.decrypt_range(KEY, header, len(plaintext), SEGMENT, SEGMENT + 10, store.fetch))
    with pytest.raises(IntegrityError, match="segment 0 failed authentication"):
        b"".join(
            stream.decrypt_range(
                KEY, _flip(header, 20), len(plaintext), 0, 10, RecordingStore(ciphertext).fetch
            )
        )


def test_ranged_read_detects_a_size_that_disagrees_with_the_object(sample: tuple[bytes, bytes]) -> None:
    plaintext, ciphertext = sample
    header = ciphertext[: stream.HEADER_SIZE]
    size = len(plaintext)
    shorter = encrypt(plaintext[: 4 * SEGMENT])  # an object cut back to whole segments, resealed elsewhere
    truncated_store = RecordingStore(ciphertext[: stream.HEADER_SIZE + 4 * STORED])
    with pytest.raises(IntegrityError, match="ended early"):
        b"".join(stream.decrypt_range(KEY, header, size, size - 10, size, truncated_store.fetch))
    with pytest.raises(IntegrityError, match="segment 3 is not marked final"):
        b"".join(
            stream.decrypt_range(
                KEY, header, 4 * SEGMENT, 3 * SEGMENT, 4 * SEGMENT, RecordingStore(ciphertext).fetch
            )
        )
    with pytest.raises(IntegrityError, match="segment 3 is marked final but more data follows"):
        b"".join(
            stream.decrypt_range(
                KEY,
                shorter[: stream.HEADER_SIZE],
                size,
                3 * SEGMENT,
                3 * SEGMENT + 5,
                RecordingStore(shorter).fetch,
            )
        )


def test_ranged_read_refuses_a_fetch_returning_too_much(sample: tuple[bytes, bytes]) -> None:
    plaintext, ciphertext = sample

    def generous_fetch(start: int, end: int) -> list[bytes]:
        return [ciphertext[start : end + 10]]

    with pytest.raises(IntegrityError, match="more than"):
        b"".join(stream.decrypt_range(KEY, ciphertext[:44], len(plaintext), 0, 10, generous_fetch))


def test_bad_arguments_fail_at_the_call_not_at_first_read(sample: tuple[bytes, bytes]) -> None:
    plaintext, ciphertext = sample
    store = RecordingStore(ciphertext)
    with pytest.raises(InvalidInput):
        stream.decrypt_range(KEY, ciphertext[:44], len(plaintext), 10, 5, store.fetch)
    with pytest.raises(IntegrityError):
        stream.decrypt_range(KEY, b"EVSTRM", len(plaintext), 0, 5, store.fetch)
    with pytest.raises(InvalidInput):
        stream.decrypt_chunks(b"short", [ciphertext])
    assert store.calls == []
