"""`mlci config check|show`: validate mlci.yaml, or print the effective configuration."""
from __future__ import annotations

import argparse
from pathlib import Path

from mlci.core import log


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Register `config check` and `config show`."""
    parser = sub.add_parser("config", help="validate or show mlci.yaml", parents=[common])
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate mlci.yaml: one line per problem, exit 2 if any",
                               parents=[common])
    check.set_defaults(handler=lambda a: run(action="check", config_path=a.config, as_json=a.json))
    show = actions.add_parser("show", help="print the effective config (file + MLCI_* overrides + defaults)",
                              parents=[common])
    show.set_defaults(handler=lambda a: run(action="show", config_path=a.config, as_json=a.json))


def run(*, action: str, config_path: str | None, as_json: bool) -> int:
    """Load the config (raising ConfigError on any problem) and report it."""
    from mlci import settings as cfg
    from mlci.core.config import as_dict

    loaded = cfg.load(config_path, Path.cwd())
    source = loaded.source
    if action == "check":
        if as_json:
            log.out_json({"ok": True, "path": source, "overrides": list(loaded.overrides)}, indent=None)
        else:
            log.out(f"{source}: ok")
        return 0
    data = as_dict(loaded.config)
    if as_json:
        log.out_json({"path": source, "overrides": list(loaded.overrides), "config": data})
        return 0
    import yaml  # only `show` needs the dumper

    header = f"# effective config from {source}"
    if loaded.overrides:
        header += f"; overridden by {', '.join(loaded.overrides)}"
    log.out(header + "\n" + yaml.safe_dump(log.redact_data(data), sort_keys=False))  # masked before dumping
    return 0
