"""The bundle's refusals."""
from __future__ import annotations

from mlci.core.errors import GateFailed


class BundleInvalid(GateFailed):
    """A bundle that fails verification (exit 1): one line naming the bundle, the member and what is wrong;
    nothing has been written anywhere when it is raised."""
