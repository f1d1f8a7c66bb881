"""A loopback GitHub REST API: the endpoints PyGithub calls to publish results.

Speaks the wire format of api.github.com for one repository: GET the repository, list
pulls with head/base/state filters, create and update (PATCH) a pull, and list, create
and update issue comments, each with its author. Every request is recorded (method,
path, query, body, headers) so tests assert on what reached GitHub. When given the bare
git repository, a pull's ``head.sha`` is the branch's real tip, as on GitHub.

The token's own account answers as GitHub answers it: an installation token (the
Actions ``GITHUB_TOKEN``, the default here) gets 403 "Resource not accessible by
integration" from ``GET /user`` and its bot login from GraphQL's ``viewer``; a person's
token (``installation=False``) gets its user from ``GET /user``.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: dict | None
    headers: dict[str, str]


@dataclass
class FakeGitHub:
    owner: str = "acme"
    name: str = "models"
    default_branch: str = "main"
    token: str = "ghs_loopbacktoken000000000000000000000"
    login: str = "github-actions[bot]"  # the account the token acts as
    installation: bool = True  # a GitHub App installation token, as GITHUB_TOKEN is
    git_dir: Path | None = None
    requests: list[Recorded] = field(default_factory=list)
    pulls: list[dict] = field(default_factory=list)
    comments: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # -- lifecycle ----------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests look at -------------------------------------------------------

    def writes(self) -> list[Recorded]:
        """Requests that change something (a GraphQL query only reads)."""
        changing = ("POST", "PATCH", "PUT", "DELETE")
        return [r for r in self.requests if r.method in changing and r.path != "/graphql"]

    def clear(self) -> None:
        self.requests.clear()

    def add_pull(self, number: int, head: str, base: str = "main") -> None:
        """A pull request opened by someone else (the one a plan comment goes on)."""
        pr = {"number": number, "state": "open", "title": head, "body": "", "head": head}
        self.pulls.append(pr | {"base": base})

    def add_comment(self, issue: int, body: str, login: str) -> int:
        """A comment someone else wrote on issue/PR ``issue``; its id."""
        comment = {"id": 5000 + len(self.comments), "issue": issue, "body": body, "user": login}
        self.comments.append(comment)
        return comment["id"]

    # -- JSON shapes --------------------------------------------------------------

    @staticmethod
    def _user_json(login: str) -> dict:
        bot = login.endswith("[bot]")
        return {
            "login": login,
            "id": 41898282 if bot else 583231,
            "type": "Bot" if bot else "User",
            "url": f"https://api.github.example/users/{login}",
            "html_url": f"https://github.example/{login.removesuffix('[bot]')}",
        }

    def _repo_url(self) -> str:
        return f"{self.url}/repos/{self.full_name}"

    def repo_json(self) -> dict:
        return {
            "id": 1,
            "name": self.name,
            "full_name": self.full_name,
            "owner": {"login": self.owner, "id": 1, "type": "Organization"},
            "private": True,
            "default_branch": self.default_branch,
            "url": self._repo_url(),
            "html_url": f"https://github.example/{self.full_name}",
        }

    def _tip(self, branch: str) -> str | None:
        if self.git_dir is None:
            return "0" * 40
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=self.git_dir,
            capture_output=True,
            text=True,
        )
        return proc.stdout.strip() or None

    def _pull_json(self, pr: dict) -> dict:
        number = pr["number"]
        repo = self.repo_json()
        return {
            "id": 1000 + number,
            "number": number,
            "state": pr["state"],
            "title": pr["title"],
            "body": pr["body"],
            "merged": False,
            "url": f"{self._repo_url()}/pulls/{number}",
            "html_url": f"https://github.example/{self.full_name}/pull/{number}",
            "issue_url": f"{self._repo_url()}/issues/{number}",
            "head": {
                "ref": pr["head"],
                "sha": self._tip(pr["head"]) or "0" * 40,
                "label": f"{self.owner}:{pr['head']}",
                "repo": repo,
            },
            "base": {"ref": pr["base"], "sha": self._tip(pr["base"]), "repo": repo},
        }

    def _comment_json(self, c: dict) -> dict:
        return {
            "id": c["id"],
            "body": c["body"],
            "user": self._user_json(c["user"]),
            "url": f"{self._repo_url()}/issues/comments/{c['id']}",
            "html_url": f"https://github.example/{self.full_name}/pull/{c['issue']}"
            f"#issuecomment-{c['id']}",
            "issue_url": f"{self._repo_url()}/issues/{c['issue']}",
        }

    # -- routing --------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, object]:
        if method == "GET" and path == "/user":
            if self.installation:
                return 403, {
                    "message": "Resource not accessible by integration",
                    "documentation_url": "https://docs.github.com/rest/users/users"
                    "#get-the-authenticated-user",
                    "status": "403",
                }
            return 200, self._user_json(self.login)
        if method == "POST" and path == "/graphql":
            if "viewer" not in str((body or {}).get("query")):
                return 200, {"errors": [{"message": "unsupported query here"}]}
            return 200, {"data": {"viewer": {"login": self.login}}}
        prefix = f"/repos/{self.full_name}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}
        rest = path[len(prefix) :]
        with self._lock:
            if method == "GET" and rest == "":
                return 200, self.repo_json()
            if rest == "/pulls":
                return self._pulls(method, query, body)
            if m := re.fullmatch(r"/pulls/(\d+)", rest):
                return self._pull(method, int(m[1]), body)
            if m := re.fullmatch(r"/issues/(\d+)", rest):
                return self._issue(int(m[1]))
            if m := re.fullmatch(r"/issues/(\d+)/comments", rest):
                return self._comments(method, int(m[1]), body)
            if m := re.fullmatch(r"/issues/comments/(\d+)", rest):
                return self._comment(method, int(m[1]), body)
        return 404, {"message": "Not Found"}

    def _pulls(self, method: str, query: dict, body: dict | None) -> tuple[int, object]:
        if method == "GET":
            state = query.get("state", "open")
            head, base = query.get("head"), query.get("base")
            found = [
                p
                for p in self.pulls
                if (state == "all" or p["state"] == state)
                and (head is None or f"{self.owner}:{p['head']}" == head)
                and (base is None or p["base"] == base)
            ]
            return 200, [self._pull_json(p) for p in found]
        if method == "POST":
            if self._tip(body["head"]) is None:
                return 422, {"message": "Validation Failed", "errors": [{"field": "head"}]}
            if any(p["head"] == body["head"] and p["state"] == "open" for p in self.pulls):
                return 422, {"message": "A pull request already exists"}
            pr = {
                "number": max((p["number"] for p in self.pulls), default=0) + 1,
                "state": "open",
                "title": body["title"],
                "body": body.get("body") or "",
                "head": body["head"],
                "base": body["base"],
            }
            self.pulls.append(pr)
            return 201, self._pull_json(pr)
        return 405, {"message": "Method Not Allowed"}

    def _find_pull(self, number: int) -> dict | None:
        return next((p for p in self.pulls if p["number"] == number), None)

    def _pull(self, method: str, number: int, body: dict | None) -> tuple[int, object]:
        pr = self._find_pull(number)
        if pr is None:
            return 404, {"message": "Not Found"}
        if method == "PATCH":
            pr.update({k: v for k, v in (body or {}).items() if k in ("title", "body", "state")})
        return 200, self._pull_json(pr)

    def _issue(self, number: int) -> tuple[int, object]:
        pr = self._find_pull(number)
        if pr is None:
            return 404, {"message": "Not Found"}
        return 200, {
            "number": number,
            "title": pr["title"],
            "state": pr["state"],
            "url": f"{self._repo_url()}/issues/{number}",
            "html_url": f"https://github.example/{self.full_name}/pull/{number}",
        }

    def _comments(self, method: str, issue: int, body: dict | None) -> tuple[int, object]:
        if method == "GET":
            return 200, [self._comment_json(c) for c in self.comments if c["issue"] == issue]
        if method == "POST":
            comment = {
                "id": 5000 + len(self.comments),
                "issue": issue,
                "body": body["body"],
                "user": self.login,
            }
            self.comments.append(comment)
            return 201, self._comment_json(comment)
        return 405, {"message": "Method Not Allowed"}

    def _comment(self, method: str, comment_id: int, body: dict | None) -> tuple[int, object]:
        comment = next((c for c in self.comments if c["id"] == comment_id), None)
        if comment is None:
            return 404, {"message": "Not Found"}
        if method == "PATCH":
            comment["body"] = body["body"]
        return 200, self._comment_json(comment)


def _handler(fake: FakeGitHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.requests.append(
                Recorded(self.command, parts.path, query, body, dict(self.headers.items()))
            )
            auth = self.headers.get("Authorization", "")
            if auth not in (f"token {fake.token}", f"Bearer {fake.token}"):
                status, payload = 401, {"message": "Bad credentials"}
            else:
                status, payload = fake.handle(self.command, parts.path, query, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

    return Handler
