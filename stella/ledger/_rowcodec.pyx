# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The ledger's Avro rows decoded by a loop compiled for its one schema.

fastavro's reader interprets the schema for every field of every row (a chain of type
tests and calls per value), which made decoding ~8 of the ~20 µs a json:raw export
spends per record. This loop knows the field order of ``schemas/ledger-record.avsc``
and costs ~1 µs per row. It is the fast path only: :func:`stella.ledger.store.read_rows`
uses it when a segment's header carries exactly that schema, and hands any block it
refuses (every ``ValueError`` here) to fastavro, whose rows or error are then the
answer, so a malformed segment reads (or fails) exactly as it did without this module.

Every read is bounds-checked against the block: a hostile length or count runs out of
bytes and raises, it never reads past the buffer.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint64_t


cdef int64_t _long(const unsigned char* buf, Py_ssize_t end, Py_ssize_t* pos) except? -1:
    """An Avro ``long``: a zig-zag varint of at most 10 bytes."""
    cdef uint64_t acc = 0
    cdef unsigned int shift = 0
    cdef unsigned char byte
    cdef Py_ssize_t at = pos[0]
    while True:
        if at >= end:
            raise ValueError("row runs past the end of its block")
        byte = buf[at]
        at += 1
        acc |= (<uint64_t>(byte & 0x7F)) << shift
        if not (byte & 0x80):
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    pos[0] = at
    return <int64_t>((acc >> 1) ^ (-(acc & 1)))


cdef Py_ssize_t _length(const unsigned char* buf, Py_ssize_t end, Py_ssize_t* pos) except -1:
    cdef int64_t size = _long(buf, end, pos)
    if size < 0 or size > end - pos[0]:
        raise ValueError("length prefix outside its block")
    return <Py_ssize_t>size


cdef str _string(const unsigned char* buf, Py_ssize_t end, Py_ssize_t* pos):
    cdef Py_ssize_t size = _length(buf, end, pos)
    cdef Py_ssize_t at = pos[0]
    pos[0] = at + size
    return PyUnicode_DecodeUTF8(<const char*>buf + at, size, NULL)  # strict, as fastavro's default


cdef object _optional(const unsigned char* buf, Py_ssize_t end, Py_ssize_t* pos):
    """``["null", "string"]``: branch 0 or 1."""
    cdef int64_t branch = _long(buf, end, pos)
    if branch == 0:
        return None
    if branch == 1:
        return _string(buf, end, pos)
    raise ValueError("union branch out of range")


cdef list _strings(const unsigned char* buf, Py_ssize_t end, Py_ssize_t* pos):
    """An array of strings: blocks of items until a zero count (a negative count carries a size)."""
    cdef list items = []
    cdef int64_t count
    cdef int64_t index
    while True:
        count = _long(buf, end, pos)
        if count == 0:
            return items
        if count < 0:
            count = -count
            _long(buf, end, pos)
        for index in range(count):  # every item takes at least a byte: a false count runs out
            items.append(_string(buf, end, pos))


def decode_block(const unsigned char[::1] data, Py_ssize_t count, tuple kinds):
    """The ``count`` rows of one decompressed block, as fastavro's dicts; ``kinds``: the enum's symbols."""
    cdef Py_ssize_t end = data.shape[0]
    cdef const unsigned char* buf = &data[0] if end else NULL
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t index
    cdef Py_ssize_t size
    cdef int64_t kind
    cdef Py_ssize_t symbols = len(kinds)
    cdef list rows = []
    if count < 0:
        raise ValueError("negative row count")
    for index in range(count):
        tenant = _string(buf, end, &pos)
        kind = _long(buf, end, &pos)
        if kind < 0 or kind >= symbols:
            raise ValueError("enum index out of range")
        doc_format = _string(buf, end, &pos)
        upstream_id = _string(buf, end, &pos)
        modified = _optional(buf, end, &pos)
        revision = _optional(buf, end, &pos)
        source = _string(buf, end, &pos)
        ingested_at = _string(buf, end, &pos)
        digest = _string(buf, end, &pos)
        size = _length(buf, end, &pos)
        document = PyBytes_FromStringAndSize(<const char*>buf + pos, size)
        pos += size
        rows.append({
            "tenant": tenant,
            "kind": kinds[kind],
            "format": doc_format,
            "upstream_id": upstream_id,
            "modified": modified,
            "revision": revision,
            "source": source,
            "ingested_at": ingested_at,
            "digest": digest,
            "document": document,
            "ecosystems": _strings(buf, end, &pos),
            "packages": _strings(buf, end, &pos),
            "purls": _strings(buf, end, &pos),
            "aliases": _strings(buf, end, &pos),
            "vex_products": _strings(buf, end, &pos),
            "sbom_subject": _optional(buf, end, &pos),
            "withdrawn": _optional(buf, end, &pos),
        })
    if pos != end:
        raise ValueError("bytes left over after the block's rows")
    return rows
