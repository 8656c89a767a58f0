"""YAML -> `Settings`: every problem with its key path.

The only code that reads YAML or the environment.
"""
