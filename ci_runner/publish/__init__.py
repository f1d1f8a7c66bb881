"""Publishing results to GitHub: commits of generated files, one PR per experiment, comments.

I/O at the edge of the flow (git and the GitHub REST API); what is published is rendered
from the ledger alone, so publishing twice with nothing new writes nothing.
"""
