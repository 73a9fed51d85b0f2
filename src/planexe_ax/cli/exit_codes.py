"""Exit codes of the ``planexe-ax`` command (the contract tests outside the project rely on)."""

EXIT_OK = 0
EXIT_FAILED = 1  # the execution ended FAILED or CANCELLED
EXIT_USAGE = 2  # bad input: one line on stderr names the problem
EXIT_TIMEOUT = 3
