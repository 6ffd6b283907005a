"""The one compiled part, optional: googlenet.data._jpeg, region decoding of JPEGs with libjpeg-turbo (the training
pipeline's decode; docs/training.md). Without a C compiler or libjpeg's headers (Debian: libjpeg62-turbo-dev) the
build skips it and the pipeline decodes whole images through OpenCV, to the same pixels. Everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("googlenet.data._jpeg", ["src/googlenet/data/_jpeg.c"], libraries=["jpeg"], optional=True),
    ]
)
