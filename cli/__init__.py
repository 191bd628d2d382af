"""The `phq` command line and `phq demo`: the layer above every part. The dispatcher (cli.main) names
each command's module as a string, so it imports nothing heavy; the demo drives every part."""
