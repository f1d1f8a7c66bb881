"""``ci-runner action``: everything the composite action (action.yml) does, so the YAML
stays a thin shell that installs the package and calls ``python -m ci_runner.action``.

It sits above :mod:`ci_runner.commands`, beside the CLI and the MCP server: each action
command calls the same function the CLI and MCP tools call, and only turns its result into
the runner's files (``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``) and, given a token, a
published branch and pull request.
"""
