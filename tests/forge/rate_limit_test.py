"""Rate limits as GitHub and GitLab document them, answered by the stand-in: the wait mlci reads from them
(Retry-After seconds or HTTP date, x-ratelimit-reset, RateLimit-Reset), the bound, and that a refused POST
is looked for again and posted once."""
from __future__ import annotations

import datetime as dt
import email.utils

import pytest
import requests

from mlci.core.errors import EnvironmentProblem, ExitCode
from mlci.core.http import MAX_WAIT, UNTOLD_LIMIT_WAIT, make_session, rate_limit_wait, send
from mlci.forge import sticky
from mlci.forge.base import Later
from mlci.forge.github import GitHub
from mlci.forge.gitlab import GitLab
from tests.testing.forge import ForgeServer

MARK = sticky.marker("metrics")
NOTES = r"/merge_requests/7/notes$"
COMMENTS = r"/issues/5/comments$"


@pytest.fixture
def github(forge: ForgeServer) -> GitHub:
    forge.add_installation_token("ghs_actions_token")
    forge.add_pull_request("bank", "credit-model", 5)
    return GitHub(forge.github_api, "bank/credit-model", 5, "ghs_actions_token", "GITHUB_TOKEN", None)


def _answer(forge: ForgeServer, http: requests.Session, **fault: object) -> requests.Response:
    forge.fail_next("GET", r"^/probe$", **fault)  # type: ignore[arg-type]
    return http.get(f"{forge.url}/probe")


def test_github_primary_limit_waits_until_x_ratelimit_reset(forge: ForgeServer, http: requests.Session) -> None:
    answer = _answer(forge, http, status=403, rate_limit="github-primary", reset_after=5)
    assert answer.headers["x-ratelimit-remaining"] == "0" and "Retry-After" not in answer.headers
    assert answer.json()["message"].startswith("API rate limit exceeded")
    wait = rate_limit_wait(answer, 0)
    assert wait is not None and 4.0 <= wait <= 7.0  # reset (epoch second) + 1 - the server's Date


def test_github_secondary_limit_with_and_without_retry_after(forge: ForgeServer, http: requests.Session) -> None:
    told = _answer(forge, http, status=403, rate_limit="github-secondary", retry_after=3)
    assert told.headers["x-ratelimit-remaining"] != "0"  # the primary quota is not what ran out
    assert rate_limit_wait(told, 0) == 3.0
    untold = _answer(forge, http, status=403, rate_limit="github-secondary")
    assert "secondary rate limit" in untold.json()["message"]
    assert rate_limit_wait(untold, 0) == UNTOLD_LIMIT_WAIT  # GitHub: "wait for at least one minute"
    as_429 = _answer(forge, http, status=429, rate_limit="github-secondary", retry_after=2)
    assert rate_limit_wait(as_429, 0) == 2.0


def test_gitlab_throttle_and_http_date_retry_after(forge: ForgeServer, http: requests.Session) -> None:
    throttled = _answer(forge, http, status=429, rate_limit="gitlab-throttle", retry_after=4)
    assert throttled.text == "Retry later\n" and throttled.headers["RateLimit-Remaining"] == "0"
    assert email.utils.parsedate_to_datetime(throttled.headers["RateLimit-ResetTime"]).tzinfo is not None
    assert rate_limit_wait(throttled, 0) == 4.0
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    dated = _answer(forge, http, status=429, retry_after=soon)
    assert dated.headers["Retry-After"].endswith(" GMT")
    wait = rate_limit_wait(dated, 0)
    assert wait is not None and 8.0 <= wait <= 11.0
    past = _answer(forge, http, status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert rate_limit_wait(past, 0) == 0.0


@pytest.mark.parametrize("status, fault", [
    (403, {"body": {"message": "Resource not accessible by integration"}}),  # a permission 403
    (404, {}), (500, {}),
])
def test_other_answers_are_not_rate_limits(forge: ForgeServer, http: requests.Session, status: int,
                                           fault: dict[str, object]) -> None:
    assert rate_limit_wait(_answer(forge, http, status=status, **fault), 0) is None


@pytest.mark.parametrize("retry_after", ["soon", "-1", "nan", "1e9", "Mon, 99 Foo 2024 99:99:99 GMT", ""])
def test_unreadable_retry_after_is_one_line_exit_3_naming_the_url(forge: ForgeServer, gitlab: GitLab,
                                                                 retry_after: str) -> None:
    forge.fail_next("GET", NOTES, 429, retry_after=retry_after)
    with pytest.raises(EnvironmentProblem) as caught:
        list(gitlab.comments())
    assert caught.value.exit_code == ExitCode.ENVIRONMENT
    message = str(caught.value)
    assert "\n" not in message and "GitLab 429 on GET /projects/bank%2Fcredit-model/merge_requests/7/notes" in message
    assert "Retry-After" in message and "neither seconds nor an HTTP date" in message


def test_a_wait_longer_than_the_bound_fails_at_once(forge: ForgeServer, github: GitHub) -> None:
    forge.fail_next("GET", COMMENTS, 403, rate_limit="github-primary", reset_after=3600)
    with pytest.raises(EnvironmentProblem, match=rf"GitHub 403 on GET /repos/bank/credit-model/issues/5/comments"
                                                 rf": rate limited for 360\d s, longer than mlci "
                                                 rf"waits \({MAX_WAIT:.0f} s\)"):
        list(github.comments())
    assert forge.request_count("GET", COMMENTS) == 1


def test_idempotent_calls_wait_as_told_then_succeed(forge: ForgeServer) -> None:
    forge.add_installation_token("ghs_actions_token")
    forge.add_pull_request("bank", "credit-model", 5)
    forge.fail_next("GET", COMMENTS, 403, rate_limit="github-secondary", retry_after=7)
    forge.fail_next("GET", COMMENTS, 429, rate_limit="github-primary", reset_after=2)
    waits: list[float] = []
    session = make_session({"Authorization": "Bearer ghs_actions_token"}, None)
    session.trust_env = False
    done = send(session, "GET", f"{forge.github_api}/repos/bank/credit-model/issues/5/comments", idempotent=True,
                sleep=waits.append)
    assert done.status_code == 200 and waits[0] == 7.0 and 1.0 <= waits[1] <= 4.0


@pytest.mark.parametrize("kind", ["gitlab-throttle", "gitlab-endpoint"])
def test_gitlab_429_on_the_first_post_waits_looks_again_and_posts_once(forge: ForgeServer, gitlab: GitLab,
                                                                       kind: str) -> None:
    if kind == "gitlab-throttle":
        forge.fail_next("POST", NOTES, 429, rate_limit="gitlab-throttle", retry_after=3)
    else:
        forge.fail_next("POST", NOTES, 429, retry_after=3)  # ApplicationRateLimiter (notes_create)
    assert gitlab.create("probe") == Later(3.0) and forge.notes("bank/credit-model", 7) == []
    forge.fail_next("POST", NOTES, 429, retry_after=3)
    waits: list[float] = []
    posted = sticky.upsert(gitlab, "metrics", "body", "pointer", sleep=waits.append)
    assert posted.action == "created" and waits == [3.0]
    assert [n["body"] for n in forge.notes("bank/credit-model", 7)] == [f"{MARK}\nbody"]
    methods = [r.method for r in forge.requests if r.path.endswith("/notes")]
    assert methods[-4:] == ["GET", "POST", "GET", "POST"]  # looked again before the second POST


@pytest.mark.parametrize("fault", [
    {"status": 403, "rate_limit": "github-secondary", "retry_after": 2},
    {"status": 403, "rate_limit": "github-primary", "reset_after": 1},
    {"status": 429, "rate_limit": "github-secondary", "retry_after": 2},
])
def test_github_rate_limited_post_is_posted_once_after_the_wait(forge: ForgeServer, github: GitHub,
                                                                fault: dict[str, object]) -> None:
    forge.fail_next("POST", COMMENTS, **fault)  # type: ignore[arg-type]
    waits: list[float] = []
    assert sticky.upsert(github, "metrics", "body", "pointer", sleep=waits.append).action == "created"
    assert len(waits) == 1 and 0.0 < waits[0] <= 3.0
    assert [c["body"] for c in forge.comments("bank", "credit-model", 5)] == [f"{MARK}\nbody"]
    assert forge.request_count("POST", COMMENTS) == 2 and forge.request_count("POST", COMMENTS, status=201) == 1


def test_a_limit_that_does_not_clear_is_exit_3_after_three_looks(forge: ForgeServer, gitlab: GitLab) -> None:
    forge.fail_next("POST", NOTES, 429, times=3, retry_after=1)
    waits: list[float] = []
    with pytest.raises(EnvironmentProblem, match=r"could not post the report after 3 attempts \(the last: rate "
                                                 r"limited\)"):
        sticky.upsert(gitlab, "metrics", "body", "pointer", sleep=waits.append)
    assert waits == [1.0, 1.0] and forge.notes("bank/credit-model", 7) == []
