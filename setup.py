"""The package list, which pyproject.toml cannot say: mlci's packages plus mlci.ci_templates, whose directory is the
layout's top-level ci_templates/ (pyproject.toml: package-dir). Everything else is in pyproject.toml."""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["mlci*"]), "mlci.ci_templates"])
