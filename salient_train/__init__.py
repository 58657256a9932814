"""salient-train's command line, which starts without importing torch or timm.

``import salient_timm`` registers models in timm's registry, so it imports timm and torch (seconds); the
trainer's options are known without either: ``options.py`` holds them as data, generated from
``salient_timm.train.options.command_options()`` (``python -m salient_train.generate``; a test keeps the two equal).
The command parses and checks the options, answers ``--help`` and ``--version`` at once, and imports the trainer
only to run.
"""
