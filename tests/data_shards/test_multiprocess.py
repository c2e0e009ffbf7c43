"""Real multi-process loading: 2 ranks (torch.distributed, gloo) x 2 DataLoader workers each."""

import json
import socket
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from data_shards.loaders import LoaderConfig, eval_loader, train_loader
from data_shards.manifest import read_manifest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, manifests: dict[str, str], out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result: dict = {}
        for name, modality in (("images-val", "image"), ("clips-val", "clip")):
            config = LoaderConfig(shards=[manifests[name]], modality=modality, batch_size=4, num_frames=4, num_workers=2)
            loader = eval_loader(config)
            batches = list(loader)
            result[name] = {"keys": [k for b in batches for k in b["key"]], "len": len(loader), "batches": len(batches)}
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
    lengths = {r["train"]["len"] for r in ranks}
    assert len(lengths) == 1  # the same number of training batches on every rank: no DDP hang
    assert all(r["train"]["sizes"] == [8] * r["train"]["len"] for r in ranks)
    assert ranks[0]["train"]["keys_first"] != ranks[1]["train"]["keys_first"]  # ranks read different samples
