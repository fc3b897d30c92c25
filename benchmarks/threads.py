"""Thread pools of the benchmark processes: the environment that caps TF's, oneDNN/OpenMP's
and torch's before a child starts, and the pinning each framework needs once imported.

Nothing here imports TensorFlow or torch at module level: the parent process stays small, and
each child pays only for the framework it measures.
"""


def thread_env(threads, omp_wait_policy=None):
    """Environment variables that cap the thread pools of TF, oneDNN/OpenMP and torch.

    Set in each child's environment before it imports anything, because TF and torch read
    some of them only once, at start-up.

    omp_wait_policy: None leaves OpenMP's (torch's) default; "PASSIVE" makes idle OpenMP
      threads sleep instead of spinning. On a CPU shared with other work, spinning threads
      fight the other processes for the cores: on a 2-core machine under load, torchvision's
      64 px smoke inference took 0.5-2.4 s with the default and 0.09 s with PASSIVE.
    """
    n = str(int(threads))
    env = {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n, "OMP_NUM_THREADS": n,
           "MKL_NUM_THREADS": n, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    return env


def pin_tensorflow_threads(threads):
    """Pins TF's intra- and inter-op pools to `threads` (must run before any TF op)."""
    import tensorflow as tf  # noqa: PLC0415 (TF only in the children that time it)
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))


def pin_torch_threads(threads):
    """Pins torch's intra- and inter-op pools to `threads` (before any torch op)."""
    import torch  # noqa: PLC0415
    torch.set_num_threads(int(threads))
    try:
        torch.set_num_interop_threads(int(threads))
    except RuntimeError:
        pass  # already fixed by an earlier parallel op in this process: the intra cap stands


def tensorflow_threads() -> dict:
    """The thread settings a benchmark records: usable CPU cores and TensorFlow's intra-
    and inter-op pool sizes (0: TensorFlow's default, one thread per core). tf.data's
    pipelines use TensorFlow's default shared pool with AUTOTUNE parallelism."""
    import tensorflow as tf  # noqa: PLC0415 (the caller has imported it already)

    from benchmarks import machine  # noqa: PLC0415
    return {"usable_cpus": machine.cpu_description()["usable_cpus"],
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}
