package pyshim

// The environment variables the agent sets for every worker, besides the
// torchrun contract (RANK, WORLD_SIZE, MASTER_ADDR, ...) and the GPU
// variables CUDA understands. PROTOCOL.md lists each with its meaning;
// rtrain/_env.py holds the same names for the Python side, and a test
// keeps the three agreeing: add a variable to all of them.
//
// rtrain's own settings (RTRAIN_TOKEN, RTRAIN_ADDRESS, RTRAIN_PYTHON, ...)
// are not among them: they configure the rtrain processes, and reach a
// worker, if at all, only as part of the environment it inherits.
const (
	// AddrEnv carries the agent's socket path to the workers.
	AddrEnv = "RTRAIN_AGENT_ADDR"
	// ExitFileEnv names the file where rtrain's sitecustomize notes how the
	// worker's program ended (ReadExitNote).
	ExitFileEnv = "RTRAIN_EXIT_FILE"
	// RunNameEnv is the run's name (get_context().get_trial_name()).
	RunNameEnv = "RTRAIN_RUN_NAME"
	// JobIDEnv is the job's id, as `rtrain logs` and `rtrain stop` take it.
	JobIDEnv = "RTRAIN_JOB_ID"
	// CheckpointDirEnv is the local directory holding the checkpoint to
	// resume from (rtrain.get_checkpoint()); unset on a fresh run.
	CheckpointDirEnv = "RTRAIN_CHECKPOINT_DIR"
	// CheckpointURIEnv is where that checkpoint is stored.
	CheckpointURIEnv = "RTRAIN_CHECKPOINT_URI"
	// CheckpointIndexEnv is that checkpoint's index, the N of checkpoint_N.
	CheckpointIndexEnv = "RTRAIN_CHECKPOINT_INDEX"
	// CUDADeviceEnv is the worker's GPU as an index into
	// CUDA_VISIBLE_DEVICES (rtrain.torch.get_device()); unset on CPU
	// workers.
	CUDADeviceEnv = "RTRAIN_CUDA_DEVICE"
	// ReturnFileEnv names the file where a worker running a driver's train
	// function (FunctionModule) leaves what rank 0's function returned
	// (ReadReturn).
	ReturnFileEnv = "RTRAIN_RETURN_FILE"
	// BinaryEnv names the rtrain binary that runs the worker's node, for
	// a function that itself runs rtrain (a sweep trial's TorchTrainer):
	// the package on the worker's PYTHONPATH carries no binary.
	BinaryEnv = "RTRAIN_BINARY"
)
