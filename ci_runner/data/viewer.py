"""A small client for the Hub's dataset viewer (datasets-server): the cheap way to see a dataset.

Three routes give everything a format check needs without downloading anything:
``/splits`` (which config/split pairs exist), ``/first-rows`` (up to 100 rows plus the
features) and ``/size`` (row counts). Answers are returned as the wire JSON, unchanged.

Requests go through huggingface_hub's shared HTTP session, so proxies and CA settings a
user configured for the Hub apply here too. The token is sent as a Bearer header only;
it never appears in an error message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ci_runner.errors import DatasetNotFoundError, DatasetViewerError, DataSourceError

DEFAULT_URL = "https://datasets-server.huggingface.co"
URL_ENV = "HF_DATASETS_SERVER"
# 500s the server itself calls transient; any other X-Error-Code on a 5xx is a cached
# verdict about the dataset (a script, too many columns...) that a retry won't change.
TRANSIENT_500_CODES = frozenset(
    {"ResponseNotReady", "UnexpectedApiError", "AuthCheckHubRequestError"}
)
RETRY_STATUS = frozenset({429, 502, 503, 504})
# The viewer has no answer for this dataset (yet): read it another way.
UNAVAILABLE_CODES = frozenset({"ResponseNotReady", "ResponseNotFound"})


class ViewerUnavailableError(DatasetViewerError):
    """The viewer can't serve this dataset (not supported, or not processed yet).

    ``read_hub`` catches it and streams the rows with ``datasets`` instead.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ViewerClient:
    """Reads ``/splits``, ``/first-rows`` and ``/size``; retries what a retry can fix."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: float = 30.0,
        max_delay_s: float = 8.0,
    ) -> None:
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self._token = token or None
        self.retries = retries
        self.sleep = sleep
        self.timeout_s = timeout_s
        self.max_delay_s = max_delay_s

    @classmethod
    def from_env(cls, **kwargs: Any) -> ViewerClient:
        """The URL from ``HF_DATASETS_SERVER``, the token the Hub client would use (HF_TOKEN...)."""
        from huggingface_hub import get_token

        return cls(token=get_token(), **kwargs)

    @property
    def token(self) -> str | None:
        """For the ``datasets`` fallback, which must read what the viewer could not."""
        return self._token

    def __repr__(self) -> str:  # never show the token
        return f"ViewerClient({self.base_url!r}, token={'set' if self._token else 'none'})"

    # -- routes -------------------------------------------------------------------

    def splits(self, dataset: str) -> dict[str, Any]:
        """``{"splits": [{"dataset", "config", "split"}], "pending": [], "failed": []}``."""
        return self._get("splits", dataset, {"dataset": dataset})

    def first_rows(self, dataset: str, config: str, split: str) -> dict[str, Any]:
        """``{"features": [{"feature_idx", "name", "type"}], "rows": [{"row_idx", "row",
        "truncated_cells"}], "truncated": bool, ...}``: at most 100 rows."""
        params = {"dataset": dataset, "config": config, "split": split}
        return self._get("first-rows", dataset, params)

    def size(self, dataset: str, config: str | None = None) -> dict[str, Any]:
        """``{"size": {"dataset"|"config": {...}, "splits": [{..., "num_rows"}]}, "partial"}``."""
        params = {"dataset": dataset} if config is None else {"dataset": dataset, "config": config}
        return self._get("size", dataset, params)

    # -- plumbing -----------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "ci-runner"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _get(self, route: str, dataset: str, params: dict[str, str]) -> dict[str, Any]:
        """GET with bounded retries; 4xx and cached verdicts become clear errors at once."""
        import httpx2
        from huggingface_hub import get_session
        from huggingface_hub.errors import OfflineModeIsEnabled

        url = f"{self.base_url}/{route}"
        delay = 1.0
        for attempt in range(self.retries + 1):
            code = None
            try:
                response = get_session().get(
                    url, params=params, headers=self._headers(), timeout=self.timeout_s
                )
            except OfflineModeIsEnabled:
                raise DatasetViewerError(
                    f"HF_HUB_OFFLINE is set, so the dataset viewer can't be asked about {dataset}: "
                    "unset it, or point the experiment at a local copy of the dataset"
                ) from None
            except httpx2.TransportError as exc:
                problem, wait = type(exc).__name__, None
            else:
                if response.status_code == 200:
                    return _json_object(response, route)
                problem, code, wait = self._retryable(response, route, dataset)
            if attempt == self.retries:
                break
            self.sleep(min(delay if wait is None else wait, self.max_delay_s))
            delay = min(delay * 2, self.max_delay_s)
        if code == "ResponseNotReady":
            raise ViewerUnavailableError(
                f"the dataset viewer has not processed {dataset} yet", "ResponseNotReady"
            )
        raise DatasetViewerError(
            f"the dataset viewer kept failing on /{route} for {dataset} ({problem}) after "
            f"{self.retries + 1} attempt(s); try again later, or run the check as a job "
            "(check-data --remote)"
        )

    def _retryable(
        self, response: Any, route: str, dataset: str
    ) -> tuple[str, str | None, float | None]:
        """A failure worth retrying: (problem, X-Error-Code, Retry-After). Raise for the rest."""
        status = response.status_code
        code = response.headers.get("X-Error-Code")
        transient_500 = status == 500 and (code is None or code in TRANSIENT_500_CODES)
        if status not in RETRY_STATUS and not transient_500:
            raise self._refusal(response, route, dataset)
        problem = f"HTTP {status} {code}" if code else f"HTTP {status}"
        return problem, code, _retry_after(response)

    def _refusal(self, response: Any, route: str, dataset: str) -> DataSourceError:
        """The error a person can act on, for an answer no retry will change."""
        status = response.status_code
        code = response.headers.get("X-Error-Code")
        message = _server_message(response)
        if status == 404 and code in UNAVAILABLE_CODES:
            return ViewerUnavailableError(f"the dataset viewer has no /{route} for {dataset}", code)
        if status == 404 or (status == 401 and not self._token):
            return DatasetNotFoundError(_not_found(dataset, with_token=bool(self._token)))
        if status in (401, 403):
            return DatasetViewerError(
                f"the dataset viewer refused the token for {dataset} (HTTP {status}): the token "
                "is invalid, expired, or has no access; check HF_TOKEN, and accept the "
                "dataset's conditions on the Hub if it is gated"
            )
        if status >= 500:
            why = f"HTTP {status} {code}" if code else f"HTTP {status}"
            return ViewerUnavailableError(
                f"the dataset viewer can't serve {dataset} ({why}: {message})", code
            )
        return DatasetViewerError(
            f"the dataset viewer refused /{route} for {dataset} (HTTP {status}): {message}"
        )


def _not_found(dataset: str, *, with_token: bool) -> str:
    if with_token:
        return (
            f"dataset {dataset} not found on the Hub, or the token has no access to it "
            "(private/gated): check the id, or the token's access to the dataset"
        )
    return (
        f"dataset {dataset} not found on the Hub, or private/gated without a token: "
        "check the id or set HF_TOKEN"
    )


def _json_object(response: Any, route: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise DatasetViewerError(f"the dataset viewer sent a non-JSON answer to /{route}")
    return body


def _server_message(response: Any) -> str:
    """The server's own ``{"error": ...}`` text, short; the raw body when it isn't JSON."""
    try:
        body = response.json()
        text = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        text = None
    return str(text or response.text or response.reason_phrase)[:300]


def _retry_after(response: Any) -> float | None:
    """Seconds from a ``Retry-After`` header; None (use our backoff) when absent or a date."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
