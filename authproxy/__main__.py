"""`python -m authproxy` is the same as the `authproxy` command."""

from authproxy.cli import entry

entry()
