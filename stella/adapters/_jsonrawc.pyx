# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""json:raw's (group, key, line) items of a batch of ledger rows, built in one compiled loop.

The Python builder (:func:`stella.adapters.jsonraw.row_items`) makes an envelope dict per
row (and a linkset dict), has orjson sort and write it, then joins the record key: about
3 µs a row, a sixth of a json:raw export. This loop writes the same bytes straight from
the row's fields: RFC 8785 order is fixed by the envelope's keys, every string is
escaped as JCS (and orjson) escape it, the document is spliced in verbatim. It is the
fast path only: a row with anything unexpected (a value of another type, a string that
is not valid Unicode) raises, and the caller then builds the whole batch in Python, so
the bytes are always the Python builder's (a hypothesis test holds the two together).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport memcpy


cdef extern from "Python.h":
    bint PyUnicode_CheckExact(object)
    bint PyBytes_CheckExact(object)
    bint PyList_CheckExact(object)


cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity


cdef int _reserve(Buffer* out, Py_ssize_t more) except -1:
    cdef Py_ssize_t want = out.size + more
    cdef Py_ssize_t capacity
    cdef char* grown
    if want <= out.capacity:
        return 0
    capacity = out.capacity * 2 if out.capacity else 4096
    while capacity < want:
        capacity *= 2
    grown = <char*>PyMem_Realloc(out.data, capacity)
    if grown == NULL:
        raise MemoryError()
    out.data = grown
    out.capacity = capacity
    return 0


cdef int _put(Buffer* out, const char* data, Py_ssize_t size) except -1:
    _reserve(out, size)
    memcpy(out.data + out.size, data, size)
    out.size += size
    return 0


cdef const char* _HEX = b"0123456789abcdef"


cdef int _string(Buffer* out, object value) except -1:
    """A JSON string as RFC 8785 writes it: quote, backslash and C0 controls escaped, the rest as UTF-8."""
    cdef Py_ssize_t size
    cdef const char* text
    cdef Py_ssize_t index
    cdef unsigned char byte
    if not PyUnicode_CheckExact(value):
        raise TypeError("not a str")
    text = PyUnicode_AsUTF8AndSize(value, &size)  # raises for a lone surrogate
    _reserve(out, size * 6 + 2)  # the worst case: every byte a \u00XX escape
    out.data[out.size] = b'"'
    out.size += 1
    for index in range(size):
        byte = <unsigned char>text[index]
        if byte >= 0x20 and byte != 0x22 and byte != 0x5C:
            out.data[out.size] = <char>byte
            out.size += 1
        elif byte == 0x22 or byte == 0x5C:
            out.data[out.size] = b'\\'
            out.data[out.size + 1] = <char>byte
            out.size += 2
        elif byte == 0x08 or byte == 0x09 or byte == 0x0A or byte == 0x0C or byte == 0x0D:
            out.data[out.size] = b'\\'
            out.data[out.size + 1] = b'b' if byte == 0x08 else b't' if byte == 0x09 else b'n' if byte == 0x0A else b'f' if byte == 0x0C else b'r'
            out.size += 2
        else:
            out.data[out.size] = b'\\'
            out.data[out.size + 1] = b'u'
            out.data[out.size + 2] = b'0'
            out.data[out.size + 3] = b'0'
            out.data[out.size + 4] = _HEX[byte >> 4]
            out.data[out.size + 5] = _HEX[byte & 15]
            out.size += 6
    out.data[out.size] = b'"'
    out.size += 1
    return 0


cdef int _optional(Buffer* out, object value) except -1:
    if value is None:
        _put(out, b"null", 4)
    else:
        _string(out, value)
    return 0


cdef int _strings(Buffer* out, object values) except -1:
    cdef Py_ssize_t index
    if not PyList_CheckExact(values):
        raise TypeError("not a list")
    _put(out, b"[", 1)
    for index in range(len(values)):
        if index:
            _put(out, b",", 1)
        _string(out, (<list>values)[index])
    _put(out, b"]", 1)
    return 0


cdef int _raw(Buffer* out, object value) except -1:
    """A str's UTF-8 bytes, unescaped (the record key's parts)."""
    cdef Py_ssize_t size
    cdef const char* text
    if not PyUnicode_CheckExact(value):
        raise TypeError("not a str")
    text = PyUnicode_AsUTF8AndSize(value, &size)
    _put(out, text, size)
    return 0


def row_items(rows):
    """(kind, record key, line) of every row, or an exception for anything unexpected.

    ``rows`` is any list, a subclass too: the pipeline's batches are ``RowBatch`` objects,
    which a ``list``-typed argument refused (a TypeError every batch, so the Python builder
    built every line of every export until this was found).
    """
    cdef list batch = rows if type(rows) is list else list(rows)
    cdef Buffer out
    cdef Buffer key
    cdef list items = []
    cdef object document
    cdef object modified
    cdef object kind
    cdef dict row
    out.data = NULL
    out.size = 0
    out.capacity = 0
    key.data = NULL
    key.size = 0
    key.capacity = 0
    try:
        for item in batch:
            if type(item) is not dict:
                raise TypeError("not a dict")
            row = <dict>item
            document = row["document"]
            if not PyBytes_CheckExact(document):
                raise TypeError("document is not bytes")
            kind = row["kind"]
            modified = row["modified"]
            out.size = 0
            _put(&out, b'{"digest":', 10)
            _string(&out, row["digest"])
            _put(&out, b',"document":', 12)
            _put(&out, PyBytes_AS_STRING(document), PyBytes_GET_SIZE(document))
            _put(&out, b',"format":', 10)
            _string(&out, row["format"])
            _put(&out, b',"id":', 6)
            _string(&out, row["upstream_id"])
            _put(&out, b',"ingestedAt":', 14)
            _string(&out, row["ingested_at"])
            _put(&out, b',"kind":', 8)
            _string(&out, kind)
            _put(&out, b',"linkset":{"aliases":', 22)
            _strings(&out, row["aliases"])
            _put(&out, b',"ecosystems":', 14)
            _strings(&out, row["ecosystems"])
            _put(&out, b',"packages":', 12)
            _strings(&out, row["packages"])
            _put(&out, b',"purls":', 9)
            _strings(&out, row["purls"])
            if row["sbom_subject"] is not None:
                _put(&out, b',"sbomSubject":', 15)
                _string(&out, row["sbom_subject"])
            _put(&out, b',"vexProducts":', 15)
            _strings(&out, row["vex_products"])
            if row["withdrawn"] is not None:
                _put(&out, b',"withdrawn":', 13)
                _string(&out, row["withdrawn"])
            _put(&out, b'},"modified":', 13)
            _optional(&out, modified)
            _put(&out, b',"revision":', 12)
            _optional(&out, row["revision"])
            _put(&out, b',"source":', 10)
            _string(&out, row["source"])
            _put(&out, b',"tenant":', 10)
            _string(&out, row["tenant"])
            _put(&out, b"}", 1)
            # the record key (stella.model.record_key): kind NUL id NUL modified-or-empty NUL digest
            key.size = 0
            _raw(&key, kind)
            _put(&key, b"\x00", 1)
            _raw(&key, row["upstream_id"])
            _put(&key, b"\x00", 1)
            if modified is not None:
                _raw(&key, modified)
            _put(&key, b"\x00", 1)
            _raw(&key, row["digest"])
            items.append(
                (kind, PyBytes_FromStringAndSize(key.data, key.size), PyBytes_FromStringAndSize(out.data, out.size))
            )
    finally:
        PyMem_Free(out.data)
        PyMem_Free(key.data)
    return items
