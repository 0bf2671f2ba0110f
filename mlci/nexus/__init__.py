"""Sonatype Nexus Repository 3 raw hosted repositories: uploads (PUT), checksums verified after upload (the REST
assets API, else a read-back), and "Disable redeploy" (an existing path is success only with the same bytes)."""
