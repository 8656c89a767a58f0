"""authproxy: a local authenticating reverse proxy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("authproxy")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
