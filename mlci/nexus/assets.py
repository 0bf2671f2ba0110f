"""The stored checksums of raw assets from Nexus's REST API: `GET /service/rest/v1/search/assets?repository=R&
group=/DIR`, every page (continuationToken) read. `group` (the directory, with a leading '/') is the one coordinate
that reads the same in OrientDB-era and datastore Nexus; a path comes back as `a/b` or `/a/b` by era."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mlci.nexus.client import NexusHttp
from mlci.nexus.errors import NexusError
from mlci.nexus.location import RawLocation

MAX_PAGES = 200  # 10,000 assets in one directory at Nexus's 50 a page
ALGORITHMS = ("sha256", "sha1")  # the checksums mlci compares, strongest first (Nexus before 3.x datastore: sha1)


@dataclass(frozen=True)
class Asset:
    """One asset as the REST API lists it."""

    path: str  # inside the repository, no leading '/'
    checksum: dict[str, str]
    size: int | None

    def strongest(self) -> tuple[str, str] | None:
        """(algorithm, hex) of the strongest checksum mlci compares, or None when Nexus gave neither."""
        for algorithm in ALGORITHMS:
            value = self.checksum.get(algorithm)
            if value:
                return algorithm, value.lower()
        return None


class AssetsApi:
    """Search by directory; `available` turns False when the host has no REST API (a 404 on the endpoint)."""

    def __init__(self, http: NexusHttp, location: RawLocation) -> None:
        self.http, self.location = http, location
        self.available = True
        self.url = f"{location.base}/service/rest/v1/search/assets"

    def find(self, asset_path: str) -> Asset | None:
        """The asset at `asset_path`, None when the search does not list it (or there is no REST API)."""
        directory, _, _ = asset_path.rpartition("/")
        for asset in self._search("/" + directory):
            if asset.path == asset_path:
                return asset
        return None

    def _search(self, group: str) -> Iterator[Asset]:
        params = {"repository": self.location.repository, "group": group}
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            if not self.available:
                return
            response = self.http.call("GET", self.url, params=params, stream=True)
            with response:
                if response.status_code == 404:
                    self.available = False
                    return
                if response.status_code != 200:
                    raise self.http.refusal(response, "GET", self.url, self.location.repository)
                body = self.http.json(response, "the asset search")
            items, token = _page(body, self.http.host)
            yield from (asset for asset in (_asset(item) for item in items) if asset is not None)
            if token is None:
                return
            if token in seen:
                raise NexusError(f"Nexus {self.http.host}: the asset search repeats a continuationToken")
            seen.add(token)
            params = {**params, "continuationToken": token}
        raise NexusError(f"Nexus {self.http.host}: the asset search runs past {MAX_PAGES} pages")


def _page(body: Any, host: str) -> tuple[list[Any], str | None]:
    """(items, continuationToken) of one page of a search."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise NexusError(f"Nexus {host}: the asset search answered without `items`")
    token = body.get("continuationToken")
    if token is not None and (not isinstance(token, str) or not token):
        raise NexusError(f"Nexus {host}: the asset search answered a continuationToken that is not a string")
    return body["items"], token


def _asset(item: Any) -> Asset | None:
    """An item as an Asset (None for one without a path: not an asset)."""
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        return None
    checksum = item.get("checksum")
    checks = {k: v for k, v in checksum.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(checksum, dict) else {}
    size = item.get("fileSize")
    return Asset(item["path"].lstrip("/"), checks, size if isinstance(size, int) and size >= 0 else None)
