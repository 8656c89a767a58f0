"""The `authproxy` command: the only code that decides exit codes and prints to the terminal."""
