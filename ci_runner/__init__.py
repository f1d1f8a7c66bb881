"""ci-runner: LLM fine-tuning experiments as files, jobs, reports and pull requests."""

__version__ = "0.1.0"
