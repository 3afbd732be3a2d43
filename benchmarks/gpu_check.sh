#!/usr/bin/env bash
# The GPU proof of issue #17 in one script: environment, the flagship command, the throughput paths,
# the fast recipe to the end, one epoch of every config, the analysis tools on the GPU, a profile, and
# a 2-process run where there are two GPUs; named in --only, the gpu scale's rows (reproduce queue). Each
# step's output and wall time go to a log; a failing step does not stop the others; the summary judges
# issues #6's and #28's targets. docs/gpu.md says how to run it.
#
#   bash benchmarks/gpu_check.sh --prepare        # HERE, once: what must travel, into .offline/gpu/
#   bash benchmarks/gpu_check.sh OUT_DIR          # on the GPU machine (about 7 minutes on one H100)
#   bash benchmarks/gpu_check.sh --only throughput,fast,rows --budget 540 OUT_DIR   # issue #28's call
#   bash benchmarks/gpu_check.sh --tiny OUT_DIR   # a few batches of a subset: the rehearsal
#
# Without a CUDA GPU it runs tiny sizes whatever the flags. Options: --budget SECONDS (the steps share
# it, each cut at its own limit or where the budget ends; default 500, and 2400 with 4x the limits on a
# CPU), --only STEP[,STEP] (rerun only those, after install, env and data). OUT_DIR receives 5 files
# (the device tool brings back 8): summary.md, summary.json, env.json, gpu_check.log and logs.tar.gz
# (every step's log and small outputs); with rows, runs.tar.gz, and inductor.tar.gz (torch.compile's
# cache, which the next call may carry in .offline/gpu/ to compile faster).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARRY="$ROOT/.offline/gpu"
PYTHON="${PYTHON:-python3}"
# --prepare reads the versions to carry from the Python that runs litvision here (the README's .venv).
[[ "$PYTHON" == python3 && -x "$ROOT/.venv/bin/python" && "${1:-}" == --prepare ]] &&
  PYTHON="$ROOT/.venv/bin/python"
CIFAR_TAR="cifar10-jpeg.tar.xz"
CIFAR_SHA256="209d9cbdfbdc983a0b77a47178b46586340bed28fa1106d91d10636ee116b4ae"
# Carried as wheels: what litvision needs that the device image lacks (docs/gpu.md).
# albumentations (imported by litvision.data.policy) and its needs that the image lacks; the image has
# numpy, scipy, PyYAML and opencv-python-headless.
WHEELS="jsonargparse docstring_parser typeshed_client albumentations albucore stringzilla simsimd pydantic
  pydantic_core annotated_types typing_inspection typing_extensions"

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

prepare() {
  # Runs where ../shared/data and a package registry are reachable; writes .offline/gpu/ (ignored).
  local shared="$ROOT/../shared/data/$CIFAR_TAR"
  mkdir -p "$CARRY/whl" || return 1
  if [[ ! -f "$CARRY/$CIFAR_TAR" ]]; then
    [[ -f "$shared" ]] || { echo "prepare: $shared not found (the CIFAR-10 JPEG copy)"; return 1; }
    cp "$shared" "$CARRY/$CIFAR_TAR" || return 1
  fi
  echo "$CIFAR_SHA256  $CARRY/$CIFAR_TAR" | sha256sum -c - || return 1
  rm -f "$CARRY"/whl/*.whl
  local name version
  for name in $WHEELS; do
    # The version tested here, as a wheel for the device's CPython 3.12 on x86-64 (most are pure Python).
    version="$("$PYTHON" -c "from importlib.metadata import version; print(version('$name'))")" || return 1
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
      -d "$CARRY/whl" "$name==$version" || return 1
  done
  ls -l "$CARRY" "$CARRY/whl"
  local carried tree
  carried=$(du -sb "$CARRY" | cut -f1)
  tree=$(cd "$ROOT" && { git ls-files -z; git ls-files -z --others --exclude-standard; } | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  echo "prepare: .offline/gpu holds $((carried / 1024)) KiB; the tree that travels $((tree / 1024)) KiB (limit 65536 KiB together)"
  ((carried + tree < 64 * 1024 * 1024)) || { echo "prepare: over the device tool's 64 MiB"; return 1; }
  echo 'prepare: done. Run on the device: cd to the repo root, carry [".offline/gpu"], and'
  echo '  bash benchmarks/gpu_check.sh "$OUT"'
}

TINY=0 PREPARE=0 BUDGET="" ONLY="" OUTDIR=""
while (($#)); do
  case "$1" in
    --prepare) PREPARE=1 ;;
    --tiny) TINY=1 ;;
    --budget) BUDGET="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "gpu_check: unknown option '$1'"; usage 2 ;;
    *) OUTDIR="$1" ;;
  esac
  shift
done
cd "$ROOT" || exit 1
if ((PREPARE)); then prepare; exit $?; fi
[[ -n "$OUTDIR" ]] || { echo "gpu_check: give an output folder"; usage 2; }
mkdir -p "$OUTDIR" && OUTDIR="$(cd "$OUTDIR" && pwd)" || exit 1
WORK="${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/litvision-gpu-check}"
# A rerun of some steps (--only) adds to the previous run's work folder; a whole run starts afresh.
[[ -n "$ONLY" ]] || rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/runs" || exit 1
LOGS="$WORK/logs"
START=$SECONDS
SLOWER=1     # step limits are set for the GPU; a CPU rehearsal (chosen after install) gets 4 times as long
DEADLINE=$((START + ${BUDGET:-500}))
RESERVE=15   # kept for the summary and the archive
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"  # torch.compile's kernels (and Triton's), to come back
[[ -f "$CARRY/inductor.tar.gz" && ! -d "$WORK/inductor" ]] && tar -xzf "$CARRY/inductor.tar.gz" -C "$WORK"
exec > >(tee -a "$LOGS/gpu_check.log") 2>&1

say() { printf '[gpu_check %4ds] %s\n' $((SECONDS - START)) "$*"; }

# --only analysis also names analysis-tsne and the other sub-steps.
wanted() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* || ",$ONLY," == *",${1%%-*},"* ]]; }

# run_step NAME MAX_SECONDS COMMAND...: the command's output in logs/NAME.log, its record in steps.tsv.
run_step() {
  local name="$1" max="$2"; shift 2
  local left=$((DEADLINE - RESERVE - SECONDS)) limit
  max=$((max * SLOWER))
  limit=$((max < left ? max : left))
  if ! wanted "$name"; then return 0; fi
  if ((limit < 10)); then
    say "$name: skipped, no time left in the budget"
    printf '%s\tskipped (budget)\t0\t-\t%s\n' "$name" "$limit" >>"$WORK/steps.tsv"
    return 0
  fi
  say "$name: start (limit ${limit}s): $*"
  local t0=$EPOCHREALTIME rc
  {
    echo "# step $name, limit ${limit}s, started $(date -u +%FT%TZ)"
    echo "# command: $*"
  } >"$LOGS/$name.log"
  timeout -k 10 "$limit" "$@" >>"$LOGS/$name.log" 2>&1
  rc=$?
  local seconds status
  seconds=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) status=ok ;;
    124|137) status="timeout" ;;
    *) status="failed (exit $rc)" ;;
  esac
  echo "# $status after ${seconds}s" >>"$LOGS/$name.log"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$seconds" "$rc" "$limit" >>"$WORK/steps.tsv"
  say "$name: $status after ${seconds}s"
  [[ $status == ok ]] || tail -n 15 "$LOGS/$name.log" | sed "s/^/    $name| /"
  return 0
}

# --- install: the carried wheels and litvision itself (with its `lightning` command) into $WORK/site ---
install_litvision() {
  local site="$WORK/site"
  shopt -s nullglob
  local wheels=("$CARRY"/whl/*.whl)
  local pip=("$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade
    --target "$site")
  if ((${#wheels[@]})); then
    # The compiled wheels are for the device's Python 3.12; a rehearsal on another Python takes the
    # pure-Python ones and its own installed copies of the rest.
    "${pip[@]}" "${wheels[@]}" || {
      echo "the carried wheels do not all fit this Python: installing the pure-Python ones only"
      "${pip[@]}" "$CARRY"/whl/*-py3-none-any.whl || return 1
    }
  else
    echo "no wheels in $CARRY/whl: using the installed jsonargparse"
  fi
  # From a copy of the tree: building in place would leave build/ in the repository.
  rm -rf "$WORK/pkg" && mkdir -p "$WORK/pkg" && cp -r pyproject.toml README.md src "$WORK/pkg/" || return 1
  "${pip[@]}" --no-build-isolation "$WORK/pkg" || return 1
  PYTHONPATH="$site" "$PYTHON" -c "import jsonargparse, litvision; print('litvision', litvision.__file__)"
}

# --- data: the CIFAR-10 JPEG copy as .offline/cifar10-jpeg (what throughput.py --data-dir and the runs read) ---
prepare_data() {
  if [[ ! -d .offline/cifar10-jpeg/test ]]; then
    local tar="$CARRY/$CIFAR_TAR"
    [[ -f "$tar" ]] || tar="$ROOT/../shared/data/$CIFAR_TAR"
    [[ -f "$tar" ]] || { echo "no $CIFAR_TAR in $CARRY or ../shared/data: run --prepare first"; return 1; }
    mkdir -p .offline || return 1
    if command -v xz >/dev/null; then
      tar -xJf "$tar" -C .offline || return 1
    else  # an image without xz: Python's tarfile reads it too
      "$PYTHON" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall('.offline', filter='data')" "$tar" ||
        return 1
    fi
  fi
  find .offline/cifar10-jpeg/train -name '*.jpg' | wc -l | sed 's/$/ training images/'
  if ((TINY)); then  # a subset: 40 training and 10 test images per class
    local split class n
    for split in train test; do
      n=$([[ $split == train ]] && echo 40 || echo 10)
      for class in .offline/cifar10-jpeg/$split/*/; do
        mkdir -p "$WORK/data/cifar10-tiny/$split/$(basename "$class")"
        find "$class" -name '*.jpg' | sort | head -n "$n" | xargs cp -t "$WORK/data/cifar10-tiny/$split/$(basename "$class")"
      done
    done
    find "$WORK/data/cifar10-tiny" -name '*.jpg' | wc -l | sed 's/$/ images in the tiny subset/'
  fi
}

# --- the steps ---
install_site() {
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}" PATH="$WORK/site/bin:$PATH"
  # This tree's litvision, not one installed elsewhere (a developer's editable install, say).
  local here="import litvision, sys; sys.exit(not litvision.__file__.startswith('$WORK/site/'))"
  if ! "$PYTHON" -c "$here" 2>/dev/null || [[ "$(command -v lightning)" != "$WORK/site/bin/lightning" ]]; then
    # Fallback: the source tree and a `lightning` that runs the same entry point as the installed one.
    say "install: falling back to src/ and a lightning shim"
    mkdir -p "$WORK/site/bin"
    printf '#!/bin/sh\nexec %s -m litvision "$@"\n' "$PYTHON" >"$WORK/site/bin/lightning"
    cp "$WORK/site/bin/lightning" "$WORK/site/bin/litvision"
    chmod +x "$WORK/site/bin/lightning" "$WORK/site/bin/litvision"
    export PYTHONPATH="$ROOT/src:$PYTHONPATH"
  fi
}

export -f install_litvision prepare_data
export ROOT CARRY PYTHON CIFAR_TAR WORK TINY

say "output: $OUTDIR; work: $WORK; budget $((DEADLINE - START))s; only: ${ONLY:-all}"
ONLY_SAVED="$ONLY" ONLY=""   # install, env and data run always
run_step install 120 bash -c install_litvision
install_site
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
if ((GPUS == 0)); then
  TINY=1 SLOWER=4
  [[ -n "$BUDGET" ]] || DEADLINE=$((START + 2400))
fi
export TINY
TINY_FLAG=()
((TINY)) && TINY_FLAG=(--tiny)
DEVICE=$([[ $GPUS -gt 0 ]] && echo cuda || echo cpu)
say "GPUs: $GPUS; sizes: $([[ $TINY == 1 ]] && echo tiny || echo full); budget $((DEADLINE - START))s"
run_step env 60 "$PYTHON" benchmarks/gpu_check.py env --json "$WORK/env.json"
run_step data 90 bash -c prepare_data
ONLY="$ONLY_SAVED"

CIFAR_MEAN="[0.4914,0.4822,0.4465]" CIFAR_STD="[0.2470,0.2435,0.2616]"
DATA_DIR=.offline/cifar10-jpeg
((TINY)) && DATA_DIR="$WORK/data/cifar10-tiny"
# The configs name CIFAR10DataModule, which reads torchvision's pickled batches; the JPEG copy is an
# image folder: the same data module options, another class.
CIFAR=(--data=litvision.data.ImageFolderDataModule "--data.data_dir=$DATA_DIR" "--data.mean=$CIFAR_MEAN"
  "--data.std=$CIFAR_STD" "--trainer.logger.save_dir=$WORK/runs" --trainer.enable_progress_bar=false)
# The flagship config (batch 128, where kernel launches bound an eager step): eager, (b) and (c), and its
# step replayed as CUDA graphs, (g) and (h); 150 batches an epoch, the first epoch untimed (it compiles);
# two rounds (one GPU machine ran (c) at twice another's speed: medians, not one round) and a profile of
# one more epoch of each: where a step's time goes.
THROUGHPUT=(--config configs/resnet18_cifar.yaml --device "$DEVICE" --epochs 2 --limit-batches 150
  --data-dir "$DATA_DIR" --paths bcgh --rounds 2 --profile "$WORK/profile/throughput")
FAST=() FLAGSHIP=() CONFIGS=(--synthetic 5000) ANALYSIS=() DDP=() PROFILE=(--trainer.limit_train_batches=60)
COMPILE=(--trainer.max_epochs=2)
if ((TINY)); then
  # A few batches of the subset, float32 (bf16 autocast on a CPU is slow), small batches.
  TINY_FIT=(--trainer.max_epochs=2 --data.batch_size=16 --data.val_size=50 --data.num_workers=2
    --trainer.limit_train_batches=2)
  THROUGHPUT=(--config configs/resnet18_cifar.yaml --device "$DEVICE" --epochs 2 --data-dir "$DATA_DIR"
    --batch-size 16 --limit-batches 2 --num-workers 2 --paths bcgh --rounds 2 --profile "$WORK/profile/throughput")
  FAST=("${TINY_FIT[@]}")
  FLAGSHIP=("${TINY_FIT[@]}")
  # Two configs stand for all (the test suite fits every config for one batch on the CPU): on a shared
  # 2-core machine DenseNet-121 alone took 11 minutes here.
  CONFIGS=(--synthetic 1000 --batch-size 16 --limit-train-batches 2 configs/cnn_cifar.yaml
    configs/lstm_mnist_combined.yaml)
  ANALYSIS=(--samples 60)
  DDP=("${TINY_FIT[@]}")
  COMPILE=("${TINY_FIT[@]}" --trainer.max_epochs=1)
  PROFILE=(--trainer.limit_train_batches=3 --data.batch_size=16)
  if ((GPUS == 0)); then
    THROUGHPUT+=(--precision 32-true)
    FAST+=(--trainer.precision=32-true)
    COMPILE+=(--trainer.precision=32-true)
    PROFILE+=(--trainer.precision=32-true)
    DDP+=(--trainer.precision=32-true --trainer.accelerator=cpu)
  fi
fi

# 1. Timed steps, one at a time on an otherwise idle GPU.
run_step throughput 240 "$PYTHON" benchmarks/throughput.py "${THROUGHPUT[@]}" --json "$WORK/throughput.json"
run_step fast 240 lightning fit --config configs/resnet18_cifar_fast.yaml "${CIFAR[@]}" "${FAST[@]}"
# The gpu scale's rows (issue #28), only where --only names them: `litvision reproduce queue` in what is
# left of the budget, going on from the runs committed under reports/gpu/runs (copied: the tree stays as it
# came); OUTDIR receives runs.tar.gz, to unpack into reports/gpu/runs (docs/gpu.md).
rows() {
  local runs="$WORK/reproduce" reports=(cifar10_lt 004 003 000 001) scales=()
  mkdir -p "$runs" "$WORK/data/reproduce" && cp -rn reports/gpu/runs/. "$runs/" 2>/dev/null
  # The runs read the folder the data step extracted (and its decoded cache), not a second copy.
  ln -sfn "$ROOT/.offline/cifar10-jpeg" "$WORK/data/reproduce/offline-cifar10-jpeg"
  # The whole EuroSAT (85 MB) does not fit a call's 64 MiB: 001 runs only where its archive was carried.
  [[ -f "$CARRY/eurosat-rgb.tar.xz" ]] || unset 'reports[4]'
  if ((TINY)); then  # the gpu scale at the smoke scale's sizes: the same rows, a few batches each
    mkdir -p "$WORK/scales" && scales=(--scales_dir "$WORK/scales")
    "$PYTHON" -c "import sys, yaml; gpu, smoke = (yaml.safe_load(open(f'configs/experiments/scales/{n}.yaml')) for n in ('gpu', 'smoke'))
gpu.update(scaled_down=True, data=smoke['data'], analyses=smoke['analyses'], runs={**gpu['runs'], **smoke['runs']})
yaml.safe_dump(gpu, open(sys.argv[1], 'w'))" "$WORK/scales/gpu.yaml" || return 1
  fi
  litvision reproduce queue "${reports[@]}" --scale gpu --budget "$1" --output "$OUTDIR" --data_source offline \
    --shared_data "$CARRY" --data_root "$WORK/data" --runs_dir "$runs" "${scales[@]}"
}
if [[ ",$ONLY," == *",rows,"* ]]; then
  export -f rows && export OUTDIR
  # The queue's own budget (from its start) ends 60 s before the step's limit: stopping a run (30 s at
  # most) and packing take seconds. It packs after each run too, so that even a kill leaves the archive.
  run_step rows 100000 bash -c 'rows "$0"' $((DEADLINE - RESERVE - SECONDS - 60))
fi

# 2. Where the time goes in the fast recipe (Lightning's hook timings, then torch's operator table).
PROFILE_FIT=(fit --config configs/resnet18_cifar_fast.yaml "${CIFAR[@]}" --trainer.max_epochs=1
  --data.val_size=0 --test_after_fit=false --trainer.logger=false
  --trainer.enable_checkpointing=false "${PROFILE[@]}")
# Each in its own folder: without a logger, Lightning saves the config there and never overwrites one.
run_step profile-simple 60 lightning "${PROFILE_FIT[@]}" --trainer.profiler=simple \
  "--trainer.default_root_dir=$WORK/profile/simple"
run_step profile-torch 90 lightning "${PROFILE_FIT[@]}" --trainer.profiler=pytorch \
  "--trainer.default_root_dir=$WORK/profile/torch"

# 3. Untimed steps side by side: the flagship command then torch.compile, the analysis tools, every config.
analysis() {
  local run
  [[ -z "$ONLY" || "$ONLY" == *analysis* ]] || return 0
  run=$(ls -d "$WORK"/runs/resnet18_cifar_fast/version_* 2>/dev/null | sort -V | tail -n 1)
  [[ -f "$run/test_results.json" ]] || run=$(ls -d "$WORK"/runs/resnet18_cifar/version_* 2>/dev/null | sort -V | tail -n 1)
  if [[ ! -f "$run/test_results.json" ]]; then
    say "analysis: skipped, no finished run"; printf 'analysis\tskipped (no run)\t0\t-\t-\n' >>"$WORK/steps.tsv"
    return 0
  fi
  say "analysis: on $run"
  local sample=() crt=()
  ((TINY)) && sample=("${ANALYSIS[@]}") crt=(--crt_epochs 1)
  run_step analysis-tsne 90 litvision analyze tsne "$run" --device "$DEVICE" "${sample[@]}"
  run_step analysis-feature-maps 90 litvision analyze feature-maps "$run" --device "$DEVICE"
  run_step analysis-confusion 90 litvision analyze confusion "$run" --device "$DEVICE"
  run_step analysis-svm-head 150 litvision analyze svm-head "$run" --device "$DEVICE" "${crt[@]}"
  run_step analysis-curves 60 litvision analyze curves "$run"
}
flagship() {
  # The flagship command as a user types it, for two epochs, with the JPEG copy's folder.
  run_step flagship 180 lightning fit --config configs/resnet18_cifar.yaml --trainer.max_epochs=2 \
    "${CIFAR[@]}" "${FLAGSHIP[@]}"
  # torch.compile through the CLI (model.compile), on the fast recipe: does it compile and train.
  run_step compile 150 lightning fit --config configs/resnet18_cifar_fast.yaml --model.compile=true \
    --trainer.logger.name=compile "${CIFAR[@]}" "${COMPILE[@]}"
}
BACKGROUND=()
if [[ -f $(ls -d "$WORK"/runs/resnet18_cifar_fast/version_*/test_results.json 2>/dev/null | tail -n 1) ]]; then
  flagship & BACKGROUND+=($!)
  analysis & BACKGROUND+=($!)
else
  { flagship; analysis; } & BACKGROUND+=($!)
fi
run_step configs 200 "$PYTHON" benchmarks/one_epoch.py "${CONFIGS[@]}" --log-dir "$WORK/runs/one_epoch" \
  --json "$WORK/one_epoch.json"
wait "${BACKGROUND[@]}"   # by pid: a bare wait would also wait for the log's tee, which never ends
# The runs of this check side by side (per-class test accuracy, epochs, wall time).
FINISHED=()
for name in resnet18_cifar_fast resnet18_cifar compile; do
  run=$(ls -d "$WORK/runs/$name"/version_* 2>/dev/null | sort -V | tail -n 1)
  [[ -f "$run/test_results.json" ]] && FINISHED+=("$run")
done
if ((${#FINISHED[@]})); then
  run_step analysis-compare 60 litvision analyze compare "${FINISHED[@]}" --output "$WORK/runs/compare"
fi

# 4. Two processes where there are two GPUs (and in the CPU rehearsal, with two CPU processes).
if ((GPUS >= 2 || GPUS == 0)); then
  run_step ddp 180 lightning fit --config configs/resnet18_cifar_fast.yaml "${CIFAR[@]}" \
    --trainer.max_epochs=2 --trainer.devices=2 --trainer.strategy=ddp --trainer.logger.name=ddp "${DDP[@]}"
else
  printf 'ddp\tskipped (1 GPU)\t0\t-\t-\n' >>"$WORK/steps.tsv"
fi

# Summary and archive: only 8 files come back from the device tool, so the logs travel as one.
say "summary"
"$PYTHON" benchmarks/gpu_check.py summary "$WORK" "$OUTDIR" "${TINY_FLAG[@]}" >"$LOGS/summary.log" 2>&1 ||
  { echo "summary failed:"; cat "$LOGS/summary.log"; }
cp "$WORK/steps.tsv" "$LOGS/" 2>/dev/null
[[ -f "$WORK/env.json" ]] && cp "$WORK/env.json" "$OUTDIR/"
for f in throughput.json one_epoch.json env.json; do [[ -f "$WORK/$f" ]] && cp "$WORK/$f" "$LOGS/"; done
say "packing logs.tar.gz"
# Checkpoints, arrays and profiler traces stay behind (tens of MB each); the profilers' tables travel.
tar -czf "$OUTDIR/logs.tar.gz" -C "$WORK" --exclude='*.ckpt' --exclude='*.npz' --exclude='*.pt.trace.json' \
  logs runs $(test -d "$WORK/profile" && echo profile)
# Only 16 MiB a file come back: a larger cache stays behind (the next call compiles afresh).
tar -czf "$WORK/inductor.tar.gz" -C "$WORK" inductor 2>/dev/null &&
  (($(stat -c %s "$WORK/inductor.tar.gz") < 15 * 1024 * 1024)) && mv "$WORK/inductor.tar.gz" "$OUTDIR/"
ls -l "$OUTDIR"
cat "$OUTDIR/summary.md" 2>/dev/null
cp "$LOGS/gpu_check.log" "$OUTDIR/gpu_check.log"
