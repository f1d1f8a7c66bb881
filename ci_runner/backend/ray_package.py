"""A job's files as a Ray ``working_dir`` package: a zip named by its content.

Ray's own client zips a directory, names it ``gcs://_ray_pkg_<sha1 of the zip>.zip``
and uploads it with ``PUT /api/packages/gcs/<name>`` unless ``GET`` of the same path
says the cluster already has it (``ray/dashboard/modules/job/job_head.py``,
``ray/_private/runtime_env/packaging.py``). The job's ``runtime_env.working_dir`` then
names that URI, and every node unpacks it as the job's working directory. The zip
here is reproducible (sorted names, fixed timestamps), so an unchanged script and
config upload once.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

PROTOCOL = "gcs"
PREFIX = "_ray_pkg_"
EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same bytes for the same files


@dataclass(frozen=True)
class Package:
    data: bytes

    @property
    def name(self) -> str:
        return f"{PREFIX}{hashlib.sha1(self.data).hexdigest()}.zip"

    @property
    def uri(self) -> str:
        """What ``runtime_env.working_dir`` names."""
        return f"{PROTOCOL}://{self.name}"

    @property
    def path(self) -> str:
        """The Jobs API's path for it (GET: does the cluster have it; PUT: upload)."""
        return f"/api/packages/{PROTOCOL}/{self.name}"


def package(files: Mapping[str, bytes]) -> Package:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return Package(raw.getvalue())
