#!/usr/bin/env bash
# README command 1: create/reuse .venv, install, then run the whole pipeline on its built-in
# default, on the CPU with no download:
#   synthetic faces -> WebDataset shards -> verify -> MAE pretraining (tiny ViT, images + clips)
#   -> fine-tuning (AU + expression, IAT + MoAE) -> release to MLflow -> load by URI in a fresh
#   process -> test metrics.
# Everything lands under runs/demo/ (a rerun starts it afresh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
source scripts/setup_env.sh
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
demo=runs/demo
rm -rf "$demo"
# One MLflow store for every stage (artifacts in $demo/mlartifacts beside it): the release lands in
# the fine-tuning run, which is tagged with the pretraining run it started from.
export MLFLOW_TRACKING_URI="sqlite:///$root/$demo/mlflow.db"
echo "[pipeline] results will be under $root/$demo"

echo "[pipeline] 1/5 synthetic faces -> WebDataset shards -> verify"
python -m data_shards demo --out $demo --images 3000 --clips 400 --img_size 64 --frames 8 --seed 0 --workers 2
python -m data_shards verify $demo/shards --workers 2

echo "[pipeline] 2/5 MAE pretraining of the tiny ViT on images and clips (configs/pretrain/tiny.yaml)"
python -m pretrain fit --config configs/pretrain/tiny.yaml

echo "[pipeline] 3/5 fine-tuning for AUs and expressions with IAT and MoAE (configs/finetune/tiny.yaml)"
python -m finetune fit --config configs/finetune/tiny.yaml

echo "[pipeline] 4/5 release the fine-tuned model to the MLflow registry as face-au-tiny@champion"
python -m finetune release $demo/finetune/checkpoints/best.ckpt --out $demo/release/face-au-tiny \
  --name face-au-tiny --alias champion

echo "[pipeline] 5/5 load models:/face-au-tiny@champion in a fresh process and score the held-out subjects"
python -m finetune score models:/face-au-tiny@champion \
  --image_test "[$demo/shards/images-test/manifest.json]" --clip_test "[$demo/shards/clips-test/manifest.json]" \
  | tee $demo/released_model_metrics.json

cat <<TXT
[pipeline] done. Results under $root/$demo:
  shards/                      WebDataset shards + manifests (images/clips x train/val/test)
  pretrain/                    MAE run: checkpoints/last.ckpt, reconstructions/*.png, metrics.jsonl
  finetune/                    fine-tuning run: checkpoints/best.ckpt, pictures/*.png, result.json
  release/face-au-tiny/        released weights (safetensors) + config.json
  released_model_metrics.json  metrics of the model loaded back from MLflow by URI
  mlflow.db, mlartifacts/      the one MLflow store of every stage (runs, lineage tags, the registered model)
  MLflow UI: mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI
TXT
