"""The `phq` command line: one table from command name to the function that runs it.

Each part owns its commands' code (phq/, stream/, scoring/, training/, care/; `phq demo`, which
drives them all, is cli/demo.py); this module only dispatches, so importing it pulls in no heavy
dependency.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module:function taking argv, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "dev": ("phq.devservices:main", "start, stop, show or print the env of local Kafka and PostgreSQL"),
    "migrate": ("phq.commands:migrate_main", "apply database migrations"),
    "produce": ("phq.commands:produce_main", "send chat events from a JSON-lines file to chat.events"),
    "schema": ("phq.commands:schema_main", "write the chat event's JSON Schema (docs/event.schema.json)"),
    "topics": ("phq.commands:topics_main", "create the contract's topics (with PHQ_TOPIC_PREFIX)"),
    "stream": ("stream.app:main", "the stream processor (ingest, transcripts, triggers)"),
    "score-worker": ("scoring.worker:main", "the scoring worker (batches, model, Postgres, output topics)"),
    "score": ("scoring.offline:main", "offline scoring of a chat-event file (backfills)"),
    "notify": ("care.notify:main", "alert delivery to the teams' webhooks"),
    "api": ("care.api:main", "the care-team API and dashboard"),
    "team": ("care.teams:main", "care teams, tokens, assignments and webhooks"),
    "erase": ("care.erase:main", "remove everything held about a user"),
    "synth": ("training.synth:main", "write synthetic chat events and PHQ-9 labels"),
    "train": ("training.train:main", "fine-tune a regression model"),
    "pseudolabel": ("training.pseudolabel:main", "teacher and student pseudolabels"),
    "eval": ("training.evaluate:main", "metrics, plots and a report from predictions"),
    "demo": ("cli.demo:main", "the whole pipeline on local services and synthetic data, then its dashboard"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: phq COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"phq: unknown command {name!r}; run `phq --help` for the list", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    module, func = target.split(":")
    result = getattr(importlib.import_module(module), func)(rest)
    return int(result or 0)
