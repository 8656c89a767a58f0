"""Developer tools that are not part of the installed package (`make audit` runs them)."""
