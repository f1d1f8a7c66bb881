"""Progress read from the metrics store the jobs log to (trackio), one read per project."""

from ci_runner.track.trackio_progress import (
    RunProgress,
    TrackioProgress,
    read_local,
    read_progress,
    read_space,
)

__all__ = ["RunProgress", "TrackioProgress", "read_local", "read_progress", "read_space"]
