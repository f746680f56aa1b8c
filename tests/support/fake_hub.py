"""A small, real HTTP server speaking the part of the Hugging Face Hub API that `huggingface_hub` uses to publish.

Enough for HfApi.whoami, create_repo, repo_info and create_commit with regular and LFS files (without
hf_xet, the client asks /preupload which files go through LFS, uploads those with the LFS batch API and
a PUT, then posts one NDJSON commit). Every commit is recorded so tests can assert the exact files and
the model card. Failure modes a test can switch on: `reject_token` (401 everywhere), `read_only`
(a read token: 403 on writes), a repo owned by someone else (`add_foreign_repo`: 409 on create), and
`stop()` for a Hub that cannot be reached. Error bodies echo the Authorization header on purpose, as a
careless proxy might, so the studio's scrubbing of tokens from messages is really tested.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".png", ".pt", ".gguf")


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a regular file, which the Hub reports as a file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    repo_id: str
    oid: str
    summary: str
    files: dict[str, bytes]  # what this commit added or changed, path -> content
    lfs_paths: set[str]


@dataclass
class Repo:
    repo_id: str
    owner: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)
    head: str = "0" * 40


@dataclass
class Account:
    name: str
    orgs: list[str] = field(default_factory=list)
    role: str = "write"


class FakeHub:
    """Start with `with FakeHub() as hub:`; point the client at `hub.url` (HfApi(endpoint=...) / HF_ENDPOINT)."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.repos: dict[str, Repo] = {}
        self.commits: list[Commit] = []
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.reject_token = False
        self.read_only = False
        self.commit_delay = 0.0  # seconds the commit endpoint waits before answering (to kill a worker mid-publish)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def add_account(self, token: str, name: str, *, orgs: list[str] | None = None, role: str = "write") -> None:
        self.accounts[token] = Account(name, list(orgs or []), role)

    def add_foreign_repo(self, repo_id: str, owner: str) -> None:
        """A repo that exists already and belongs to someone else (a name clash for our user)."""
        self.repos[repo_id] = Repo(repo_id, owner, private=False, files={"README.md": b"# not yours\n"})

    def start(self) -> FakeHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down and free the port: from now on the Hub cannot be reached (connection refused)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def commits_to(self, repo_id: str) -> list[Commit]:
        return [c for c in self.commits if c.repo_id == repo_id]


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet: tests read hub.requests instead
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")  # no kept-alive sockets: after stop() the Hub is really unreachable
            self.close_connection = True
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _dispatch(self) -> None:
            path = unquote(urlparse(self.path).path)
            with hub._lock:
                hub.requests.append((self.command, path))
            body = self._body()
            try:
                with hub._lock:
                    status, reply = _route(hub, self.command, path, body, self.headers.get("Authorization", ""), self.headers.get("Host", ""))
                self._send(status, reply)
            except _Reply as r:
                self._send(r.status, r.body, r.headers)

        do_GET = do_POST = do_PUT = do_HEAD = _dispatch

    return Handler


def _error(status: int, message: str, auth: str, code: str | None = None) -> _Reply:
    # Echo the credentials like a careless proxy would: the studio must scrub them from what it shows.
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return _Reply(status, {"error": f"{message} (request had Authorization: {auth})"}, headers)


def _account(hub: FakeHub, auth: str) -> Account:
    token = auth.removeprefix("Bearer ").strip()
    if hub.reject_token or token not in hub.accounts:
        raise _error(401, "Invalid credentials in Authorization header", auth)
    return hub.accounts[token]


def _writable(hub: FakeHub, account: Account, namespace: str, auth: str) -> None:
    if hub.read_only or account.role == "read" or namespace not in (account.name, *account.orgs):
        raise _error(403, f"You don't have the rights to create a model under the namespace \"{namespace}\"", auth)


def _repo(hub: FakeHub, repo_id: str, account: Account, auth: str) -> Repo:
    repo = hub.repos.get(repo_id)
    if repo is None or (repo.private and repo.owner not in (account.name, *account.orgs)):
        raise _error(404, "Repository not found", auth, code="RepoNotFound")
    return repo


def _route(hub: FakeHub, method: str, path: str, body: bytes, auth: str, host: str) -> tuple[int, Any]:
    base = f"http://{host}"
    if method == "PUT" and (m := re.fullmatch(r"/_lfs/([0-9a-f]{64})", path)):
        if hashlib.sha256(body).hexdigest() != m.group(1):
            raise _Reply(400, {"error": "uploaded content does not match its sha256"})
        hub.lfs[m.group(1)] = body
        return 200, {}
    if method == "POST" and path == "/_lfs/verify":
        oid = json.loads(body)["oid"]
        if oid not in hub.lfs:
            raise _Reply(404, {"error": f"object {oid} was never uploaded"})
        return 200, {}
    if method == "POST" and path == "/api/validate-yaml":
        content = json.loads(body)["content"]
        m = re.match(r"---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as exc:
            raise _Reply(400, {"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}) from None
        return 200, {"errors": [], "warnings": [] if meta else [{"message": "empty or missing yaml metadata"}]}

    account = _account(hub, auth)
    if method == "GET" and path == "/api/whoami-v2":
        return 200, {"type": "user", "name": account.name, "orgs": [{"name": o} for o in account.orgs],
                     "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": account.role}}}
    if method == "POST" and path == "/api/repos/create":
        data = json.loads(body)
        namespace = data.get("organization") or account.name
        repo_id = f"{namespace}/{data['name']}"
        if repo_id in hub.repos:
            raise _error(409, "You already created this model repo", auth)
        _writable(hub, account, namespace, auth)
        private = data.get("visibility") == "private" or bool(data.get("private"))  # newer clients send visibility
        hub.repos[repo_id] = Repo(repo_id, namespace, private)
        return 200, {"url": f"{base}/{repo_id}", "name": repo_id}
    if method == "GET" and (m := re.fullmatch(r"/api/models/([^/]+/[^/]+?)(?:/revision/[^/]+)?", path)):
        repo = _repo(hub, m.group(1), account, auth)
        return 200, {"id": repo.repo_id, "author": repo.owner, "sha": repo.head, "private": repo.private,
                     "siblings": [{"rfilename": p} for p in sorted(repo.files)]}
    if method == "POST" and (m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/[^/]+", path)):
        repo = _repo(hub, m.group(1), account, auth)
        _writable(hub, account, repo.owner, auth)
        files = []
        for f in json.loads(body)["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or b"\0" in base64.b64decode(f["sample"])
            old = repo.files.get(f["path"])
            oid = None if old is None else hashlib.sha256(old).hexdigest() if lfs else git_blob_sha1(old)
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return 200, {"files": files}
    if method == "POST" and (m := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)):
        repo = _repo(hub, m.group(1), account, auth)
        _writable(hub, account, repo.owner, auth)
        objects = []
        for o in json.loads(body)["objects"]:
            entry: dict[str, Any] = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in hub.lfs:
                entry["actions"] = {"upload": {"href": f"{base}/_lfs/{o['oid']}"}, "verify": {"href": f"{base}/_lfs/verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}
    if method == "POST" and (m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/[^/]+", path)):
        repo = _repo(hub, m.group(1), account, auth)
        _writable(hub, account, repo.owner, auth)
        if hub.commit_delay:
            hub._lock.release()  # let other requests through while this one waits
            try:
                time.sleep(hub.commit_delay)
            finally:
                hub._lock.acquire()
        return 200, _commit(hub, repo, body, base)
    raise _Reply(404, {"error": f"the fake Hub does not serve {method} {path}"})


def _commit(hub: FakeHub, repo: Repo, body: bytes, base: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    header = next(item["value"] for item in lines if item["key"] == "header")
    parent = header.get("parentCommit")
    if parent and parent != repo.head:
        raise _Reply(412, {"error": f"parent commit {parent} is not the head {repo.head}"})
    files: dict[str, bytes] = {}
    lfs_paths: set[str] = set()
    for item in lines:
        value = item["value"]
        if item["key"] == "file":
            files[value["path"]] = base64.b64decode(value["content"])
        elif item["key"] == "lfsFile":
            if value["oid"] not in hub.lfs:
                raise _Reply(422, {"error": f"LFS object {value['oid']} for {value['path']} was never uploaded"})
            files[value["path"]] = hub.lfs[value["oid"]]
            lfs_paths.add(value["path"])
    oid = hashlib.sha1(f"{repo.head}{len(hub.commits)}{sorted(files)}".encode()).hexdigest()
    repo.files.update(files)
    repo.lfs_paths |= lfs_paths
    repo.head = oid
    hub.commits.append(Commit(repo.repo_id, oid, header.get("summary", ""), files, lfs_paths))
    return {"commitUrl": f"{base}/{repo.repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}
