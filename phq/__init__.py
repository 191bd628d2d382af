"""phq-monitor's shared core: settings, the contract's models, tables, the window rule and the CLI."""

__version__ = "0.1.0"
