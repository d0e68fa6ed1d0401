"""checkpoint2svc's version: its own module, which imports nothing, so that any part of the package
can read it without importing the package's front door (``checkpoint2svc/__init__.py``)."""

__version__ = "0.1.0"
