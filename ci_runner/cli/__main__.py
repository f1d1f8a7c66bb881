"""``python -m ci_runner.cli``: the same command line as ``ci-runner``."""

from ci_runner.cli import main

main()
