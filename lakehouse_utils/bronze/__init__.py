"""Bronze: landing data typed, deduplicated and kept whole.

`batch` ingests the seven CSV masters (snapshot per run, `batch_parse` casts and
classifies fields); `stream` runs the Structured Streaming query over the JSONL event
feed (`events_parsing` classifies raw lines, `stream_dedupe` marks each id against the state store,
`stream_batch` classifies one micro-batch, `stream_writer` commits it exactly once,
`stream_files` and `stream_compaction` keep the files, `stream_guard` refuses a moved landing
or a lost checkpoint, `stream_folder` names files the stream did not read in full).
"""
