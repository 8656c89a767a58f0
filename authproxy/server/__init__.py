"""One process and its workers: the composition root, dispatch, lifecycle."""
