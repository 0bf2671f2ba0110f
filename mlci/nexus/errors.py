"""The ways a Nexus call fails: Nexus unreachable, refusing or answering nonsense (exit 3), and a path that already
holds other content in a repository that does not allow redeploying it (exit 1: nothing was changed)."""
from __future__ import annotations

from mlci.core.errors import EnvironmentProblem, GateFailed


class NexusError(EnvironmentProblem):
    """Nexus cannot be reached, refused the credentials, or stored other bytes than were sent."""


class ArtifactExists(GateFailed):
    """The path holds other content and the repository does not allow redeploying it."""

    def __init__(self, where: str, algorithm: str, stored: str, local: str) -> None:
        self.where, self.algorithm, self.stored, self.local = where, algorithm, stored, local
        super().__init__(f"{where} already exists with {algorithm} {stored}, the file to upload has {algorithm} "
                         f"{local}: the repository does not allow redeploying (nothing was changed; upload a new "
                         "version instead)")
