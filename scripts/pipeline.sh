#!/usr/bin/env bash
# README command 1: create/reuse .venv, install, then run the whole pipeline on its built-in
# default, on the CPU with no download:
#   synthetic faces (an unlabelled pool + labelled train/val/test subjects) -> WebDataset shards
#   -> verify -> MAE pretraining on the pool | beside it, the same fine-tuning from a random
#   initialisation and the baselines -> fine-tuning of the MAE encoder (AU + expression, IAT +
#   MoAE) -> linear probe of the frozen MAE encoder -> release to MLflow -> load by URI in a fresh
#   process -> one table of test metrics on the held-out subjects.
# Two processes run side by side (one intra-op thread each): about 9 minutes on 2 idle cores,
# 11 with the first install (README quotes the measured figures).
# Everything lands under runs/demo/ (a rerun starts it afresh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/setup_env.sh
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
demo=runs/demo
rm -rf "$demo"
# One MLflow store for every stage (artifacts in $demo/mlartifacts beside it): the release lands in
# the fine-tuning run, which is tagged with the pretraining run it started from.
export MLFLOW_TRACKING_URI="sqlite:///$root/$demo/mlflow.db"
mkdir -p $demo/logs $demo/table
echo "[pipeline] results will be under $root/$demo"
started=$SECONDS
stage() { echo "[pipeline] $(( SECONDS - started ))s: $*"; }

stage "1/6 synthetic faces -> WebDataset shards -> verify"
python -m data_shards demo --out $demo --images 3500 --clips 0 --pretrain_images 20000 --img_size 64 --seed 0 --workers 2
python -m data_shards verify $demo/shards --workers 2

stage "2/6 MAE pretraining on the unlabelled pool (configs/pretrain/tiny.yaml); beside it, fine-tuning from a random" \
  "initialisation and the baselines (log: $demo/logs/scratch.log)"
(
  python -m finetune fit --config configs/finetune/tiny.yaml --model.init "" --trainer.output_dir $demo/finetune-scratch \
    --tracking.run_name random-init
  python -m face_core.evaluation.demo_table baselines --shards $demo/shards --recipe configs/pretrain/tiny.yaml --out $demo/table/baselines.json
) > $demo/logs/scratch.log 2>&1 &
beside=$!
# the online representation probe: a linear probe of the frozen features every 400 steps (MLflow: probe/*)
python -m pretrain fit --config configs/pretrain/tiny.yaml --probe.every_n_steps 400 \
  --probe.train_shards "[$demo/shards/images-train/manifest.json]" --probe.val_shards "[$demo/shards/images-val/manifest.json]"

stage "3/6 fine-tuning of the MAE encoder for AUs and expressions with IAT and MoAE (configs/finetune/tiny.yaml)"
python -m finetune fit --config configs/finetune/tiny.yaml --tracking.run_name mae-init

stage "4/6 linear probe on the frozen MAE encoder"
python -m face_core.evaluation.demo_table probe --shards $demo/shards --encoder $demo/pretrain/checkpoints/last.ckpt --out $demo/table/mae_probe.json
wait $beside || { echo "[pipeline] the random-init fine-tuning or the baselines failed: see $demo/logs/scratch.log"; exit 1; }

stage "5/6 release the fine-tuned model to the MLflow registry as face-au-tiny@champion"
python -m finetune release $demo/finetune/checkpoints/best.ckpt --out $demo/release/face-au-tiny \
  --name face-au-tiny --alias champion

stage "6/6 load models:/face-au-tiny@champion in a fresh process and score the held-out subjects"
python -m finetune score models:/face-au-tiny@champion \
  --image_test "[$demo/shards/images-test/manifest.json]" | tee $demo/released_model_metrics.json

stage "done. Held-out test subjects (every row measured in this run, on the same split):"
python -m face_core.evaluation.demo_table table --rows $demo/table/baselines.json $demo/table/mae_probe.json \
  --finetuned "fine-tuned from a random initialisation=$demo/finetune-scratch" \
  --finetuned "fine-tuned from our MAE encoder=$demo/finetune" --released "$demo/finetune=$demo/released_model_metrics.json" \
  --out $demo/table/table.json | tee $demo/table/table.md

cat <<TXT
[pipeline] $(( SECONDS - started ))s in all. Results under $root/$demo:
  shards/                      WebDataset shards + manifests (images-pretrain: unlabelled pool; images-train/val/test)
  pretrain/                    MAE run: checkpoints/last.ckpt, reconstructions/*.png, metrics.jsonl
  finetune/                    fine-tuning of the MAE encoder: checkpoints/best.ckpt, pictures/*.png, result.json
  finetune-scratch/            the same fine-tuning from a random initialisation
  table/                       the table above (table.md, table.json) and its baseline and probe rows
  release/face-au-tiny/        released weights (safetensors) + config.json
  released_model_metrics.json  metrics of the model loaded back from MLflow by URI
  mlflow.db, mlartifacts/      the one MLflow store of every stage (runs, lineage tags, the registered model)
  MLflow UI: mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI
TXT
