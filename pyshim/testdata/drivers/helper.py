"""A module of cluster.py's directory. cloudpickle sends its functions by
name, so a worker imports it, from the working directory shipped to its
node."""


def scale(x):
    return 10 * x
