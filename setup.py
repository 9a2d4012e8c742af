"""taskmill's one C extension; everything else about the package is in pyproject.toml.

Optional: without libjpeg's headers (libjpeg-dev) the install goes on without it, and plain
JPEGs take the general libvips path (see taskmill.images.onepass)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "taskmill.images._jpeg_onepass",
            sources=["src/taskmill/images/_jpeg_onepass.c"],
            libraries=["jpeg"],
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
            optional=True,
        )
    ]
)
