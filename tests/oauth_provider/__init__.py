"""A real OAuth2 authorization server for the tests: django-oauth-toolkit, run as a subprocess.

`serve.py` is the program; `tests/oauth_server.py` starts it and reads what it announces.
"""
