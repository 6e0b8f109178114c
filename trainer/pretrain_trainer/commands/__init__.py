"""The `pretrainjob` commands, each registered beside its handler.

Each module here holds a few related commands: for every one a handler ``cmd_X(args) -> int`` (the exit code)
and, right beside it, ``add_X(tree)``, which declares the command's path, help and flags on a `CommandTree`.
`pretrain_trainer.cli` only assembles them: adding a command is one more ``add_X`` in its ``COMMANDS``.
"""
