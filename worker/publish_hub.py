"""Push one folder (plus the card and chart) to a Hub model repo as a single commit, with errors in words.

The real `huggingface_hub` client does the HTTP; this module decides the order of calls and what each
failure means to a person:

1. whoami: a bad token fails here (401) before anything is created; a read token is refused up front.
2. create_repo(exist_ok=False): 409 means the name exists. If it belongs to the token's user or one of
   its organizations we publish into it (a retry, or an update); otherwise it is a name clash.
3. create_commit with every file as one operation and parent_commit = the head we saw, so a publish
   never interleaves with someone else's push. The client asks the Hub for each file's current oid and
   drops unchanged files; when nothing changed it makes no commit at all. With the card and chart
   byte-identical for the same run, a retried publish adds no files and no second commit.

The token is passed to the client only; every message that leaves this module is scrubbed of it (and
of anything shaped like a Hub token or an Authorization header), since Hub errors can echo headers.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TOKENS_PAGE = "https://huggingface.co/settings/tokens"
_TOKEN_SHAPES = re.compile(r"(hf_[A-Za-z0-9]{8,}|(?i:bearer)\s+[^\s\"',)]+|(?i:authorization)[\"']?\s*[:=]\s*[^\s\"',)]+)")
SKIPPED_NAMES = {".DS_Store"}


class PublishError(Exception):
    """A publish that cannot succeed as asked; the message (already scrubbed) is shown to people as is."""


@dataclass(frozen=True)
class Published:
    url: str
    commit: str
    committed: bool  # False: the Hub already held exactly these files, nothing was committed
    files: list[str]


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every given secret and anything shaped like a Hub token or Authorization header replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_SHAPES.sub("***", text)


class TokenScrubber(logging.Filter):
    """A log filter that replaces anything shaped like a Hub token or an Authorization header in every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_scrubber() -> None:
    """Put a TokenScrubber on every handler of the root logger (once each): libraries may log what a request carried."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TokenScrubber) for f in handler.filters):
            handler.addFilter(TokenScrubber())


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """(path in repo, file) for every file under `folder`, sorted; hidden files and folders are left out."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts) and path.name not in SKIPPED_NAMES:
            out.append((rel.as_posix(), path))
    return out


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _unreachable(exc: BaseException) -> bool:
    """A connection that never got an HTTP answer: refused, DNS failure, timeout, offline mode."""
    seen: BaseException | None = exc
    while seen is not None:
        names = {c.__name__ for c in type(seen).__mro__}
        if names & {"TransportError", "OfflineModeIsEnabled", "ConnectionError", "TimeoutError"} or (isinstance(seen, OSError) and _status(seen) is None):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _offline_mode(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ == "OfflineModeIsEnabled":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def explain(exc: BaseException, *, endpoint: str, repo_id: str, token: str) -> str:
    """What went wrong and what to do next, for any failure of a publish (scrubbed of the token)."""
    namespace = repo_id.split("/")[0]
    status = _status(exc)
    if status is None and _offline_mode(exc):
        text = ("The worker runs with HF_HUB_OFFLINE set, so it may not reach the Hub; nothing was published. Unset HF_HUB_OFFLINE "
                "(and TRANSFORMERS_OFFLINE) for the worker and publish again.")
    elif status is None and _unreachable(exc):
        text = (f"The Hub at {endpoint} cannot be reached ({type(exc).__name__}); nothing was published. "
                "Check the worker's network connection (or the STUDIO_HUB_ENDPOINT setting) and publish again.")
    elif status == 401:
        text = (f"The Hub rejected the token (401 Unauthorized); nothing was published. Create a token with write access at "
                f"{TOKENS_PAGE}, save it in the publish panel (or set HF_TOKEN on the worker) and publish again.")
    elif status == 403:
        text = (f"The token may not write to '{namespace}' (403 Forbidden); nothing was published. Use a write token of the "
                f"'{namespace}' account or of a member of that organization (a fine-grained token needs write access to it), "
                f"or publish under your own name.")
    elif status == 412:
        text = f"Someone pushed to {repo_id} while this publish was under way; nothing was published. Publish again."
    elif status is not None:
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        text = f"The Hub answered {status} while publishing to {repo_id}: {detail}. Nothing was published; try again later."
    else:
        text = f"Publishing to {repo_id} failed: {type(exc).__name__}: {str(exc)[:300]}"
    return scrub(text, token)


def publish_folder(*, endpoint: str, token: str, repo_id: str, private: bool, folder: Path, extra: dict[str, bytes],
                   message: str) -> Published:
    """Create (or reuse) `repo_id` and commit the files of `folder` plus `extra` (path -> bytes) in one commit."""
    try:
        return _publish(endpoint=endpoint, token=token, repo_id=repo_id, private=private, folder=folder, extra=extra, message=message)
    except PublishError as exc:
        raise PublishError(scrub(str(exc), token)) from None
    except Exception as exc:  # every failure ends in words; the original (scrubbed) goes to the log for debugging
        log.info("publish to %s failed: %s", repo_id, scrub(f"{type(exc).__name__}: {exc}", token))
        raise PublishError(explain(exc, endpoint=endpoint, repo_id=repo_id, token=token)) from None


def _publish(*, endpoint: str, token: str, repo_id: str, private: bool, folder: Path, extra: dict[str, bytes], message: str) -> Published:
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint, token=token, library_name="peft-studio")
    me = api.whoami(token=token, cache=False)
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PublishError(f"The token is a read token, so it cannot publish; nothing was published. Create a token with write access at "
                           f"{TOKENS_PAGE}, save it in the publish panel and publish again.")
    mine = {me.get("name"), *(o.get("name") for o in me.get("orgs") or [])}
    if "/" not in repo_id:
        repo_id = f"{me.get('name')}/{repo_id}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=False, repo_type="model")
    except HfHubHTTPError as exc:
        if _status(exc) != 409:
            raise
        try:
            owner = api.model_info(repo_id).author
        except HfHubHTTPError as info_exc:  # it exists but we cannot even see it: someone else's private repo
            if _status(info_exc) not in (401, 403, 404):
                raise
            owner = "another account"
        if owner not in mine:
            raise PublishError(f"The name {repo_id} is taken by a repo of '{owner}', which this token cannot publish to; nothing was "
                               "published. Choose another repo name (or your own namespace) and publish again.") from None
    head = api.model_info(repo_id).sha
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for rel, path in folder_files(folder) if rel not in extra]
    operations += [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data) for rel, data in sorted(extra.items())]
    info = api.create_commit(repo_id, operations, commit_message=message, parent_commit=head, repo_type="model")
    return Published(url=f"{endpoint.rstrip('/')}/{repo_id}", commit=info.oid, committed=info.oid != head,
                     files=sorted(op.path_in_repo for op in operations))
