"""A local stand-in for GitLab's and GitHub's REST APIs (merge request notes, PR comments, uploads,
deployments and their approvals, workflow runs and their reviews).

:func:`start_forge` runs a :class:`http.server.ThreadingHTTPServer` on 127.0.0.1 (plain
HTTP, or HTTPS with a throwaway CA when ``tls=True``) in a background thread and
returns a :class:`ForgeServer`. One server speaks both dialects:

* GitLab under ``/api/v4`` (:attr:`ForgeServer.gitlab_api`): ``GET /user``,
  ``GET|POST /projects/:id/merge_requests/:iid/notes``,
  ``GET|PUT|DELETE .../notes/:note_id``, ``POST /projects/:id/uploads`` and
  ``GET /projects/:id/uploads/:secret/:filename``, ``GET /projects/:id/deployments`` and
  ``GET /projects/:id/deployments/:deployment_id``; uploaded files are also served
  (without auth) at ``/-/project/<id>/uploads/<secret>/<file>`` and
  ``/<project path>/uploads/<secret>/<file>``.
* GitHub at the root, like api.github.com (:attr:`ForgeServer.github_api`), and
  under ``/api/v3`` like GitHub Enterprise Server (:attr:`ForgeServer.ghes_api`):
  ``GET /user``, ``GET|POST /repos/{owner}/{repo}/issues/{number}/comments``,
  ``GET /repositories/{repo_id}/issues/{number}/comments`` (where ``Link`` points),
  ``GET|PATCH|DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}``,
  ``GET /repos/{owner}/{repo}/actions/runs/{run_id}`` and ``.../runs/{run_id}/approvals``.

State lives in memory behind one lock; tests drive it through Python
(:meth:`ForgeServer.add_user`, :meth:`~ForgeServer.add_merge_request`,
:meth:`~ForgeServer.add_notes`, :meth:`~ForgeServer.add_pull_request`,
:meth:`~ForgeServer.add_comments`, :meth:`~ForgeServer.notes`,
:meth:`~ForgeServer.comments`, :meth:`~ForgeServer.uploads`, :meth:`~ForgeServer.add_deployment`,
:meth:`~ForgeServer.approve_deployment`, :meth:`~ForgeServer.set_deployment_status`,
:meth:`~ForgeServer.set_gitlab_tier`, :meth:`~ForgeServer.set_role`, :meth:`~ForgeServer.add_workflow_run`,
:meth:`~ForgeServer.review_run`), read every request
back from :attr:`~ForgeServer.requests` / :meth:`~ForgeServer.request_count`, and
inject faults with :meth:`~ForgeServer.fail_next` (``store_first=True`` runs the
request, keeps its effect, and still answers the fault: "502 after storing").

Documented behaviour this module follows (docs.gitlab.com / docs.github.com, and
GitLab's source where the docs are silent):

GitLab
  * offset pagination: ``page`` default 1, ``per_page`` default 20, max 100 (larger
    values are capped by Kaminari's ``max_per_page``; ``X-Per-Page`` shows the cap,
    the ``Link`` URLs keep the requested value); headers ``X-Page``, ``X-Per-Page``,
    ``X-Next-Page`` / ``X-Prev-Page`` (empty string when there is none, also past the
    last page), ``X-Total``, ``X-Total-Pages`` (at least 1) and ``Link`` with
    ``rel="prev"``/``"next"`` when they exist and always ``"first"``/``"last"``;
    above 10,000 records ``X-Total``, ``X-Total-Pages`` and ``rel="last"`` are left
    out. Link URLs carry all request params, sorted (Rails ``to_query``), including
    the route's ``id`` and ``noteable_id`` and the defaulted ``order_by``/``sort``.
  * MR notes: ``sort`` asc|desc default **desc**, ``order_by`` created_at|updated_at
    default created_at (created_at is served as ``id``, updated_at ties on ``id``);
    ``activity_filter`` all_notes|only_comments|only_activity; system notes included.
  * ``body`` is limited to 1,000,000 characters; beyond: ``400 {"message": "400 Bad
    request - Note {:note=>[\\"is too long (maximum is 1000000 characters)\\"]}"}``.
  * only the author may edit/delete a note, system notes never: ``403 {"message":
    "403 Forbidden"}``; ``404 Project Not Found`` / ``404 MergeRequest Not Found`` /
    ``404 Not found`` (unknown note); unknown route ``{"error": "404 Not Found"}``.
  * auth: ``PRIVATE-TOKEN`` header (or ``private_token`` param) or
    ``Authorization: Bearer``; missing/unknown -> ``401 {"message": "401 Unauthorized"}``.
    CI job tokens (``JOB-TOKEN`` header, ``job_token`` param) are accepted only on
    ``GET`` of MR notes; every other route ignores them, so a request carrying only a
    job token is anonymous there: ``401``, not 403 (``POST``/``PUT`` notes, uploads,
    ``/user``).
  * uploads answer 201 ``{id, alt, url: /uploads/<32 hex>/<file>, full_path:
    /-/project/<id>/uploads/<32 hex>/<file>, markdown}``.
  * deployments (lib/api/deployments.rb, app/finders/deployments_finder.rb): ``order_by``
    id|iid|created_at|updated_at|finished_at default id (created_at and iid served as id,
    updated_at ties on id), ``sort`` default **asc**, ``environment`` (name), ``status``
    (created|running|success|failed|canceled|skipped|blocked), ``updated_after/before``,
    ``finished_after/before`` with the finder's rules answered ``400 {"message": "400 Bad request -
    <rule>"}``; offset pagination as above. List items are ``Entities::Deployment`` (``deployable``
    is the job, with its ``user``: who ran it, the player of a manual job); only ``GET
    .../deployments/:deployment_id`` (``DeploymentExtended``) carries, in Premium and Ultimate,
    ``pending_approval_count`` (required minus given while ``blocked``, else 0), ``approvals``
    (``{user, status: approved|rejected, created_at, comment}``) and ``approval_summary.rules``
    (each with its ``deployment_approvals``); the Free tier sends none of them. Unknown deployment:
    ``404 Not found``. Auth: job tokens are accepted (GitLab 16.2+); other tokens need the ``api`` or
    ``read_api`` scope, else 403 ``{"error": "insufficient_scope", ...}`` with a ``WWW-Authenticate``
    challenge; Guests (and Planners) get ``403 Forbidden``.

GitHub
  * ``per_page`` default 30, max 100 (capped; 0 or junk falls back to 30), ``page``
    default 1; comments ordered by ascending id; ``since`` filters on updated_at.
  * ``Link`` (absent when everything fits one page) with absolute URLs of the form
    ``<base>/repositories/<repo id>/issues/<n>/comments?per_page=..&page=..``, rels in
    GitHub's order prev, next, last, first; ``per_page`` is carried when it was given.
  * comment bodies max 65,536 characters: 422 ``Validation Failed`` (shape in
    :data:`GITHUB_TOO_LONG_ERROR`); error bodies carry ``documentation_url`` and
    ``status``.
  * auth: ``Authorization: Bearer <t>`` or ``token <t>``; unknown -> ``401 Bad
    credentials``; none -> ``401 Requires authentication`` (``/user``, writes to a
    public repo) or ``404 Not Found`` (private repo, GitHub hides it).
  * token kinds: personal access tokens (:meth:`ForgeServer.add_user`) may call ``GET
    /user``; installation tokens (:meth:`ForgeServer.add_installation_token`: Actions'
    ``GITHUB_TOKEN``, GitHub App tokens) get ``403`` with exactly
    :data:`GITHUB_INTEGRATION_403` there, and act as the app's bot user
    ``<slug>[bot]`` (``type: Bot``; ``github-actions[bot]`` is id 41898282, app 15368,
    as on github.com); their comments carry ``performed_via_github_app``. A ``pull_request`` run from
    a fork gets a read-only ``GITHUB_TOKEN`` (``read_only=True``): its writes get the same 403
    "Resource not accessible by integration".
  * comment ``user``: simple-user objects with ``login``, ``id`` and ``type``.
  * workflow runs: ``GET .../actions/runs/{run_id}`` (``actor``: who triggered the run,
    ``triggering_actor``: who started this attempt, ``run_attempt``) and ``.../approvals``, the
    review history as one unpaginated JSON array (GitHub's description gives it no page
    parameters) of ``{environments: [{id, node_id, name, url, html_url, created_at, updated_at}],
    state: approved|rejected|pending, user, comment}``; unknown run: ``404 Not Found``; an
    installation token without ``actions: read``: 403 "Resource not accessible by integration".

Rate limits (:meth:`ForgeServer.fail_next` with ``rate_limit=``; the request is not
processed), as documented:
  * GitHub primary: 403 or 429, ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``
    (epoch seconds); secondary: 403 or 429 with a "secondary rate limit" message,
    ``retry-after`` when GitHub sends one, and the primary headers with quota left.
  * GitLab (Rack::Attack): 429 ``Retry later`` (text/plain) with ``RateLimit-*`` and
    ``Retry-After`` seconds; endpoint limits (e.g. note creation): 429
    ``{"message": "This endpoint has been requested too many times. Try again later."}``,
    with ``Retry-After`` in GitLab 18.5+ (the default 429 fault).

Simplifications: one token table serves both dialects; roles are checked only on the
deployment routes (a user without one is a Developer), so only a note's/comment's author may edit
or delete it (real maintainers and write collaborators may edit others'); approvals are set
through :meth:`ForgeServer.approve_deployment` and reviews through
:meth:`ForgeServer.review_run` (the API's approve/review POSTs are not served); timestamps
come from a fake clock that starts at 2024-05-01T12:00:00Z and ticks one second per stored or
edited item. Injected faults
default to what a client meets in the wild: 429 as JSON (plus ``Retry-After`` if
given), 502/503/504 as a proxy's HTML page, anything else ``{"message": "<code> <phrase>"}``.

Gotcha for clients: this machine exports ``REQUESTS_CA_BUNDLE``, and requests lets it
override ``Session.verify``; pass ``verify=str(forge.ca_bundle)`` per request (or set
``trust_env = False``) to trust the forge's CA.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.message
import email.utils
import ipaddress
import json
import math
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, quote, unquote, urlencode

import pytest

HOST = "127.0.0.1"
GITLAB_PREFIX = "/api/v4"
GHES_PREFIX = "/api/v3"
GITLAB_NOTE_MAX_CHARS = 1_000_000
GITLAB_DEFAULT_PER_PAGE = 20
GITLAB_MAX_PER_PAGE = 100
GITLAB_COUNT_LIMIT = 10_000
GITHUB_COMMENT_MAX_CHARS = 65_536
GITHUB_DEFAULT_PER_PAGE = 30
GITHUB_MAX_PER_PAGE = 100
GITHUB_DOCS = "https://docs.github.com/rest"
GITHUB_COMMENT_DOCS = "https://docs.github.com/rest/issues/comments"
GITHUB_USER_DOCS = "https://docs.github.com/rest/users/users#get-the-authenticated-user"
GITHUB_RUN_DOCS = "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run"
GITHUB_REVIEWS_DOCS = "https://docs.github.com/rest/actions/workflow-runs#get-the-review-history-for-a-workflow-run"
# Deployments (lib/api/deployments.rb, app/finders/deployments_finder.rb, ee/app/models/ee/deployment.rb).
DEPLOYMENT_STATUSES = ("created", "running", "success", "failed", "canceled", "skipped", "blocked")
DEPLOYMENT_FINISHED = ("success", "failed", "canceled")
DEPLOYMENT_UPCOMING = ("created", "blocked", "running")
DEPLOYMENT_SORTS = ("id", "iid", "created_at", "updated_at", "finished_at")
# The job's status a deployment's status mirrors (Deployment#sync_status_with: a `manual` job is `blocked`).
DEPLOYMENT_JOB_STATUS = {"blocked": "manual", "created": "created"}
GITLAB_TIERS = ("free", "premium", "ultimate")
GITLAB_ROLES = ("guest", "planner", "reporter", "developer", "maintainer", "owner")
# What GitLab answers (403) for a token without the scope the route needs (Gitlab::Auth::InsufficientScopeError).
GITLAB_INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token."
# GitHub Actions' app and its bot user on github.com: what GITHUB_TOKEN's comments are authored by.
ACTIONS_APP_ID = 15368
ACTIONS_BOT_ID = 41898282
# GET /user with an installation token (GITHUB_TOKEN, a GitHub App's): 403 with exactly this body.
GITHUB_INTEGRATION_403 = {"message": "Resource not accessible by integration", "documentation_url": GITHUB_USER_DOCS,
                          "status": "403"}
GITHUB_RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
RATE_LIMITS = ("github-primary", "github-secondary", "gitlab-throttle")
# What api.github.com answers today (2021+) for an over-long issue comment; before 2021 it was
# {"resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (...)"}.
GITHUB_TOO_LONG_ERROR = {"resource": "IssueComment", "code": "unprocessable", "field": "data",
                         "message": f"Body is too long (maximum is {GITHUB_COMMENT_MAX_CHARS} characters)"}
IMAGE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "bmp", "tiff", "ico", "webp", "svg"})
HANDSHAKE_TIMEOUT = 5.0
CONNECTION_TIMEOUT = 30.0
CLOCK_START = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
_SECRET_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class User:
    """An account on the forge; ``username`` is GitLab's username and GitHub's login."""

    id: int
    username: str
    name: str
    type: str = "User"


@dataclass(frozen=True)
class App:
    """A GitHub App; its installation tokens act as its bot user ``<slug>[bot]`` (``type: Bot``)."""

    id: int
    slug: str
    name: str
    bot: User


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (headers kept verbatim, tokens included) and its final status."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int
    injected: bool

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


@dataclass(frozen=True)
class Upload:
    """A file stored by ``POST /projects/:id/uploads``."""

    id: int
    project_id: int
    secret: str
    filename: str
    data: bytes
    content_type: str
    uploader: str

    @property
    def url(self) -> str:
        """The project-relative URL GitLab puts in Markdown: ``/uploads/<secret>/<filename>``."""
        return f"/uploads/{self.secret}/{self.filename}"

    @property
    def full_path(self) -> str:
        """The absolute path: ``/-/project/<id>/uploads/<secret>/<filename>``."""
        return f"/-/project/{self.project_id}/uploads/{self.secret}/{self.filename}"


@dataclass
class _Fault:
    """An armed failure from :meth:`ForgeServer.fail_next`."""

    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: str | dt.datetime | None
    store_first: bool
    body: bytes | None
    content_type: str | None
    delay: float
    rate_limit: str | None = None
    reset_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Project:
    """A GitLab project."""

    id: int
    path: str


@dataclass
class _Note:
    """A note on a merge request."""

    id: int
    body: str
    author: User
    system: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass
class _MergeRequest:
    """A GitLab merge request and its notes."""

    id: int
    iid: int
    project: _Project
    notes: list[_Note] = field(default_factory=list)


@dataclass
class _Repo:
    """A GitHub repository."""

    id: int
    owner: str
    name: str
    public: bool


@dataclass
class _Comment:
    """A GitHub issue comment."""

    id: int
    body: str
    author: User
    created_at: dt.datetime
    updated_at: dt.datetime
    repo: _Repo
    number: int
    app: App | None = None


@dataclass
class _Pull:
    """A GitHub pull request and its comments."""

    repo: _Repo
    number: int
    comments: list[_Comment] = field(default_factory=list)


@dataclass
class _DeploymentApproval:
    """A decision on a GitLab deployment (``Deployments::Approval``)."""

    user: User
    status: str
    comment: str | None
    created_at: dt.datetime
    rule: str | None = None


@dataclass
class _Deployment:
    """A GitLab deployment of a CI job to an environment; ``rules``: (name, required approvals) of its
    protected environment's multiple approval rules, ``required`` the unified setting's count."""

    id: int
    iid: int
    project: _Project
    environment: str
    environment_id: int
    job_id: int
    job_user: User
    user: User
    status: str
    ref: str
    sha: str
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    required: int
    rules: list[tuple[str, int]]
    approvals: list[_DeploymentApproval] = field(default_factory=list)


@dataclass
class _RunReview:
    """One entry of a GitHub workflow run's review history."""

    environments: list[tuple[int, str]]
    state: str
    user: User
    comment: str


@dataclass
class _Run:
    """A GitHub Actions workflow run."""

    id: int
    repo: _Repo
    actor: User
    triggering_actor: User
    run_attempt: int
    created_at: dt.datetime
    reviews: list[_RunReview] = field(default_factory=list)


@dataclass(frozen=True)
class _Request:
    """An HTTP request as the handler read it (header names lower-cased)."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    @property
    def query(self) -> dict[str, list[str]]:
        """Query parameters, all values per name."""
        return parse_qs(self.query_string, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        """A request header, case-insensitive."""
        return self.headers.get(name.lower())


@dataclass
class _Response:
    """An HTTP response to send."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _FilePart:
    """A file field of a multipart body."""

    filename: str
    data: bytes
    content_type: str


class _HttpError(Exception):
    """Raised inside a route to answer with ``response`` at once."""

    def __init__(self, response: _Response) -> None:
        """Carry ``response``."""
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True)
class TlsFiles:
    """PEM files made by :func:`make_tls_files`: the CA clients trust, and the server's cert and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


class ForgeServer:
    """A running fake forge; see the module docstring for routes and documented behaviour."""

    def __init__(self, *, tls: TlsFiles | None = None, directory: Path | None = None) -> None:
        """Bind 127.0.0.1:<free port> and serve in a daemon thread; ``directory`` is removed by :meth:`stop`."""
        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.server_cert, tls.server_key)
        self._lock = threading.RLock()
        self._own_directory = directory
        self._clock = CLOCK_START
        self._ids: dict[str, int] = {"user": 1000, "project": 41, "mr": 9000, "note": 2_200_000_000,
                                     "repo": 700_000_000, "comment": 3_100_000_000, "upload": 500,
                                     "app": 900_000, "deployment": 80_000, "environment": 300,
                                     "run": 9_100_000_000, "github_environment": 56_780_000}
        self._users_by_token: dict[str, User] = {}
        self._users_by_name: dict[str, User] = {}
        self._job_tokens: dict[str, User] = {}
        self._installation_tokens: dict[str, App] = {}
        self._read_only_tokens: set[str] = set()
        self._projects: dict[int, _Project] = {}
        self._merge_requests: dict[tuple[int, int], _MergeRequest] = {}
        self._uploads: list[Upload] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._pulls: dict[tuple[int, int], _Pull] = {}
        self._faults: list[_Fault] = []
        self._token_scopes: dict[str, frozenset[str]] = {}
        self._roles: dict[tuple[int, str], str] = {}
        self._no_actions_read: set[str] = set()
        self.gitlab_tier = "premium"
        self._deployments: dict[int, _Deployment] = {}
        self._environment_ids: dict[tuple[int, str], int] = {}
        self._runs: dict[tuple[int, int], _Run] = {}
        self._github_environments: dict[tuple[int, str], tuple[int, str]] = {}
        self._log: list[RecordedRequest] = []
        self.errors: list[str] = []
        self._httpd = _HTTPServer(self, context)
        self.port = int(self._httpd.server_address[1])
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{HOST}:{self.port}"
        self.gitlab_api = self.url + GITLAB_PREFIX
        self.github_api = self.url
        self.ghes_api = self.url + GHES_PREFIX
        self.ca_bundle: Path | None = tls.ca_cert if tls is not None else None
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"forge-{self.port}", daemon=True)
        self._thread.start()

    # --- test controls: users ---------------------------------------------------------------------

    def add_user(self, token: str | None, username: str, id: int | None = None, *,
                 name: str | None = None, type: str = "User", scopes: Iterable[str] = ("api",)) -> User:
        """Register a user (``token`` None: an author without API access); both APIs accept the token.
        ``scopes``: the GitLab token's scopes (``api``, ``read_api``, ``read_user``, ...); the deployment routes
        check them, the older routes do not."""
        with self._lock:
            if username.lower() in self._users_by_name:
                raise ValueError(f"user {username!r} already exists")
            user = User(id=id if id is not None else self._next_id("user"), username=username,
                        name=name or username.replace("-", " ").title(), type=type)
            self._users_by_name[username.lower()] = user
            if token is not None:
                self._users_by_token[token] = user
                self._token_scopes[token] = frozenset(scopes)
            return user

    def add_installation_token(self, token: str, app_slug: str = "github-actions", *,
                               app_id: int | None = None, bot_id: int | None = None, read_only: bool = False,
                               actions: str = "read") -> User:
        """Register a GitHub installation token (Actions' GITHUB_TOKEN by default, else a GitHub App's): it
        acts as the app's bot ``<slug>[bot]`` (``type: Bot``; github-actions[bot] is id 41898282 as on
        github.com) and gets 403 "Resource not accessible by integration" on ``GET /user``. ``read_only``: the
        GITHUB_TOKEN of a ``pull_request`` run from a fork, whose writes (POST, PATCH, DELETE of comments) get
        that same 403 with the route's documentation URL. ``actions="none"``: a token whose workflow's
        ``permissions:`` leave out ``actions: read``; the workflow-run routes answer it that same 403."""
        with self._lock:
            login = f"{app_slug}[bot]"
            bot = self._users_by_name.get(login.lower())
            if bot is None:
                default_id = ACTIONS_BOT_ID if app_slug == "github-actions" else self._next_id("user")
                bot = User(bot_id if bot_id is not None else default_id, login,
                           "GitHub Actions" if app_slug == "github-actions" else app_slug, "Bot")
                self._users_by_name[login.lower()] = bot
            elif bot.type != "Bot":
                raise ValueError(f"user {login!r} exists and is not a bot")
            identifier = app_id if app_id is not None else (
                ACTIONS_APP_ID if app_slug == "github-actions" else self._next_id("app"))
            self._installation_tokens[token] = App(identifier, app_slug, bot.name, bot)
            if read_only:
                self._read_only_tokens.add(token)
            if actions not in ("read", "write", "none"):
                raise ValueError("actions must be read, write or none")
            if actions == "none":
                self._no_actions_read.add(token)
            return bot

    def add_job_token(self, token: str, username: str) -> None:
        """Register a CI job token (CI_JOB_TOKEN) running as ``username`` (created if unknown)."""
        with self._lock:
            self._job_tokens[token] = self._user(username)

    def user(self, username: str) -> User:
        """The user called ``username`` (created without a token if unknown)."""
        with self._lock:
            return self._user(username)

    # --- test controls: GitLab --------------------------------------------------------------------

    def add_project(self, path: str, id: int | None = None) -> int:
        """Create a GitLab project ``group/name`` (idempotent); returns its numeric id."""
        with self._lock:
            existing = self._project_by_path(path)
            if existing is not None:
                return existing.id
            project = _Project(id=id if id is not None else self._next_id("project"), path=path)
            self._projects[project.id] = project
            return project.id

    def add_merge_request(self, project: str | int, iid: int) -> None:
        """Create merge request ``!iid`` in ``project`` (a path creates the project if needed)."""
        with self._lock:
            found = self._project_for(project, create=True)
            if (found.id, iid) in self._merge_requests:
                raise ValueError(f"merge request !{iid} already exists in {found.path}")
            self._merge_requests[(found.id, iid)] = _MergeRequest(self._next_id("mr"), iid, found)

    def add_notes(self, project: str | int, iid: int, bodies: Iterable[str], *, author: str,
                  system: bool = False) -> list[dict[str, Any]]:
        """Append notes by ``author`` (created if unknown), oldest first; returns them as the API renders them."""
        with self._lock:
            mr = self._merge_request_for(project, iid)
            user = self._user(author)
            added = [self._store_note(mr, body, user, system=system) for body in bodies]
            return [self._note_json(mr, note) for note in added]

    def notes(self, project: str | int, iid: int) -> list[dict[str, Any]]:
        """Every note of the merge request in creation order, as the API renders them."""
        with self._lock:
            mr = self._merge_request_for(project, iid)
            return [self._note_json(mr, note) for note in mr.notes]

    def uploads(self, project: str | int) -> list[Upload]:
        """Files uploaded to ``project``, oldest first."""
        with self._lock:
            found = self._project_for(project, create=False)
            return [upload for upload in self._uploads if upload.project_id == found.id]

    # --- test controls: GitHub --------------------------------------------------------------------

    def add_pull_request(self, owner: str, repo: str, number: int, *, public: bool = False) -> int:
        """Create PR ``#number`` in ``owner/repo`` (repo created if needed); returns the repo's numeric id."""
        with self._lock:
            found = self._repo_for(owner, repo, create=True, public=public)
            if (found.id, number) in self._pulls:
                raise ValueError(f"pull request #{number} already exists in {owner}/{repo}")
            self._pulls[(found.id, number)] = _Pull(found, number)
            return found.id

    def add_comments(self, owner: str, repo: str, number: int, bodies: Iterable[str], *,
                     author: str) -> list[dict[str, Any]]:
        """Append comments by ``author`` (created if unknown); returns them as the API renders them."""
        with self._lock:
            pull = self._pull_for(owner, repo, number)
            user = self._user(author)
            added = [self._store_comment(pull, body, user) for body in bodies]
            return [self._comment_json(comment, self.github_api) for comment in added]

    def comments(self, owner: str, repo: str, number: int) -> list[dict[str, Any]]:
        """Every comment of the pull request in creation order, as the API renders them."""
        with self._lock:
            pull = self._pull_for(owner, repo, number)
            return [self._comment_json(comment, self.github_api) for comment in pull.comments]

    # --- test controls: GitLab deployments -------------------------------------------------------------

    def set_gitlab_tier(self, tier: str) -> None:
        """``free`` answers deployments without ``approvals``/``pending_approval_count``/``approval_summary`` (a
        Premium feature); ``premium`` (the default) and ``ultimate`` with them."""
        if tier not in GITLAB_TIERS:
            raise ValueError(f"tier must be one of {GITLAB_TIERS}")
        with self._lock:
            self.gitlab_tier = tier

    def set_role(self, project: str | int, username: str, role: str) -> None:
        """``username``'s role in ``project``; a user without one acts as a Developer. Reading deployments needs
        Reporter or above: a Guest (or Planner) gets ``403 Forbidden``."""
        if role not in GITLAB_ROLES:
            raise ValueError(f"role must be one of {GITLAB_ROLES}")
        with self._lock:
            found = self._project_for(project, create=True)
            self._roles[(found.id, self._user(username).username.lower())] = role

    def add_deployment(self, project: str | int, environment: str, *, job_id: int, job_user: str,
                       status: str = "running", required_approvals: int = 0,
                       rules: Iterable[tuple[str, int]] = (), creator: str | None = None,
                       ref: str = "v1.4.0", sha: str = "a91957a858320c0e17f3a0eca7cfacbff50ea29a") -> int:
        """A deployment to ``environment`` by the CI job ``job_id``, run by ``job_user``; ``creator`` (default:
        the job's user) is the deployment's ``user``, who created the pipeline. ``required_approvals``: the
        protected environment's unified approval setting; ``rules``: its multiple approval rules as (name,
        required approvals). Returns the deployment's id."""
        if status not in DEPLOYMENT_STATUSES:
            raise ValueError(f"status must be one of {DEPLOYMENT_STATUSES}")
        with self._lock:
            found = self._project_for(project, create=True)
            env_key = (found.id, environment)
            if env_key not in self._environment_ids:
                self._environment_ids[env_key] = self._next_id("environment")
            iid = 1 + sum(1 for d in self._deployments.values() if d.project.id == found.id)
            now = self._tick()
            deployment = _Deployment(self._next_id("deployment"), iid, found, environment,
                                     self._environment_ids[env_key], job_id, self._user(job_user),
                                     self._user(creator or job_user), status, ref, sha, now, now,
                                     now if status in DEPLOYMENT_FINISHED else None, required_approvals, list(rules))
            self._deployments[deployment.id] = deployment
            return deployment.id

    def approve_deployment(self, deployment_id: int, username: str, status: str = "approved", *,
                           comment: str | None = None, represented_as: str | None = None) -> None:
        """Record ``username``'s decision (``approved`` or ``rejected``) on a deployment, as GitLab stores it
        (``represented_as``: the approval rule it counts for). The Python control records it whatever GitLab's
        rules are (the pipeline triggerer's automatic approval, when the project allows it, is one)."""
        if status not in ("approved", "rejected"):
            raise ValueError("status must be approved or rejected")
        with self._lock:
            deployment = self._deployments[deployment_id]
            now = self._tick()
            deployment.approvals.append(_DeploymentApproval(self._user(username), status, comment, now, represented_as))
            deployment.updated_at = now

    def set_deployment_status(self, deployment_id: int, status: str) -> None:
        """Move a deployment to ``status`` (its job was played, finished, ...)."""
        if status not in DEPLOYMENT_STATUSES:
            raise ValueError(f"status must be one of {DEPLOYMENT_STATUSES}")
        with self._lock:
            deployment = self._deployments[deployment_id]
            deployment.status = status
            deployment.updated_at = self._tick()
            if status in DEPLOYMENT_FINISHED:
                deployment.finished_at = deployment.updated_at

    # --- test controls: GitHub workflow runs ---------------------------------------------------------

    def add_workflow_run(self, owner: str, repo: str, *, actor: str, triggering_actor: str | None = None,
                         run_attempt: int = 1, public: bool = False) -> int:
        """A workflow run in ``owner/repo`` (created if needed) triggered by ``actor``; ``triggering_actor``
        (default: ``actor``) started its attempt ``run_attempt``. Returns the run's id."""
        with self._lock:
            found = self._repo_for(owner, repo, create=True, public=public)
            run = _Run(self._next_id("run"), found, self._user(actor), self._user(triggering_actor or actor),
                       run_attempt, self._tick())
            self._runs[(found.id, run.id)] = run
            return run.id

    def review_run(self, owner: str, repo: str, run_id: int, *, user: str, environments: Iterable[str],
                   state: str = "approved", comment: str = "") -> None:
        """Append a review of the run's pending deployments to ``environments`` by ``user`` (``approved``,
        ``rejected``, or ``pending``: a comment without a decision)."""
        if state not in ("approved", "rejected", "pending"):
            raise ValueError("state must be approved, rejected or pending")
        with self._lock:
            found = self._repo_for(owner, repo, create=False)
            run = self._runs[(found.id, run_id)]
            named = []
            for name in environments:
                key = (found.id, name.lower())  # GitHub's environment names are case-insensitive
                if key not in self._github_environments:
                    self._github_environments[key] = (self._next_id("github_environment"), name)
                named.append(self._github_environments[key])
            run.reviews.append(_RunReview(named, state, self._user(user), comment))

    # --- test controls: faults and the request log --------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int, times: int = 1,
                  retry_after: float | str | dt.datetime | None = None, store_first: bool = False, *,
                  body: bytes | str | dict[str, Any] | list[Any] | None = None, content_type: str | None = None,
                  delay: float = 0.0, rate_limit: str | None = None, reset_after: float | None = None,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next ``times`` ``method`` requests whose raw path matches ``path_regex`` with ``status``.

        ``retry_after``: seconds, a raw header value (str), or a moment sent as an HTTP date. ``rate_limit``
        answers as the forge documents its limits (the request is not processed):

        * ``github-primary``: ``{"message": "API rate limit exceeded for ..."}`` with ``x-ratelimit-limit``,
          ``x-ratelimit-remaining: 0``, ``x-ratelimit-used``, ``x-ratelimit-reset`` (epoch seconds,
          ``reset_after`` seconds from the answer; default 60) and ``x-ratelimit-resource: core``;
        * ``github-secondary``: ``{"message": "You have exceeded a secondary rate limit. ..."}`` with
          ``retry-after`` if given and the primary headers with quota left (the secondary limit is separate);
        * ``gitlab-throttle`` (Rack::Attack): ``Retry later`` as text/plain with ``RateLimit-Name``,
          ``RateLimit-Limit``, ``RateLimit-Observed``, ``RateLimit-Remaining: 0``, ``RateLimit-Reset`` (epoch),
          ``RateLimit-ResetTime`` (HTTP date) and ``Retry-After`` (seconds; default 60).

        ``headers`` are added to the answer (e.g. ``Location`` for a 301/302 from a proxy or a moved API).
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if rate_limit is not None and rate_limit not in RATE_LIMITS:
            raise ValueError(f"rate_limit must be one of {RATE_LIMITS}")
        payload, default_type = _fault_body(body)
        retry: str | dt.datetime | None
        if retry_after is None or isinstance(retry_after, (str, dt.datetime)):
            retry = retry_after
        else:
            retry = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, times, retry,
                                       store_first, payload, content_type or default_type, delay, rate_limit,
                                       reset_after, dict(headers or {})))

    def pending_faults(self) -> int:
        """How many injected failures are still armed."""
        with self._lock:
            return sum(fault.times for fault in self._faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def request_count(self, method: str | None = None, path_regex: str | None = None, *,
                      status: int | None = None) -> int:
        """How many logged requests match ``method``, ``path_regex`` (``re.search``) and ``status``."""
        pattern = re.compile(path_regex) if path_regex is not None else None
        with self._lock:
            return sum(1 for record in self._log
                       if (method is None or record.method == method.upper())
                       and (pattern is None or pattern.search(record.path))
                       and (status is None or record.status == status))

    def clear_log(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self._log.clear()

    def stop(self) -> None:
        """Stop serving, drop open connections and remove generated TLS files. Idempotent."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        self._httpd.drop_connections()
        if self._own_directory is not None:
            shutil.rmtree(self._own_directory, ignore_errors=True)
            self._own_directory = None

    # --- request entry point (handler threads) ------------------------------------------------------

    def _respond(self, request: _Request) -> _Response:
        """Apply an armed fault or route the request; log the outcome."""
        fault = self._take_fault(request)
        if fault is not None and fault.delay > 0:
            time.sleep(fault.delay)
        with self._lock:
            response = self._route_safely(request) if fault is None or fault.store_first else None
            if fault is not None:
                response = _fault_response(fault)
            assert response is not None
            self._log.append(RecordedRequest(request.method, request.path, request.query, dict(request.headers),
                                             request.body, response.status, fault is not None))
            return response

    def _take_fault(self, request: _Request) -> _Fault | None:
        """Consume one use of the first armed fault matching the request."""
        with self._lock:
            for fault in self._faults:
                if fault.method == request.method and fault.pattern.search(request.path):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def _route_safely(self, request: _Request) -> _Response:
        """Route; a bug in the forge becomes a 500 and lands in :attr:`errors`."""
        try:
            return self._route(request)
        except _HttpError as error:
            return error.response
        except Exception:  # noqa: BLE001 - reported to the test through self.errors
            self.errors.append(traceback.format_exc())
            return _json(500, {"message": "500 Internal Server Error"})

    def _route(self, request: _Request) -> _Response:
        """Dispatch by path prefix to the GitLab, upload-file or GitHub routes."""
        path = request.path
        if path == GITLAB_PREFIX or path.startswith(GITLAB_PREFIX + "/"):
            return self._gitlab(request, path[len(GITLAB_PREFIX) + 1:].split("/"))
        if path.startswith(GHES_PREFIX + "/"):
            return self._github(request, path[len(GHES_PREFIX) + 1:].split("/"), self.ghes_api)
        segments = path[1:].split("/")
        if len(segments) >= 4 and segments[-3] == "uploads" and _SECRET_RE.match(segments[-2]):
            return self._upload_file(request, segments)
        return self._github(request, segments, self.github_api)

    # --- GitLab routes ----------------------------------------------------------------------------

    def _gitlab(self, request: _Request, segments: list[str]) -> _Response:
        """GitLab ``/api/v4`` routes."""
        method = request.method
        match segments:
            case ["user"]:
                _allow(method, "GET")
                user = self._gitlab_user(request, job_token_allowed=False)
                return _json(200, self._gitlab_user_json(user))
            case ["projects", project_id, "merge_requests", iid, "notes"]:
                _allow(method, "GET", "POST")
                user = self._gitlab_user(request, job_token_allowed=method in ("GET", "HEAD"))
                if method == "POST":
                    return self._gitlab_create_note(request, user, project_id, iid)
                return self._gitlab_list_notes(request, project_id, iid)
            case ["projects", project_id, "merge_requests", iid, "notes", note_id]:
                _allow(method, "GET", "PUT", "DELETE")
                user = self._gitlab_user(request, job_token_allowed=method in ("GET", "HEAD"))
                return self._gitlab_note(request, user, project_id, iid, note_id)
            case ["projects", project_id, "uploads"]:
                _allow(method, "POST")
                user = self._gitlab_user(request, job_token_allowed=False)
                return self._gitlab_upload(request, user, project_id)
            case ["projects", project_id, "uploads", secret, filename]:
                _allow(method, "GET")
                self._gitlab_user(request, job_token_allowed=False)
                project = self._gitlab_project(project_id)
                return self._serve_upload(project, secret, unquote(filename))
            case ["projects", project_id, "deployments"]:
                _allow(method, "GET")
                project = self._gitlab_read_deployments(request, project_id)
                return self._gitlab_list_deployments(request, project_id, project)
            case ["projects", project_id, "deployments", deployment_id]:
                _allow(method, "GET")
                project = self._gitlab_read_deployments(request, project_id)
                number = _grape_int({"deployment_id": deployment_id}, "deployment_id", 0)
                deployment = self._deployments.get(number)
                if deployment is None or deployment.project.id != project.id:
                    raise _HttpError(_json(404, {"message": "404 Not found"}))
                return _json(200, self._deployment_json(deployment, extended=True))
        return _json(404, {"error": "404 Not Found"})

    def _gitlab_read_deployments(self, request: _Request, project_id: str) -> _Project:
        """The deployment routes' guard: a job token is accepted (GitLab 16.2+); a personal, project or group
        token needs the ``api`` or ``read_api`` scope (else 403 insufficient_scope); the user Reporter or above
        (else 403 Forbidden)."""
        user = self._gitlab_user(request, job_token_allowed=True)
        token = request.header("private-token") or request.param("private_token")
        if not token:
            scheme, _, bearer = (request.header("authorization") or "").partition(" ")
            token = bearer.strip() if scheme.lower() == "bearer" else None
        scopes = self._token_scopes.get(token or "") if token in self._users_by_token else None
        if scopes is not None and not scopes & {"api", "read_api"}:
            challenge = (f'Bearer realm="Protected by OAuth 2.0", error="insufficient_scope", '
                         f'error_description="{GITLAB_INSUFFICIENT_SCOPE}", scope="api read_api"')
            raise _HttpError(_json(403, {"error": "insufficient_scope", "error_description": GITLAB_INSUFFICIENT_SCOPE,
                                         "scope": "api read_api"}, {"WWW-Authenticate": challenge}))
        project = self._gitlab_project(project_id)
        if self._roles.get((project.id, user.username.lower()), "developer") in ("guest", "planner"):
            raise _HttpError(_json(403, {"message": "403 Forbidden"}))
        return project

    def _gitlab_list_deployments(self, request: _Request, project_id: str, project: _Project) -> _Response:
        """``GET /projects/:id/deployments``: Grape's param checks, DeploymentsFinder's rules and filters, one page
        with GitLab's pagination headers; items are ``Entities::Deployment`` (no approvals)."""
        params = {key: values[0] for key, values in request.query.items()}
        params.setdefault("order_by", "id")
        params.setdefault("sort", "asc")
        page = _grape_int(params, "page", 1)
        per_page = _grape_int(params, "per_page", GITLAB_DEFAULT_PER_PAGE)
        _grape_check(params, "page", page >= 1, "does not have a valid value")
        _grape_check(params, "per_page", per_page != 0, "has a value not allowed")
        _grape_check(params, "per_page", per_page > 0, "does not have a valid value")
        _grape_check(params, "order_by", params["order_by"] in DEPLOYMENT_SORTS, "does not have a valid value")
        _grape_check(params, "sort", params["sort"] in ("asc", "desc"), "does not have a valid value")
        if "status" in params:
            _grape_check(params, "status", params["status"] in DEPLOYMENT_STATUSES, "does not have a valid value")
        bounds = {name: _grape_time(params, name) for name in
                  ("updated_after", "updated_before", "finished_after", "finished_before") if params.get(name)}
        _deployments_finder_check(params, bounds)
        found = [d for d in self._deployments.values() if d.project.id == project.id
                 and ("environment" not in params or d.environment == params["environment"])
                 and ("status" not in params or d.status == params["status"])
                 and _within(d.updated_at, bounds.get("updated_after"), bounds.get("updated_before"))
                 and (not {"finished_after", "finished_before"} & bounds.keys()
                      or (d.finished_at is not None
                          and _within(d.finished_at, bounds.get("finished_after"), bounds.get("finished_before"))))]
        order = params["order_by"] if "updated_after" not in bounds and "updated_before" not in bounds else "updated_at"

        def key(deployment: _Deployment) -> tuple[Any, ...]:
            """DeploymentsFinder's order: created_at and iid are served as id; updated_at ties on id."""
            if order == "updated_at":
                return (deployment.updated_at, deployment.id)
            if order == "finished_at":
                return (deployment.finished_at or CLOCK_START, deployment.id)
            return (deployment.id,)

        found.sort(key=key, reverse=params["sort"] == "desc")
        params.update({"id": unquote(project_id), "page": str(page), "per_page": str(per_page)})
        limit = min(per_page, GITLAB_MAX_PER_PAGE)
        chunk = found[(page - 1) * limit: page * limit]
        headers = _gitlab_page_headers(f"{self.gitlab_api}/projects/{project_id}/deployments", params, page, limit,
                                       len(found))
        return _json(200, [self._deployment_json(d, extended=False) for d in chunk], headers)

    def _deployment_json(self, deployment: _Deployment, *, extended: bool) -> dict[str, Any]:
        """``Entities::Deployment``; ``extended``: ``DeploymentExtended``, which in Premium and Ultimate adds
        ``pending_approval_count``, ``approvals`` and ``approval_summary``."""
        project = deployment.project
        job_status = DEPLOYMENT_JOB_STATUS.get(deployment.status, deployment.status)
        rendered: dict[str, Any] = {
            "id": deployment.id, "iid": deployment.iid, "ref": deployment.ref, "sha": deployment.sha,
            "created_at": _gitlab_time(deployment.created_at), "updated_at": _gitlab_time(deployment.updated_at),
            "user": self._gitlab_user_basic(deployment.user),
            "environment": {"id": deployment.environment_id, "name": deployment.environment,
                            "slug": re.sub(r"[^a-z0-9]+", "-", deployment.environment.lower()).strip("-")[:24],
                            "external_url": None, "created_at": _gitlab_time(CLOCK_START),
                            "updated_at": _gitlab_time(deployment.updated_at)},
            "deployable": {
                "id": deployment.job_id, "status": job_status, "stage": "promote", "name": "promote",
                "ref": deployment.ref, "tag": True, "coverage": None, "allow_failure": False,
                "created_at": _gitlab_time(deployment.created_at), "started_at": None, "finished_at": None,
                "duration": None, "queued_duration": None,
                "user": {**self._gitlab_user_basic(deployment.job_user), "created_at": _gitlab_time(CLOCK_START),
                         "bio": "", "location": None, "public_email": None, "website_url": "", "organization": None},
                "commit": {"id": deployment.sha, "short_id": deployment.sha[:8], "title": "Release",
                           "message": "Release\n"},
                "pipeline": {"id": deployment.job_id // 10 + 1, "project_id": project.id, "sha": deployment.sha,
                             "ref": deployment.ref, "status": "running", "source": "push",
                             "web_url": f"{self.url}/{project.path}/-/pipelines/{deployment.job_id // 10 + 1}"},
                "web_url": f"{self.url}/{project.path}/-/jobs/{deployment.job_id}",
                "project": {"ci_job_token_scope_enabled": False}, "artifacts": [], "runner": None,
                "artifacts_expire_at": None, "archived": False, "tag_list": []},
            "status": deployment.status,
        }
        if extended and self.gitlab_tier != "free":
            required = sum(count for _, count in deployment.rules) if deployment.rules else deployment.required
            pending = required - len(deployment.approvals) if deployment.status == "blocked" else 0
            rules = [{"id": n + 1, "user_id": None, "group_id": 130 + n, "access_level": None,
                      "access_level_description": name, "required_approvals": count, "group_inheritance_type": 0,
                      "deployment_approvals": [self._approval_json(a) for a in deployment.approvals if a.rule == name]}
                     for n, (name, count) in enumerate(deployment.rules)]
            rendered.update({"pending_approval_count": pending,
                             "approvals": [self._approval_json(a) for a in deployment.approvals],
                             "approval_summary": {"rules": rules}})
        return rendered

    def _approval_json(self, approval: _DeploymentApproval) -> dict[str, Any]:
        """``Entities::Deployments::Approval``."""
        return {"user": self._gitlab_user_basic(approval.user), "status": approval.status,
                "created_at": _gitlab_time(approval.created_at), "comment": approval.comment}

    def _gitlab_user_basic(self, user: User) -> dict[str, Any]:
        """``Entities::UserBasic`` (the fields clients use)."""
        return {"id": user.id, "username": user.username, "name": user.name, "state": "active", "locked": False,
                "avatar_url": None, "web_url": f"{self.url}/{user.username}"}

    def _gitlab_user(self, request: _Request, *, job_token_allowed: bool) -> User:
        """The caller: PAT/OAuth via PRIVATE-TOKEN or Bearer; a job token only where the route allows it."""
        private = request.header("private-token") or request.param("private_token")
        if private:
            return self._users_by_token.get(private) or _raise(_gitlab_unauthorized())
        scheme, _, bearer = (request.header("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and bearer.strip():
            token = bearer.strip()
            user = self._users_by_token.get(token)
            if user is None and job_token_allowed:
                user = self._job_tokens.get(token)
            return user or _raise(_gitlab_unauthorized())
        job = request.header("job-token") or request.param("job_token")
        if job and job_token_allowed:
            return self._job_tokens.get(job) or _raise(_gitlab_unauthorized())
        raise _HttpError(_gitlab_unauthorized())

    def _gitlab_list_notes(self, request: _Request, project_id: str, iid: str) -> _Response:
        """``GET .../notes``: validated params, sorted notes, one page with GitLab's pagination headers."""
        params = {key: values[0] for key, values in request.query.items()}
        params.setdefault("order_by", "created_at")
        params.setdefault("sort", "desc")
        params.setdefault("activity_filter", "all_notes")
        page = _grape_int(params, "page", 1)
        per_page = _grape_int(params, "per_page", GITLAB_DEFAULT_PER_PAGE)
        _grape_check(params, "page", page >= 1, "does not have a valid value")
        _grape_check(params, "per_page", per_page != 0, "has a value not allowed")
        _grape_check(params, "per_page", per_page > 0, "does not have a valid value")
        _grape_check(params, "order_by", params["order_by"] in ("created_at", "updated_at"),
                     "does not have a valid value")
        _grape_check(params, "sort", params["sort"] in ("asc", "desc"), "does not have a valid value")
        _grape_check(params, "activity_filter",
                     params["activity_filter"] in ("all_notes", "only_comments", "only_activity"),
                     "does not have a valid value")
        mr = self._gitlab_merge_request(project_id, iid)
        notes = _filter_activity(mr.notes, params["activity_filter"])
        notes = _sort_notes(notes, params["order_by"], params["sort"])
        params.update({"id": unquote(project_id), "noteable_id": iid, "page": str(page), "per_page": str(per_page)})
        limit = min(per_page, GITLAB_MAX_PER_PAGE)
        chunk = notes[(page - 1) * limit: page * limit]
        base = f"{self.gitlab_api}/projects/{project_id}/merge_requests/{iid}/notes"
        headers = _gitlab_page_headers(base, params, page, limit, len(notes))
        return _json(200, [self._note_json(mr, note) for note in chunk], headers)

    def _gitlab_create_note(self, request: _Request, user: User, project_id: str, iid: str) -> _Response:
        """``POST .../notes``: validate ``body``, find the MR, store the note (201)."""
        params = self._gitlab_params(request)
        if "body" not in params or params["body"] is None:
            raise _HttpError(_json(400, {"error": "body is missing"}))
        body = _as_text(params["body"])
        mr = self._gitlab_merge_request(project_id, iid)
        _check_note_body(body)
        note = self._store_note(mr, body, user, system=False)
        return _json(201, self._note_json(mr, note))

    def _gitlab_note(self, request: _Request, user: User, project_id: str, iid: str, note_id: str) -> _Response:
        """``GET|PUT|DELETE .../notes/:note_id``; edits and deletes are the author's alone."""
        params = self._gitlab_params(request) if request.method == "PUT" else {}
        note_number = _grape_int({"note_id": note_id}, "note_id", 0)
        if request.method == "PUT" and "body" in params and not _as_text(params["body"]).strip():
            raise _HttpError(_json(400, {"error": "body is empty"}))
        mr = self._gitlab_merge_request(project_id, iid)
        note = next((note for note in mr.notes if note.id == note_number), None)
        if note is None:
            raise _HttpError(_json(404, {"message": "404 Not found"}))
        if request.method in ("GET", "HEAD"):
            return _json(200, self._note_json(mr, note))
        if note.system or note.author.id != user.id:
            raise _HttpError(_json(403, {"message": "403 Forbidden"}))
        if request.method == "DELETE":
            mr.notes.remove(note)
            return _Response(204)
        if "body" in params:
            body = _as_text(params["body"])
            _check_note_body(body)
            if body != note.body:
                note.body = body
                note.updated_at = self._tick()
        return _json(200, self._note_json(mr, note))

    def _gitlab_upload(self, request: _Request, user: User, project_id: str) -> _Response:
        """``POST /projects/:id/uploads`` with multipart field ``file`` (201)."""
        params = self._gitlab_params(request)
        if "file" not in params:
            raise _HttpError(_json(400, {"error": "file is missing"}))
        part = params["file"]
        if not isinstance(part, _FilePart):
            raise _HttpError(_json(400, {"error": "file is invalid"}))
        project = self._gitlab_project(project_id)
        filename = _sanitize_filename(part.filename)
        upload = Upload(id=self._next_id("upload"), project_id=project.id, secret=secrets.token_hex(16),
                        filename=filename, data=part.data, content_type=part.content_type, uploader=user.username)
        self._uploads.append(upload)
        alt = filename.rsplit(".", 1)[0] if "." in filename else filename
        is_image = filename.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS
        markdown = f"![{alt}]({upload.url})" if is_image else f"[{filename}]({upload.url})"
        return _json(201, {"id": upload.id, "alt": alt, "url": upload.url, "full_path": upload.full_path,
                           "markdown": markdown})

    def _upload_file(self, request: _Request, segments: list[str]) -> _Response:
        """Web routes for uploaded files: ``/-/project/<id>/uploads/...`` and ``/<path>/uploads/...``."""
        if request.method not in ("GET", "HEAD"):
            return _Response(404, b"Not Found", {"Content-Type": "text/plain"})
        owner = segments[:-3]
        if len(owner) == 3 and owner[:2] == ["-", "project"] and owner[2].isdigit():
            project = self._projects.get(int(owner[2]))
        else:
            project = self._project_by_path("/".join(unquote(part) for part in owner))
        if project is None:
            return _Response(404, b"Not Found", {"Content-Type": "text/plain"})
        return self._serve_upload(project, segments[-2], unquote(segments[-1]))

    def _serve_upload(self, project: _Project, secret: str, filename: str) -> _Response:
        """The stored bytes of one upload, or 404."""
        for upload in self._uploads:
            if upload.project_id == project.id and upload.secret == secret and upload.filename == filename:
                return _Response(200, upload.data, {"Content-Type": upload.content_type})
        return _json(404, {"message": "404 Not found"})

    def _gitlab_params(self, request: _Request) -> dict[str, Any]:
        """Grape-style params: query string overlaid with a form, JSON or multipart body."""
        params: dict[str, Any] = {key: values[0] for key, values in request.query.items()}
        content_type = (request.header("content-type") or "").lower()
        if not request.body:
            return params
        if content_type.startswith("application/json"):
            try:
                payload = json.loads(request.body)
            except ValueError:
                raise _HttpError(_json(400, {"error": "The request body is not valid JSON"})) from None
            if not isinstance(payload, dict):
                raise _HttpError(_json(400, {"error": "The request body must be a JSON object"}))
            params.update(payload)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            params.update({key: values[0] for key, values in form.items()})
        elif content_type.startswith("multipart/form-data"):
            params.update(_parse_multipart(request.header("content-type") or "", request.body))
        return params

    def _gitlab_project(self, project_id: str) -> _Project:
        """The project named by a numeric id or URL-encoded path, else 404 Project Not Found."""
        key = unquote(project_id)
        project = self._projects.get(int(key)) if key.isdigit() else self._project_by_path(key)
        if project is None:
            raise _HttpError(_json(404, {"message": "404 Project Not Found"}))
        return project

    def _gitlab_merge_request(self, project_id: str, iid: str) -> _MergeRequest:
        """The merge request ``iid`` of the project, else 404 MergeRequest Not Found."""
        number = _grape_int({"noteable_id": iid}, "noteable_id", 0)
        project = self._gitlab_project(project_id)
        mr = self._merge_requests.get((project.id, number))
        if mr is None:
            raise _HttpError(_json(404, {"message": "404 MergeRequest Not Found"}))
        return mr

    def _gitlab_user_json(self, user: User) -> dict[str, Any]:
        """``GET /user`` for ``user``."""
        return {"id": user.id, "username": user.username, "name": user.name, "state": "active", "locked": False,
                "avatar_url": None, "web_url": f"{self.url}/{user.username}", "bot": user.type == "Bot"}

    def _note_json(self, mr: _MergeRequest, note: _Note) -> dict[str, Any]:
        """A note as GitLab's ``Entities::Note`` renders it (the fields clients use)."""
        return {"id": note.id, "type": None, "body": note.body, "attachment": None,
                "author": {"id": note.author.id, "username": note.author.username, "name": note.author.name,
                           "state": "active", "locked": False, "avatar_url": None,
                           "web_url": f"{self.url}/{note.author.username}"},
                "created_at": _gitlab_time(note.created_at), "updated_at": _gitlab_time(note.updated_at),
                "system": note.system, "noteable_id": mr.id, "noteable_type": "MergeRequest",
                "project_id": mr.project.id, "resolvable": False, "confidential": False, "internal": False,
                "imported": False, "imported_from": "none", "noteable_iid": mr.iid, "commands_changes": {}}

    # --- GitHub routes ----------------------------------------------------------------------------

    def _github(self, request: _Request, segments: list[str], api: str) -> _Response:
        """GitHub routes (api.github.com layout; GHES under /api/v3)."""
        method = request.method
        match segments:
            case ["user"]:
                _allow(method, "GET", github=True)
                user = self._github_user(request) or _raise(_github_error(401, "Requires authentication",
                                                                            GITHUB_USER_DOCS))
                if self._github_app(request) is not None:
                    return _json(403, GITHUB_INTEGRATION_403, github=True)
                return _json(200, _github_user_json(user, api, self.url), github=True)
            case ["repos", owner, repo, "issues", "comments", comment_id]:
                _allow(method, "GET", "PATCH", "DELETE", github=True)
                return self._github_comment(request, api, owner, repo, comment_id)
            case ["repos", owner, repo, "issues", number, "comments"]:
                _allow(method, "GET", "POST", github=True)
                pull = self._github_pull(request, unquote(owner), unquote(repo), number, write=method == "POST")
                if method == "POST":
                    return self._github_create_comment(request, api, pull)
                return self._github_list_comments(request, api, pull)
            case ["repos", owner, repo, "actions", "runs", run_id]:
                _allow(method, "GET", github=True)
                return _json(200, self._run_json(self._github_run(request, owner, repo, run_id, GITHUB_RUN_DOCS), api),
                             github=True)
            case ["repos", owner, repo, "actions", "runs", run_id, "approvals"]:
                _allow(method, "GET", github=True)
                run = self._github_run(request, owner, repo, run_id, GITHUB_REVIEWS_DOCS)
                return _json(200, [self._review_json(review, run, api) for review in run.reviews], github=True)
            case ["repositories", repo_id, "issues", number, "comments"]:
                _allow(method, "GET", github=True)
                repo_found = next((r for r in self._repos.values() if str(r.id) == repo_id), None)
                if repo_found is None:
                    raise _HttpError(_github_error(404, "Not Found", f"{GITHUB_COMMENT_DOCS}#list-issue-comments"))
                pull = self._github_pull(request, repo_found.owner, repo_found.name, number, write=False)
                return self._github_list_comments(request, api, pull)
        return _github_error(404, "Not Found", GITHUB_DOCS)

    def _github_user(self, request: _Request) -> User | None:
        """The caller from ``Authorization: Bearer|token <t>`` (or Basic); None if anonymous; 401 if unknown."""
        header = (request.header("authorization") or "").strip()
        if not header:
            return None
        scheme, _, credential = header.partition(" ")
        token = credential.strip()
        if scheme.lower() == "basic":
            try:
                token = base64.b64decode(token).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                token = ""
        elif scheme.lower() not in ("bearer", "token"):
            token = ""
        user = self._users_by_token.get(token) if token else None
        app = self._installation_tokens.get(token) if token and user is None else None
        if app is not None:
            user = app.bot
        if user is None:
            raise _HttpError(_github_error(401, "Bad credentials", GITHUB_DOCS))
        return user

    def _github_check_write(self, request: _Request, docs: str) -> None:
        """403 "Resource not accessible by integration" for a read-only installation token (a fork's PR run)."""
        scheme, _, credential = (request.header("authorization") or "").strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and credential.strip() in self._read_only_tokens:
            raise _HttpError(_github_error(403, "Resource not accessible by integration", docs))

    def _github_run(self, request: _Request, owner: str, repo: str, run_id: str, docs: str) -> _Run:
        """The run addressed by the route: 404 for an unknown repository or run (and a private repository
        without auth), 403 "Resource not accessible by integration" for an installation token without
        ``actions: read``."""
        user = self._github_user(request)
        found = self._repos.get((unquote(owner).lower(), unquote(repo).lower()))
        if found is None or (user is None and not found.public):
            raise _HttpError(_github_error(404, "Not Found", docs))
        scheme, _, credential = (request.header("authorization") or "").strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and credential.strip() in self._no_actions_read:
            raise _HttpError(_github_error(403, "Resource not accessible by integration", docs))
        run = self._runs.get((found.id, int(run_id))) if run_id.isdigit() else None
        if run is None:
            raise _HttpError(_github_error(404, "Not Found", docs))
        return run

    def _run_json(self, run: _Run, api: str) -> dict[str, Any]:
        """A workflow run as the REST API renders it (the fields clients use)."""
        repo = run.repo
        return {"id": run.id, "name": "mlci", "node_id": f"WFR_kwLO{run.id:x}", "head_branch": "v1.4.0",
                "head_sha": "a91957a858320c0e17f3a0eca7cfacbff50ea29a", "path": ".github/workflows/mlci.yml",
                "run_number": run.id % 1000, "event": "push", "status": "in_progress", "conclusion": None,
                "workflow_id": 161335, "url": f"{api}/repos/{repo.owner}/{repo.name}/actions/runs/{run.id}",
                "html_url": f"{self.url}/{repo.owner}/{repo.name}/actions/runs/{run.id}",
                "created_at": _github_time(run.created_at), "updated_at": _github_time(run.created_at),
                "run_attempt": run.run_attempt, "run_started_at": _github_time(run.created_at),
                "actor": _github_user_json(run.actor, api, self.url),
                "triggering_actor": _github_user_json(run.triggering_actor, api, self.url),
                "repository": {"id": repo.id, "name": repo.name, "full_name": f"{repo.owner}/{repo.name}",
                               "private": not repo.public}}

    def _review_json(self, review: _RunReview, run: _Run, api: str) -> dict[str, Any]:
        """An ``environment-approvals`` entry of a run's review history."""
        repo = run.repo
        return {"environments": [{"id": env_id, "node_id": f"EN_kwDO{env_id:x}", "name": name,
                                  "url": f"{api}/repos/{repo.owner}/{repo.name}/environments/{quote(name)}",
                                  "html_url": f"{self.url}/{repo.owner}/{repo.name}/deployments/activity_log"
                                              f"?environments_filter={quote(name)}",
                                  "created_at": _github_time(CLOCK_START), "updated_at": _github_time(CLOCK_START)}
                                 for env_id, name in review.environments],
                "state": review.state, "user": _github_user_json(review.user, api, self.url),
                "comment": review.comment}

    def _github_app(self, request: _Request) -> App | None:
        """The app whose installation token authenticates the request, if any."""
        scheme, _, credential = (request.header("authorization") or "").strip().partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self._installation_tokens.get(credential.strip())

    def _github_pull(self, request: _Request, owner: str, repo: str, number: str, *, write: bool) -> _Pull:
        """The PR addressed by the route, with GitHub's 401/404 rules for anonymous callers."""
        docs = f"{GITHUB_COMMENT_DOCS}#{'create-an-issue-comment' if write else 'list-issue-comments'}"
        user = self._github_user(request)
        found = self._repos.get((owner.lower(), repo.lower()))
        if found is None or (user is None and not found.public):
            raise _HttpError(_github_error(404, "Not Found", docs))
        if user is None and write:
            raise _HttpError(_github_error(401, "Requires authentication", docs))
        if write:
            self._github_check_write(request, docs)
        pull = self._pulls.get((found.id, int(number))) if number.isdigit() else None
        if pull is None:
            raise _HttpError(_github_error(404, "Not Found", docs))
        return pull

    def _github_list_comments(self, request: _Request, api: str, pull: _Pull) -> _Response:
        """One page of comments (ascending id) with GitHub's ``Link`` header."""
        per_page = _github_int(request.param("per_page"), GITHUB_DEFAULT_PER_PAGE)
        per_page = min(per_page, GITHUB_MAX_PER_PAGE)
        page = _github_int(request.param("page"), 1)
        comments = sorted(pull.comments, key=lambda comment: comment.id)
        since = request.param("since")
        if since:
            try:
                threshold = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise _HttpError(_github_error(422, f"Invalid request.\n\n{since!r} is not a valid date-time.",
                                               f"{GITHUB_COMMENT_DOCS}#list-issue-comments")) from None
            if threshold.tzinfo is None:
                threshold = threshold.replace(tzinfo=dt.UTC)
            comments = [comment for comment in comments if comment.updated_at >= threshold]
        chunk = comments[(page - 1) * per_page: page * per_page]
        headers: dict[str, str] = {}
        link = _github_link(f"{api}/repositories/{pull.repo.id}/issues/{pull.number}/comments",
                            request.query_string, page, math.ceil(len(comments) / per_page))
        if link:
            headers["Link"] = link
        return _json(200, [self._comment_json(comment, api) for comment in chunk], headers, github=True)

    def _github_create_comment(self, request: _Request, api: str, pull: _Pull) -> _Response:
        """``POST .../issues/{n}/comments`` with JSON ``{"body": ...}`` (201 + Location)."""
        user = self._github_user(request)
        assert user is not None  # _github_pull answered 401/404 for anonymous writes
        body = _github_body(request, f"{GITHUB_COMMENT_DOCS}#create-an-issue-comment")
        comment = self._store_comment(pull, body, user, self._github_app(request))
        rendered = self._comment_json(comment, api)
        return _json(201, rendered, {"Location": rendered["url"]}, github=True)

    def _github_comment(self, request: _Request, api: str, owner: str, repo: str, comment_id: str) -> _Response:
        """``GET|PATCH|DELETE .../issues/comments/{id}``; edits and deletes are the author's alone."""
        anchor = {"GET": "get-an-issue-comment", "PATCH": "update-an-issue-comment",
                  "DELETE": "delete-an-issue-comment"}.get(request.method, "get-an-issue-comment")
        docs = f"{GITHUB_COMMENT_DOCS}#{anchor}"
        user = self._github_user(request)
        found = self._repos.get((unquote(owner).lower(), unquote(repo).lower()))
        comment = None
        if found is not None and (user is not None or found.public) and comment_id.isdigit():
            comment = next((c for pull in self._pulls.values() if pull.repo is found
                            for c in pull.comments if c.id == int(comment_id)), None)
        if comment is None:
            raise _HttpError(_github_error(404, "Not Found", docs))
        if request.method in ("GET", "HEAD"):
            return _json(200, self._comment_json(comment, api), github=True)
        if user is None:
            raise _HttpError(_github_error(401, "Requires authentication", docs))
        self._github_check_write(request, docs)
        body = _github_body(request, docs) if request.method == "PATCH" else comment.body
        if comment.author.id != user.id:
            raise _HttpError(_github_error(403, "Resource not accessible by personal access token", docs))
        pull = self._pulls[(comment.repo.id, comment.number)]
        if request.method == "DELETE":
            pull.comments.remove(comment)
            return _Response(204)
        if body != comment.body:
            comment.body = body
            comment.updated_at = self._tick()
        return _json(200, self._comment_json(comment, api), github=True)

    def _comment_json(self, comment: _Comment, api: str) -> dict[str, Any]:
        """An issue comment as the REST API renders it (the fields clients use)."""
        repo = comment.repo
        return {"url": f"{api}/repos/{repo.owner}/{repo.name}/issues/comments/{comment.id}",
                "html_url": f"{self.url}/{repo.owner}/{repo.name}/pull/{comment.number}#issuecomment-{comment.id}",
                "issue_url": f"{api}/repos/{repo.owner}/{repo.name}/issues/{comment.number}",
                "id": comment.id, "node_id": f"IC_kwDO{comment.id:x}",
                "user": _github_user_json(comment.author, api, self.url),
                "created_at": _github_time(comment.created_at), "updated_at": _github_time(comment.updated_at),
                "author_association": "NONE", "body": comment.body,
                "performed_via_github_app": None if comment.app is None else self._app_json(comment.app)}

    def _app_json(self, app: App) -> dict[str, Any]:
        """A GitHub App as ``performed_via_github_app`` renders it (the fields clients use)."""
        return {"id": app.id, "slug": app.slug, "node_id": f"MDM6QXBw{app.id}", "name": app.name,
                "html_url": f"{self.url}/apps/{app.slug}", "external_url": f"{self.url}/apps/{app.slug}"}

    # --- state helpers (caller holds the lock) ------------------------------------------------------

    def _next_id(self, kind: str) -> int:
        """The next id of ``kind``."""
        self._ids[kind] += 1
        return self._ids[kind]

    def _tick(self) -> dt.datetime:
        """The next instant of the forge's clock (one second per event: strictly increasing timestamps)."""
        self._clock += dt.timedelta(seconds=1)
        return self._clock

    def _user(self, username: str) -> User:
        """The user ``username``, created without a token if unknown."""
        user = self._users_by_name.get(username.lower())
        if user is None:
            user = User(self._next_id("user"), username, username.replace("-", " ").title())
            self._users_by_name[username.lower()] = user
        return user

    def _project_by_path(self, path: str) -> _Project | None:
        """The project at ``path`` (case-insensitive, as GitLab resolves full paths)."""
        return next((p for p in self._projects.values() if p.path.lower() == path.lower()), None)

    def _project_for(self, project: str | int, *, create: bool) -> _Project:
        """A project by id or path for the Python API."""
        if isinstance(project, int):
            found = self._projects.get(project)
        else:
            found = self._project_by_path(project)
            if found is None and create:
                found = self._projects[self.add_project(project)]
        if found is None:
            raise KeyError(f"no project {project!r}")
        return found

    def _merge_request_for(self, project: str | int, iid: int) -> _MergeRequest:
        """A merge request for the Python API."""
        found = self._project_for(project, create=False)
        mr = self._merge_requests.get((found.id, iid))
        if mr is None:
            raise KeyError(f"no merge request !{iid} in {found.path}")
        return mr

    def _repo_for(self, owner: str, repo: str, *, create: bool, public: bool = False) -> _Repo:
        """A GitHub repository for the Python API."""
        found = self._repos.get((owner.lower(), repo.lower()))
        if found is None and create:
            found = _Repo(self._next_id("repo"), owner, repo, public)
            self._repos[(owner.lower(), repo.lower())] = found
        if found is None:
            raise KeyError(f"no repository {owner}/{repo}")
        return found

    def _pull_for(self, owner: str, repo: str, number: int) -> _Pull:
        """A pull request for the Python API."""
        pull = self._pulls.get((self._repo_for(owner, repo, create=False).id, number))
        if pull is None:
            raise KeyError(f"no pull request #{number} in {owner}/{repo}")
        return pull

    def _store_note(self, mr: _MergeRequest, body: str, author: User, *, system: bool) -> _Note:
        """Append a note to ``mr``."""
        now = self._tick()
        note = _Note(self._next_id("note"), body, author, system, now, now)
        mr.notes.append(note)
        return note

    def _store_comment(self, pull: _Pull, body: str, author: User, app: App | None = None) -> _Comment:
        """Append a comment to ``pull`` (``app``: posted with that app's installation token)."""
        now = self._tick()
        comment = _Comment(self._next_id("comment"), body, author, now, now, pull.repo, pull.number, app)
        pull.comments.append(comment)
        return comment


# --- HTTP plumbing ------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that does the TLS handshake in the handler thread and tracks connections."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, forge: ForgeServer, ssl_context: ssl.SSLContext | None) -> None:
        """Bind 127.0.0.1 on a free port."""
        super().__init__((HOST, 0), _Handler)
        self.forge = forge
        self.ssl_context = ssl_context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Wrap the connection in TLS (if enabled) and serve it."""
        connection: socket.socket = request
        try:
            if self.ssl_context is not None:
                request.settimeout(HANDSHAKE_TIMEOUT)
                connection = self.ssl_context.wrap_socket(request, server_side=True)
            with self._connections_lock:
                self._connections.add(connection)
            super().finish_request(connection, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(connection)
            if connection is not request:
                connection.close()

    def drop_connections(self) -> None:
        """Shut down every open client connection (keep-alive sockets included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up or fail the TLS handshake; record anything else."""
        error = traceback.format_exc()
        if not any(name in error for name in ("SSLError", "ConnectionResetError", "BrokenPipeError",
                                              "TimeoutError", "ConnectionAbortedError", "socket.timeout")):
            self.forge.errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a :class:`_Request` for :meth:`ForgeServer._respond`."""

    protocol_version = "HTTP/1.1"
    server_version = "forge/1"
    sys_version = ""
    timeout = CONNECTION_TIMEOUT

    def setup(self) -> None:
        """Disable Nagle: headers and body go out as separate writes, and delayed ACKs would add 40 ms each."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        """Serve GET."""
        self._serve()

    def do_HEAD(self) -> None:
        """Serve HEAD."""
        self._serve()

    def do_POST(self) -> None:
        """Serve POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve PUT."""
        self._serve()

    def do_PATCH(self) -> None:
        """Serve PATCH."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve DELETE."""
        self._serve()

    def version_string(self) -> str:
        """The ``Server`` header."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean (the forge keeps its own log)."""

    def _serve(self) -> None:
        """Read the request, get the forge's answer, write it."""
        body = self._read_body()
        path, _, query = self.path.partition("?")
        request = _Request(self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        server: _HTTPServer = self.server  # type: ignore[assignment]
        response = server.forge._respond(request)
        self.send_response(response.status)
        headers = {"Content-Type": "application/json", **response.headers}
        if response.status not in (204, 304):
            headers["Content-Length"] = str(len(response.body))
        for name, value in headers.items():
            if response.status != 204 or name.lower() != "content-type":
                self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and response.status not in (204, 304):
            self.wfile.write(response.body)

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


# --- pure helpers --------------------------------------------------------------------------------------


def _raise(response: _Response) -> NoReturn:
    """Raise ``response`` as an :class:`_HttpError` (usable in expressions)."""
    raise _HttpError(response)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None, *, github: bool = False) -> _Response:
    """A JSON response (GitHub adds ``charset=utf-8``)."""
    content_type = "application/json; charset=utf-8" if github else "application/json"
    return _Response(status, json.dumps(payload).encode(), {"Content-Type": content_type, **(headers or {})})


def _allow(method: str, *allowed: str, github: bool = False) -> None:
    """405 unless ``method`` is allowed (HEAD rides on GET)."""
    if method in allowed or (method == "HEAD" and "GET" in allowed):
        return
    if github:
        raise _HttpError(_github_error(404, "Not Found", GITHUB_DOCS))
    raise _HttpError(_json(405, {"error": "405 Not Allowed"}, {"Allow": ", ".join(allowed)}))


def _gitlab_unauthorized() -> _Response:
    """GitLab's documented 401 body."""
    return _json(401, {"message": "401 Unauthorized"})


def _github_error(status: int, message: str, documentation_url: str) -> _Response:
    """A GitHub error body: message, documentation_url and the status as a string."""
    return _json(status, {"message": message, "documentation_url": documentation_url, "status": str(status)},
                 github=True)


def _grape_int(params: dict[str, str], name: str, default: int) -> int:
    """An Integer param as Grape coerces it; 400 ``<name> is invalid`` otherwise."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _HttpError(_json(400, {"error": f"{name} is invalid"})) from None


def _grape_check(params: dict[str, str], name: str, ok: bool, message: str) -> None:
    """400 ``{"error": "<name> <message>"}`` unless ``ok``."""
    if not ok:
        raise _HttpError(_json(400, {"error": f"{name} {message}"}))


def _grape_time(params: dict[str, str], name: str) -> dt.datetime:
    """A DateTime param (ISO 8601); 400 ``<name> is invalid`` otherwise."""
    try:
        moment = dt.datetime.fromisoformat(params[name].replace("Z", "+00:00"))
    except ValueError:
        raise _HttpError(_json(400, {"error": f"{name} is invalid"})) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _deployments_finder_check(params: dict[str, str], bounds: dict[str, dt.datetime]) -> None:
    """DeploymentsFinder#validate!: its InefficientQueryError answered as ``400 Bad request - <message>``."""
    by_updated = bool({"updated_after", "updated_before"} & bounds.keys())
    by_finished = bool({"finished_after", "finished_before"} & bounds.keys())
    status = params.get("status")
    problem = None
    if by_updated and by_finished:
        problem = "Both `updated_at` filter and `finished_at` filter can not be specified"
    elif by_updated and params["order_by"] != "updated_at":
        problem = "`updated_at` filter requires `updated_at` sort"
    elif by_finished and params["order_by"] != "finished_at":
        problem = "`finished_at` filter requires `finished_at` sort."
    elif params["order_by"] == "finished_at" and not (by_finished or status in DEPLOYMENT_FINISHED):
        problem = ("`finished_at` sort requires `finished_at` filter or a filter with at least one of the finished "
                   "statuses.")
    elif by_finished and status != "success":
        problem = "`finished_at` filter must be combined with `success` status filter."
    if problem is not None:
        raise _HttpError(_json(400, {"message": f"400 Bad request - {problem}"}))


def _within(moment: dt.datetime, after: dt.datetime | None, before: dt.datetime | None) -> bool:
    """``after`` <= moment <= ``before``, each bound optional (the finder's inclusive scopes)."""
    return (after is None or moment >= after) and (before is None or moment <= before)


def _filter_activity(notes: list[_Note], activity_filter: str) -> list[_Note]:
    """GitLab's ``activity_filter``: all notes, user comments only, or system notes only."""
    if activity_filter == "only_comments":
        return [note for note in notes if not note.system]
    if activity_filter == "only_activity":
        return [note for note in notes if note.system]
    return list(notes)


def _sort_notes(notes: list[_Note], order_by: str, sort: str) -> list[_Note]:
    """GitLab's ``order_options_with_tie_breaker``: created_at is served by id; updated_at ties on id."""
    def key(note: _Note) -> tuple[Any, ...]:
        """Sort key for one note."""
        return (note.id,) if order_by == "created_at" else (note.updated_at, note.id)
    return sorted(notes, key=key, reverse=sort == "desc")


def _gitlab_page_headers(base: str, params: dict[str, str], page: int, per_page: int, total: int) -> dict[str, str]:
    """X-* pagination headers and ``Link`` as GitLab's OffsetHeaderBuilder writes them."""
    total_pages = math.ceil(total / per_page)
    next_page = page + 1 if page < total_pages else None
    prev_page = page - 1 if 1 < page <= total_pages else None
    counted = total <= GITLAB_COUNT_LIMIT

    def href(number: int) -> str:
        """The URL of page ``number`` (all params, sorted like Rails' to_query)."""
        return f"{base}?{urlencode(sorted({**params, 'page': str(number)}.items()))}"

    links = []
    if prev_page is not None:
        links.append(f'<{href(prev_page)}>; rel="prev"')
    if next_page is not None:
        links.append(f'<{href(next_page)}>; rel="next"')
    links.append(f'<{href(1)}>; rel="first"')
    if counted:
        links.append(f'<{href(max(total_pages, 1))}>; rel="last"')
    headers = {"X-Per-Page": str(per_page), "X-Page": str(page), "X-Next-Page": str(next_page or ""),
               "X-Prev-Page": str(prev_page or ""), "Link": ", ".join(links)}
    if counted:
        headers.update({"X-Total": str(total), "X-Total-Pages": str(max(total_pages, 1))})
    return headers


def _github_int(raw: str | None, default: int) -> int:
    """A positive integer query param; junk, zero or negative fall back to ``default``."""
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return value if value > 0 else default


def _github_link(base: str, query_string: str, page: int, total_pages: int) -> str | None:
    """GitHub's ``Link`` header (None when everything fits one page)."""
    if total_pages <= 1 and page <= 1:
        return None
    kept = [(key, value) for key, value in _ordered_query(query_string) if key != "page"]

    def href(number: int) -> str:
        """The URL of page ``number``: the request's params in order, then ``page``."""
        return f"{base}?{urlencode([*kept, ('page', str(number))])}"

    links = []
    if page > 1:
        links.append(f'<{href(page - 1)}>; rel="prev"')
    if page < total_pages:
        links.append(f'<{href(page + 1)}>; rel="next"')
        links.append(f'<{href(total_pages)}>; rel="last"')
    if page > 1:
        links.append(f'<{href(1)}>; rel="first"')
    return ", ".join(links)


def _ordered_query(query_string: str) -> list[tuple[str, str]]:
    """Query pairs in request order (first value per name)."""
    seen: dict[str, str] = {}
    for pair in query_string.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        seen.setdefault(unquote(key.replace("+", " ")), unquote(value.replace("+", " ")))
    return list(seen.items())


def _github_body(request: _Request, docs: str) -> str:
    """The ``body`` of a JSON request with GitHub's 400/422 answers."""
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        raise _HttpError(_github_error(400, "Problems parsing JSON", docs)) from None
    if not isinstance(payload, dict):
        raise _HttpError(_github_error(422, "Invalid request.\n\nInvalid input: object is expected.", docs))
    if "body" not in payload:
        raise _HttpError(_github_error(422, 'Invalid request.\n\n"body" wasn\'t supplied.', docs))
    body = payload["body"]
    if not isinstance(body, str):
        raise _HttpError(_github_error(
            422, f"Invalid request.\n\nFor 'properties/body', {json.dumps(body)} is not a string.", docs))
    if len(body) > GITHUB_COMMENT_MAX_CHARS:
        raise _HttpError(_json(422, {"message": "Validation Failed", "errors": [dict(GITHUB_TOO_LONG_ERROR)],
                                     "documentation_url": docs, "status": "422"}, github=True))
    return body


def _check_note_body(body: str) -> None:
    """GitLab's Note validations (presence, 1,000,000 characters) with its 400 message."""
    if not body.strip():
        problem = "can't be blank"
    elif len(body) > GITLAB_NOTE_MAX_CHARS:
        problem = f"is too long (maximum is {GITLAB_NOTE_MAX_CHARS} characters)"
    else:
        return
    messages = "{:note=>[" + json.dumps(problem) + "]}"
    raise _HttpError(_json(400, {"message": f"400 Bad request - Note {messages}"}))


def _as_text(value: Any) -> str:
    """A Grape String param from form/JSON input."""
    if isinstance(value, _FilePart):
        return value.data.decode("utf-8", "replace")
    return value if isinstance(value, str) else json.dumps(value)


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """``multipart/form-data`` fields: text parts as str, file parts as :class:`_FilePart`."""
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str):
        raise _HttpError(_json(400, {"error": "multipart body without boundary"}))
    fields: dict[str, Any] = {}
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        part = email.message.Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if value:
                part[name.strip()] = value.strip()
        field_name = part.get_param("name", header="content-disposition")
        if not isinstance(field_name, str):
            continue
        data = data.removesuffix(b"\r\n")
        filename = part.get_filename()
        if filename is None:
            fields[field_name] = data.decode("utf-8", "replace")
        else:
            fields[field_name] = _FilePart(filename, data, part.get_content_type())
    return fields


def _sanitize_filename(filename: str) -> str:
    """GitLab-style file name: basename with anything unusual replaced by ``_``."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base) or "file"


def _fault_body(body: bytes | str | dict[str, Any] | list[Any] | None) -> tuple[bytes | None, str | None]:
    """Normalise a custom fault body and pick its content type."""
    if body is None:
        return None, None
    if isinstance(body, (dict, list)):
        return json.dumps(body).encode(), "application/json"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return body, "application/octet-stream"


def _fault_response(fault: _Fault) -> _Response:
    """The injected answer: a documented rate limit, a custom body, or what a forge or its proxy sends."""
    if fault.rate_limit is not None:
        return _rate_limit_response(fault)
    headers = {"Retry-After": _retry_after_value(fault.retry_after)} if fault.retry_after is not None else {}
    headers.update(fault.headers)
    if fault.body is not None:
        return _Response(fault.status, fault.body, {"Content-Type": fault.content_type or "", **headers})
    phrase = HTTPStatus(fault.status).phrase if fault.status in HTTPStatus._value2member_map_ else "Error"
    if fault.status in (502, 503, 504):
        title = f"{fault.status} {phrase}"
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return _Response(fault.status, page.encode(), {"Content-Type": "text/html", **headers})
    if fault.status == 429:
        return _json(429, {"message": "This endpoint has been requested too many times. Try again later."}, headers)
    return _json(fault.status, {"message": f"{fault.status} {phrase}"}, headers)


def _retry_after_value(value: str | dt.datetime) -> str:
    """A Retry-After header value: as given, or a moment as an HTTP date (IMF-fixdate)."""
    return value if isinstance(value, str) else email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)


def _rate_limit_response(fault: _Fault) -> _Response:
    """A rate-limit answer with the body and headers the forge documents (see :meth:`ForgeServer.fail_next`)."""
    now = time.time()
    retry = {} if fault.retry_after is None else {"retry-after": _retry_after_value(fault.retry_after)}
    if fault.rate_limit == "gitlab-throttle":
        seconds = int(fault.retry_after) if isinstance(fault.retry_after, str) and fault.retry_after.isdigit() else 60
        reset = math.ceil(now + seconds)
        headers = {"RateLimit-Name": "throttle_authenticated_api", "RateLimit-Limit": "2000",
                   "RateLimit-Observed": "2001", "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset),
                   "RateLimit-ResetTime": email.utils.formatdate(reset, usegmt=True),
                   "Retry-After": retry.get("retry-after", str(seconds)), "Content-Type": "text/plain"}
        return _Response(fault.status, b"Retry later\n", headers)
    primary = fault.rate_limit == "github-primary"
    reset = math.ceil(now + (fault.reset_after if fault.reset_after is not None else 60 if primary else 3600))
    headers = {"x-ratelimit-limit": "1000" if primary else "5000", "x-ratelimit-remaining": "0" if primary else "4990",
               "x-ratelimit-used": "1000" if primary else "10", "x-ratelimit-reset": str(reset),
               "x-ratelimit-resource": "core", **retry}
    if primary:
        message = "API rate limit exceeded for installation ID 4242."
        docs = f"{GITHUB_RATE_LIMIT_DOCS}#about-primary-rate-limits"
    else:
        message = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you "
                   "reach out to GitHub Support for help, please include the request ID C0DE:1234:5678:9ABC:DEF0.")
        docs = f"{GITHUB_RATE_LIMIT_DOCS}#about-secondary-rate-limits"
    return _json(fault.status, {"message": message, "documentation_url": docs, "status": str(fault.status)}, headers,
                 github=True)


def _gitlab_time(moment: dt.datetime) -> str:
    """GitLab's timestamp format: ``2024-05-01T12:00:01.000Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _github_time(moment: dt.datetime) -> str:
    """GitHub's timestamp format: ``2024-05-01T12:00:01Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _github_user_json(user: User, api: str, web: str) -> dict[str, Any]:
    """A GitHub simple-user object."""
    return {"login": user.username, "id": user.id, "node_id": f"U_kgDO{user.id:x}", "type": user.type,
            "site_admin": False, "name": user.name, "url": f"{api}/users/{quote(user.username)}",
            "html_url": f"{web}/{quote(user.username)}"}


# --- TLS and startup -----------------------------------------------------------------------------------


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a fresh CA and a server cert for 127.0.0.1/localhost signed by it (``cryptography``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlci forge test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(ca_ski, critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    files.server_key.chmod(0o600)
    return files


def start_forge(*, tls: bool = False, directory: Path | None = None) -> ForgeServer:
    """Start a forge on 127.0.0.1:<free port>; ``tls`` makes a CA + cert in ``directory`` (default: a temp dir)."""
    if not tls:
        return ForgeServer()
    own = directory is None
    target = Path(tempfile.mkdtemp(prefix="forge-tls-")) if directory is None else directory
    try:
        return ForgeServer(tls=make_tls_files(target), directory=target if own else None)
    except BaseException:
        if own:
            shutil.rmtree(target, ignore_errors=True)
        raise


@pytest.fixture
def forge() -> Iterator[ForgeServer]:
    """A fresh plain-HTTP forge per test."""
    server = start_forge()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def forge_tls(tmp_path: Path) -> Iterator[ForgeServer]:
    """A fresh HTTPS forge per test; trust :attr:`ForgeServer.ca_bundle` (``verify=str(forge_tls.ca_bundle)``)."""
    server = start_forge(tls=True, directory=tmp_path / "forge-tls")
    try:
        yield server
    finally:
        server.stop()


__all__ = ["App", "ForgeServer", "RecordedRequest", "TlsFiles", "Upload", "User", "forge", "forge_tls",
           "make_tls_files", "start_forge"]
