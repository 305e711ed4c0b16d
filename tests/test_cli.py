"""The command line's assembly: every command module is imported or the CLI fails loudly."""

import pytest

from decafbench import cli


def test_every_command_group_is_registered():
    app = cli.build_app()
    groups = {g.name for g in app.registered_groups}
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"benchmarks", "variants", "adapters"} <= groups
    assert {"run", "evaluate"} <= commands


def test_a_command_module_that_cannot_be_imported_is_an_error_not_a_missing_command(monkeypatch):
    # before: a module that failed to import was skipped, and its commands vanished silently
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "decafbench.commands.no_such_module"))
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        cli.build_app()
