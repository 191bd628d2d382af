"""The contract's topic names (CONTRACT sections 1-3 and 5); a prefix setting keeps tests apart."""

CHAT_EVENTS = "chat.events"
CHAT_EVENTS_DLQ = "chat.events.dlq"
SCORING_REQUESTS = "phq9.scoring.requests"
SCORES = "phq9.scores"
ALERTS = "phq9.alerts"
ERASURES = "phq.erasures"

# Topics whose partition count is PHQ_PARTITIONS (the rest carry less traffic but keep the same
# count so that one user's key lands on the same partition number everywhere).
ALL = (CHAT_EVENTS, CHAT_EVENTS_DLQ, SCORING_REQUESTS, SCORES, ALERTS)
COMPACTED = (ERASURES,)
