"""The stream processor: chat events to transcripts to scoring requests (`phq stream`)."""
