"""The compiled modules: the ledger's row decoder and json:raw's line builder; the rest is in pyproject.toml.

Optional twice over: without Cython, or without a C compiler, the install still succeeds
and the ledger is read by fastavro alone, json:raw lines built by orjson (the same rows and
bytes, slower). The tests for the modules fail in CI if they were not built.
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # a --no-isolation build without Cython
    extensions = []
else:
    extensions = cythonize(
        [
            Extension("stella.ledger._rowcodec", ["stella/ledger/_rowcodec.pyx"], optional=True),
            Extension("stella.adapters._jsonrawc", ["stella/adapters/_jsonrawc.pyx"], optional=True),
        ],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=extensions)
