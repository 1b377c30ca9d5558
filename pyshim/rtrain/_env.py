"""The environment variables rtrain's agent sets for a worker.

pyshim/PROTOCOL.md says what each holds; pyshim/env.go has the same names
for the Go side, and a test there keeps them agreeing. Each is NAME =
"RTRAIN_NAME", and the module imports nothing, so that sitecustomize can
load it without importing the package.
"""

AGENT_ADDR = "RTRAIN_AGENT_ADDR"
EXIT_FILE = "RTRAIN_EXIT_FILE"
RUN_NAME = "RTRAIN_RUN_NAME"
JOB_ID = "RTRAIN_JOB_ID"
CHECKPOINT_DIR = "RTRAIN_CHECKPOINT_DIR"
CHECKPOINT_URI = "RTRAIN_CHECKPOINT_URI"
CHECKPOINT_INDEX = "RTRAIN_CHECKPOINT_INDEX"
CUDA_DEVICE = "RTRAIN_CUDA_DEVICE"
RETURN_FILE = "RTRAIN_RETURN_FILE"
BINARY = "RTRAIN_BINARY"
