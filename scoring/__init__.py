"""The PHQ-9 scoring model and its inference: model directories, rendering, batching, backends.

`model`, `render`, `batcher` and `backends` import with only torch and transformers installed.
"""
