"""Security scanning as a library: trivy (subprocess) and the model-file scanner produce findings, the policy
judges them, reports and the scan record carry the verdict (mlci scan)."""
