"""The run folder's one owner: layout and records, atomic writes, checksums, the lock, resume checks, outputs apart from inputs."""
