"""The one C extension; everything else about the package is in pyproject.toml.

SFrame's per-frame path in C on OpenSSL's libcrypto (docs/calls.md, "The per-frame path in C").
Optional: without a C compiler or OpenSSL's headers the install goes on and doorless.sframe runs
its pure-Python path (the reference, same results); scripts/system-packages installs both.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "doorless._sframe_native",
            sources=["src/doorless/_sframe_native.c"],
            libraries=["crypto"],
            optional=True,
        )
    ]
)
