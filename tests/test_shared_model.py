"""One copy of the weights per node: a model pickled as `SharedModel` hands its tensors out of band, zero-copy."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from raytune_inc.pytorch.model_evaluation import ModelEvaluation
from raytune_inc.pytorch.qparams import Calibration
from raytune_inc.pytorch.shared import SharedModel, shared_bytes


class Tied(nn.Module):
    """An embedding and an output head sharing one weight, a BatchNorm's buffers, a bf16 layer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.norm = nn.BatchNorm1d(8)
        self.low = nn.Linear(8, 8).to(torch.bfloat16)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        h = self.norm(self.embed(ids).transpose(1, 2)).transpose(1, 2)
        return self.head(self.low(h.to(torch.bfloat16)).float())


def one(model: nn.Module) -> float:
    return 1.0


def _round_trip(model: nn.Module) -> tuple[nn.Module, list[pickle.PickleBuffer]]:
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(SharedModel(model), protocol=5, buffer_callback=buffers.append)
    return pickle.loads(data, buffers=buffers).model, buffers


def test_a_shared_model_pickles_its_weights_out_of_band_and_unpickles_onto_them():
    torch.manual_seed(0)
    model = Tied().eval()
    model.norm.running_mean.uniform_()
    ids = torch.randint(0, 20, (3, 5))
    copy, buffers = _round_trip(model)
    # One buffer per distinct tensor (the tied weight once), views of the model's own memory: nothing copied.
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    assert len(buffers) == len(tensors)
    assert sorted(memoryview(b).nbytes for b in buffers) == sorted(t.numel() * t.element_size() for t in tensors.values())
    assert {torch.frombuffer(b, dtype=torch.uint8).data_ptr() for b in buffers} == {t.data_ptr() for t in tensors.values()}
    assert sum(memoryview(b).nbytes for b in buffers) == shared_bytes(model)
    # The unpickled model's tensors are those buffers, with their dtypes, shapes and kinds; the tie holds.
    assert copy.head.weight is copy.embed.weight and isinstance(copy.head.weight, nn.Parameter)
    assert copy.embed.weight.data_ptr() == model.embed.weight.data_ptr()
    assert copy.low.weight.dtype == torch.bfloat16 and "running_mean" in dict(copy.norm.named_buffers())
    assert not copy.training and copy.norm.num_batches_tracked.dtype == torch.int64
    torch.testing.assert_close(copy(ids), model(ids), rtol=0, atol=0)
    # The caller's model is untouched: its tensors are not meta, the same objects as before.
    assert all(t.device.type == "cpu" for t in model.parameters())


def test_an_evaluation_pickles_the_model_as_a_shared_model():
    model = Tied().eval()
    evaluation = ModelEvaluation(model, one, Calibration(), lowered_cache=0.5)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(evaluation, protocol=5, buffer_callback=buffers.append)
    assert len(data) < shared_bytes(model) + 50_000  # the weights are not in the pickle stream
    again = pickle.loads(data, buffers=buffers)
    assert again.model.embed.weight.data_ptr() == model.embed.weight.data_ptr()
    assert again.cache.budget == int(0.5 * shared_bytes(model)) and len(again.cache) == 0


@pytest.mark.usefixtures("ray_local")
def test_evaluators_on_a_node_read_one_copy_from_ray_s_object_store():
    import ray

    model = Tied().eval()
    ref = ray.put(SharedModel(model))

    @ray.remote(num_cpus=0)
    def read(shared: SharedModel) -> tuple[list[str], list[float]]:
        """The memory mapping each of the model's tensors lies in, and the tensors' sums."""
        maps = []
        for line in open("/proc/self/maps"):
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            maps.append((low, high, fields[5] if len(fields) > 5 else ""))
        tensors = list(shared.model.state_dict().values())
        where = [next((path for low, high, path in maps if low <= t.data_ptr() < high), "?") for t in tensors]
        return where, [float(t.float().sum()) for t in tensors]

    where, sums = ray.get(read.remote(ref))
    # Every tensor is a view of the object store's shared memory (a file mapped by every process of the node), not a
    # private copy on the task's heap; its values are the model's.
    assert all(path.startswith("/dev/shm") for path in where), where
    assert sums == [float(t.float().sum()) for t in model.state_dict().values()]
