"""Authentication: flows as data (`config.AuthSpec`), a sans-io engine, one network driver."""
