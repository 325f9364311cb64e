"""The version of atoll, written only here: atoll/__init__.py, setup.py and the Dockerfile's dependency
layer read it."""

__version__ = "0.4.0"
