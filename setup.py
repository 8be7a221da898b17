"""The one compiled module, the ledger's row decoder; everything else is in pyproject.toml.

Optional twice over: without Cython, or without a C compiler, the install still succeeds
and the ledger is read by fastavro alone (the same rows, slower). The test for the module
fails in CI if it was not built.
"""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # a --no-isolation build without Cython
    extensions = []
else:
    extensions = cythonize(
        [Extension("stella.ledger._rowcodec", ["stella/ledger/_rowcodec.pyx"], optional=True)],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=extensions)
