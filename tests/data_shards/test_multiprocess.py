"""Real multi-process loading: 2 ranks (torch.distributed, gloo) x 2 DataLoader workers each."""

import json
import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from synthetic_sets import ShardSets
from torchmetrics.classification import MulticlassConfusionMatrix, MultilabelConfusionMatrix

from data_shards.loaders import LoaderConfig, eval_loader, train_loader
from data_shards.manifest import read_manifest


@pytest.fixture(scope="module")
def demo_shards(synthetic_shards: ShardSets) -> dict[str, str]:
    """The 64 px / 8-frame synthetic sets (images 180/30/90, clips 24/4/12)."""
    return synthetic_shards("demo")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _uneven_sets(manifests: dict[str, str]) -> list[str]:
    """Shards of 128 + 82 (train), 45 (val) and 45 (test) samples: dealt whole, rank 0 gets 210 and rank 1 90."""
    return [manifests["images-train"], manifests["images-val"], manifests["images-test"]]


def _metrics(config: LoaderConfig) -> dict:
    """AU and expression confusions of a fixed rule (brightness as the probability of every AU and as the class)
    over the valid rows, synchronised over the ranks by torchmetrics; the loader's batch count and samples per batch."""
    loader = eval_loader(config)
    aus, confusion = MultilabelConfusionMatrix(len(loader.au_ids)), MulticlassConfusionMatrix(len(loader.class_names), ignore_index=-1)
    keys, sizes = [], []
    for batch in loader:
        valid = batch["valid"]
        brightness = batch["pixels"].float().mean(dim=(1, 2, 3)) / 255.0
        aus.update(brightness[valid].unsqueeze(1).expand(-1, len(loader.au_ids)), batch["aus"][valid].long())
        confusion.update((brightness[valid] * len(loader.class_names)).long().clamp(max=len(loader.class_names) - 1), batch["expression"][valid])
        keys += [key for key, ok in zip(batch["key"], valid.tolist()) if ok]
        sizes.append([len(batch["key"]), int(valid.sum())])
    return {"len": len(loader), "sizes": sizes, "keys": keys, "aus": aus.compute().tolist(), "confusion": confusion.compute().tolist()}


def _rank_main(rank: int, world: int, port: int, manifests: dict[str, str], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result: dict = {}
        for name, modality in (("images-val", "image"), ("clips-val", "clip")):
            config = LoaderConfig(shards=[manifests[name]], modality=modality, batch_size=4, num_frames=4, num_workers=2)
            loader = eval_loader(config)
            batches = list(loader)
            valid = [k for b in batches for k, ok in zip(b["key"], b["valid"].tolist()) if ok]
            result[name] = {"keys": valid, "len": len(loader), "batches": len(batches)}
        subjects = read_manifest(manifests["images-train"]).subjects[::3]
        for name, extra in (("uneven", {}), ("uneven-fold", {"subjects": subjects})):
            result[name] = _metrics(LoaderConfig(shards=_uneven_sets(manifests), batch_size=16, num_workers=2, **extra))
        train = train_loader(LoaderConfig(shards=[manifests["images-train"]], batch_size=8, num_workers=2, shuffle_buffer=20, seed=5))
        train.set_epoch(2)
        sizes = [len(b["key"]) for b in train]
        result["train"] = {"len": len(train), "sizes": sizes, "keys_first": [k for b in train for k in b["key"]][:8]}
        gathered: list = [None] * world
        dist.all_gather_object(gathered, result)
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_ranks_two_workers(demo_shards: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "gathered.json"
    mp.spawn(_rank_main, args=(2, _free_port(), demo_shards, str(out)), nprocs=2, join=True)
    ranks = json.loads(out.read_text())
    for name in ("images-val", "clips-val"):
        keys = [k for r in ranks for k in r[name]["keys"]]
        assert len(keys) == len(set(keys)) == read_manifest(demo_shards[name]).num_samples, name  # none lost, none twice
        assert all(r[name]["len"] == r[name]["batches"] for r in ranks)
    subjects = read_manifest(demo_shards["images-train"]).subjects[::3]
    for name, extra in (("uneven", {}), ("uneven-fold", {"subjects": subjects})):
        one_process = _metrics(LoaderConfig(shards=_uneven_sets(demo_shards), batch_size=16, num_workers=2, rank=0, world_size=1, **extra))
        batches = [len(r[name]["sizes"]) for r in ranks]
        assert batches[0] == batches[1] == ranks[0][name]["len"] == ranks[1][name]["len"], name  # equal batch counts: no DDP hang
        assert any(valid == 0 for r in ranks for _, valid in r[name]["sizes"]), f"{name}: the test must exercise padding"
        assert all(size == 1 for r in ranks for size, valid in r[name]["sizes"] if valid == 0)  # padding is one row
        keys = [k for r in ranks for k in r[name]["keys"]]
        assert len(keys) == len(set(keys)) == len(one_process["keys"]) and set(keys) == set(one_process["keys"]), name  # each once
        for rank in ranks:  # synchronised metrics over the valid rows are those of one process reading everything
            assert rank[name]["aus"] == one_process["aus"] and rank[name]["confusion"] == one_process["confusion"], name
    lengths = {r["train"]["len"] for r in ranks}
    assert len(lengths) == 1  # the same number of training batches on every rank: no DDP hang
    assert all(r["train"]["sizes"] == [8] * r["train"]["len"] for r in ranks)
    assert ranks[0]["train"]["keys_first"] != ranks[1]["train"]["keys_first"]  # ranks read different samples
