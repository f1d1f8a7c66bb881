"""From a validated experiment to something a backend can run."""
