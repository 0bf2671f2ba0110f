"""Air-gap bundles: export, verify, import (issue 12)."""
