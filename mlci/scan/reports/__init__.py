"""A verdict as the documents its readers take: the normalised JSON summary (summary.py, its schema
summary.schema.json), SARIF 2.1.0 (sarif.py), GitLab's container-scanning report (gitlab.py), the MR section
(markdown.py); and the check of trivy's CycloneDX SBOM (cyclonedx.py). Pure functions: the caller writes the
files. Every text from a scan is masked (registered secrets) before it is cut, escaped or hashed."""
