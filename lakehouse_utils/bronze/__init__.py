"""Bronze: landing data typed, deduplicated and kept whole.

`batch` ingests the seven CSV masters (snapshot per run, `batch_parse` casts and
classifies fields); `stream` runs the Structured Streaming query over the JSONL event
feed (`events_parsing` classifies raw lines, `stream_batch` dedupes one micro-batch,
`stream_writer` commits it exactly once, `stream_files` and `stream_compaction` keep
the files).
"""
