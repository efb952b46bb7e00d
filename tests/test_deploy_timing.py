"""The interleaved timing of ``ghostkit benchmark`` and ``export --int8``: a block starts only once the previous
runtime's threads have stopped busy-waiting (``wait_quiet``)."""

from __future__ import annotations

import threading
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ghostkit.deploy.benchmark import wait_quiet
from ghostkit.deploy.runtime import make_session


def _cpu_ms_while_idle(seconds: float) -> float:
    """Process CPU time (all threads) used while the calling thread sleeps for ``seconds``."""
    cpu = time.process_time()
    time.sleep(seconds)
    return (time.process_time() - cpu) * 1e3


def test_wait_quiet_waits_for_a_busy_thread():
    stop = time.perf_counter() + 0.15

    def spin() -> None:  # a worker thread busy-waiting, as a runtime's do after a run
        while time.perf_counter() < stop:
            pass

    worker = threading.Thread(target=spin)
    start = time.perf_counter()
    worker.start()
    wait_quiet(max_s=2.0)
    waited = time.perf_counter() - start
    worker.join()
    assert waited >= 0.12, f"returned after {waited * 1e3:.0f} ms while a thread was still busy"
    assert waited < 1.5


def test_wait_quiet_returns_at_once_when_nothing_runs():
    start = time.perf_counter()
    wait_quiet()
    assert time.perf_counter() - start < 0.2


def test_onnxruntime_workers_are_quiet_after_wait_quiet(tmp_path):
    # a 3x3 conv big enough for ONNX Runtime to split over its two threads; its worker spins after each run
    w = np.random.default_rng(0).standard_normal((32, 32, 3, 3)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["images", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 32, 96, 96])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 96, 96])],
                              [numpy_helper.from_array(w, "w")])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = make_session(path, threads=2)
    x = np.ones((1, 32, 96, 96), np.float32)
    for _ in range(5):
        session.run(None, {"images": x})
    wait_quiet()
    used = _cpu_ms_while_idle(0.05)
    assert used < 10, f"{used:.1f} ms of CPU used in 50 ms after wait_quiet returned"
