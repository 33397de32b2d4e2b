"""Streaming compression for backups: gzip, zstd (multi-threaded) or none, in constant memory.

Writers compress what is written to them into a raw binary file; readers yield the
decompressed bytes chunk by chunk and raise :class:`CorruptStream` when the data is
damaged *or ends early* (zstandard's own stream readers accept a truncated frame in
silence, so the end of every frame is checked here).
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import threading
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import zstandard
from django.utils.translation import gettext as _

CHUNK = 1 << 20
# Compressed input is read in pieces of this size.
_INPUT_PIECE = 1 << 17
# zstandard's decompressobj cannot cap its output (and its stream reader cannot tell a truncated
# frame from a complete one), so zstd input goes in small pieces: 16 KiB of an SQL dump expands
# to a few hundred KiB.
_ZSTD_PIECE = 1 << 14

CHOICES = ("gzip", "zstd", "none")
SUFFIXES = {"gzip": ".gz", "zstd": ".zst", "none": ""}
# gzip's own default level: the same size and speed as `pg_dump | gzip`.
GZIP_LEVEL = 6
# Level 1: on SQL dumps as small as level 3 (often smaller) at twice the speed and under half the
# memory (level 3 with threads=-1 needs ~60 MB of buffers).
ZSTD_LEVEL = 1
# One core compresses level 1 at about 500 MB/s, twice what pg_dump produces: one worker thread
# compresses while the dumping thread reads, and more workers get only the cores beyond the two
# that the database server and the dump tool keep busy.  On 2 cores, one worker made a 437 MB
# backup about 0.15 s faster than compressing in the dumping thread, and two (threads=-1) 0.25 s slower.
ZSTD_WORKERS = max(1, (os.cpu_count() or 1) - 2)


class CorruptStream(ValueError):
    """The compressed data is damaged or incomplete."""


def suffix(compression: str) -> str:
    return SUFFIXES[compression]


def compression_of(filename: str) -> str:
    for name, ending in SUFFIXES.items():
        if ending and filename.endswith(ending):
            return name
    return "none"


def _gzip_member(block: bytes) -> bytes:
    # wbits 31: a gzip header and trailer (no file name, mtime 0), as gzip(1) reads them.
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(block) + compressor.flush()


class _GzipWriter:
    """Compresses CHUNK-sized blocks on every core, each as its own gzip member, in order.

    Concatenated members are one valid gzip file (``gunzip -c`` and every gzip reader accept
    them), so this is gzip(1)'s format at gzip's level, at pigz's speed: the single-threaded
    compressor was the slowest part of ``pg_dump | gzip``.  zlib releases the GIL while it works.
    Memory: at most two blocks per core in flight.
    """

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.workers = os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="gzip")
        self.pending: collections.deque[Future[bytes]] = collections.deque()
        self.buffer = bytearray()
        self.members = 0

    def write(self, data) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self._submit(bytes(self.buffer))
            self.buffer.clear()
        return len(data)

    def _submit(self, block: bytes) -> None:
        self.pending.append(self.pool.submit(_gzip_member, block))
        self.members += 1
        while len(self.pending) > 2 * self.workers:
            self.raw.write(self.pending.popleft().result())

    def close(self) -> None:
        if self.buffer or not self.members:  # an empty input still makes a valid gzip file
            self._submit(bytes(self.buffer))
        while self.pending:
            self.raw.write(self.pending.popleft().result())
        self.pool.shutdown()

    def abandon(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class _PlainWriter:
    def __init__(self, raw: BinaryIO):
        self.raw = raw

    def write(self, data) -> int:
        return self.raw.write(data)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def writer(raw: BinaryIO, compression: str):
    """A file-like whose ``write`` compresses into ``raw``; the stream is finished on a clean exit."""
    stream: _GzipWriter | _PlainWriter | zstandard.ZstdCompressionWriter
    if compression == "gzip":
        stream = _GzipWriter(raw)
    elif compression == "zstd":
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_WORKERS, write_checksum=True)
        stream = compressor.stream_writer(raw, closefd=False, write_size=CHUNK)
    elif compression == "none":
        stream = _PlainWriter(raw)
    else:
        raise ValueError(
            _("unknown compression %(compression)r; use one of %(choices)s") % {"compression": compression, "choices": ", ".join(CHOICES)}
        )
    try:
        yield stream
    except BaseException:
        # The output is discarded anyway; just stop any worker threads.
        getattr(stream, "abandon", lambda: None)()
        raise
    stream.close()


def _pieces(raw: BinaryIO, size: int = _INPUT_PIECE) -> Iterator[bytes]:
    while piece := raw.read(size):
        yield piece


def _gzip_chunks(raw: BinaryIO) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(47)  # 32 + 15: a gzip header, checked with its CRC and length
    for piece in _pieces(raw):
        while piece:
            try:
                output = decompressor.decompress(piece, CHUNK)
            except zlib.error as error:
                raise CorruptStream(_("the gzip data is damaged (%(error)s)") % {"error": error}) from None
            if output:
                yield output
            if decompressor.eof:
                # gzip allows several members one after another (cat a.gz b.gz).
                piece = decompressor.unused_data
                if piece:
                    decompressor = zlib.decompressobj(47)
            else:
                piece = decompressor.unconsumed_tail
    if not decompressor.eof:
        raise CorruptStream(_("the gzip data ends early (the file is truncated)"))


def _zstd_chunks(raw: BinaryIO) -> Iterator[bytes]:
    factory = zstandard.ZstdDecompressor()
    decompressor = factory.decompressobj(write_size=CHUNK)
    for piece in _pieces(raw, _ZSTD_PIECE):
        while piece:
            try:
                output = decompressor.decompress(piece)
            except zstandard.ZstdError as error:
                raise CorruptStream(_("the zstd data is damaged (%(error)s)") % {"error": error}) from None
            if output:
                yield output
            piece = b""
            if decompressor.eof and decompressor.unused_data:
                piece = decompressor.unused_data
                decompressor = factory.decompressobj(write_size=CHUNK)
    if not decompressor.eof:
        raise CorruptStream(_("the zstd data ends early (the file is truncated)"))


def _plain_chunks(raw: BinaryIO) -> Iterator[bytes]:
    while chunk := raw.read(CHUNK):
        yield chunk


def chunks(raw: BinaryIO, compression: str) -> Iterator[bytes]:
    """The decompressed content of ``raw``, chunk by chunk (gzip: at most CHUNK bytes each)."""
    readers = {"gzip": _gzip_chunks, "zstd": _zstd_chunks, "none": _plain_chunks}
    if compression not in readers:
        raise ValueError(
            _("unknown compression %(compression)r; use one of %(choices)s") % {"compression": compression, "choices": ", ".join(CHOICES)}
        )
    return readers[compression](raw)


_END = object()


def read_ahead(source: Iterable[bytes], depth: int = 8) -> Iterator[bytes]:
    """``source``'s chunks, produced by a thread up to ``depth`` chunks ahead of the consumer.

    A restore then decompresses while the database client works, as ``gunzip -c f | psql`` does
    with two processes (zlib and zstandard release the GIL).  An error in ``source`` is raised
    here, in order; leaving early stops the thread.
    """
    ahead: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for chunk in source:
                if not hand_over(chunk):
                    return
            hand_over(_END)
        except BaseException as error:  # handed to the consumer, which raises it
            hand_over(error)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()

    producer = threading.Thread(target=produce, name="deploy_ops-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item = ahead.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        producer.join()
