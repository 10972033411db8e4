"""The running desk: the daemon's loop, the IMAP source, the pipeline that stores and
applies a batch, the ingest command and its hand-off socket, and what status reads."""
