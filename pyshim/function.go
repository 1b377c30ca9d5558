package pyshim

// FunctionModule is the module of the rtrain package that runs a train
// function a Python driver serialized (trainer.Config.Function): each
// worker runs `python -m rtrain._worker FILE`, which loads the function and
// its config from FILE and calls it.
const FunctionModule = "rtrain._worker"
