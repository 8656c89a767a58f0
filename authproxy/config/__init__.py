"""YAML -> `Settings`: every problem with its key path.

The only code that reads YAML or the environment. `load.py` is the entry (`load_settings`,
`parse_settings`) and reads the top-level keys; `reader.py` turns text into data; `node.py` and
`interpolate.py` are how every block reads a value; `limits.py`, `routes_block.py`,
`auth_block.py` (with `custom_flow.py`) and `gateway_block.py` each read one block;
`describe.py` turns `Settings` back into what `check --expand` prints.
"""
