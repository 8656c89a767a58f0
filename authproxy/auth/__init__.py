"""Authentication: flows as data (`auth_spec.AuthSpec`), a sans-io engine, one network driver."""
