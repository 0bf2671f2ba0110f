"""`mlci init` as a library: the files a repository needs to run mlci's pipeline, rendered from ci_templates/."""
