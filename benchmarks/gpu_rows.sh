#!/usr/bin/env bash
# The gpu scale's rows (configs/experiments/scales/gpu.yaml, issue #28) on this machine, most informative
# first, within a budget. Each seed of a row starts only if its estimate fits what is left, then runs to
# its end with its analyses: its checkpoints cannot leave the device machine, so a run cut short is lost
# (the loss landscape comes with the first 004 row).
# Runs an earlier call finished count as finished: unpack its rows.tar.gz into .offline/gpu/, which the
# call carries. OUT receives rows.tar.gz: every run without its checkpoints, and the scale's report.
#
#   bash benchmarks/gpu_rows.sh --budget SECONDS [--tiny] WORK OUT   # after gpu_check.sh's install
#
# gpu_check.sh --only ...,rows runs it; ROWS="cifar10_lt/ce 004/final" picks rows. --tiny: the same rows
# at the smoke scale's sizes (the CPU rehearsal).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
BUDGET=0 TINY=0 ARGS=()
while (($#)); do
  case "$1" in
    --budget) BUDGET="$2"; shift ;;
    --tiny) TINY=1 ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
((${#ARGS[@]} == 2 && BUDGET > 0)) || { sed -n '2,12p' "$0"; exit 2; }
WORK="${ARGS[0]}" OUT="${ARGS[1]}" CARRY=.offline/gpu DEADLINE=$((SECONDS + BUDGET))
ROWS="${ROWS:-cifar10_lt/ce cifar10_lt/ldam_drw cifar10_lt/logit_adjusted cifar10_lt/balanced_softmax
  cifar10_lt/ce_drw cifar10_lt/focal cifar10_lt/cb_focal cifar10_lt/ce_class_balanced_sampling
  cifar10_lt/ce_progressive_sampling cifar10_lt/ce_mixup 004/resnet18_cifar_ablation 004/activation-relu
  004/activation-elu 004/weight_decay-0.0001 004/weight_decay-0.0005 004/weight_decay-0.001 004/width-32
  004/width-128 004/optimizer-adam 004/optimizer-adagrad 004/optimizer-rmsprop 004/final 004/vgga
  004/vgga_bn 003/multikernel_cifar 003/lr-0.005 003/lr-0.001 000/cnn 000/vgg16 000/unbalanced
  000/augmented 000/irm 000/combined}"
# The whole EuroSAT (85 MB) does not fit a call's 64 MiB: 001 runs only where its archive was carried.
[[ -f "$CARRY/eurosat-rgb.tar.xz" ]] && ROWS+=" 001/densenet121 001/model_b 001/model_b_tricks 001/longtail 001/resnet50"

# Seconds of one run on one H100/H200 with CUDA graphs, compilation included: guesses from the H200
# check (ResNet-18: 8.2 ms of kernels a step of 512 images), to be replaced by measured wall times.
run_seconds() {
  ((TINY)) && { echo 90; return; }
  case $1 in
    cifar10_lt/*) echo 240 ;; 004/final) echo 330 ;; 004/width-128) echo 300 ;; 004/vgga*) echo 120 ;;
    004/*) echo 180 ;; 003/*) echo 480 ;; 000/cnn) echo 150 ;; 000/*) echo 240 ;; *) echo 600 ;;
  esac
}
say() { printf '[gpu_rows %4ds] %s\n' "$SECONDS" "$*"; }

COMMON=(--scale gpu --data_source offline --shared_data "$CARRY" --data_root "$WORK/data" --runs_dir
  "$WORK/reproduce" --reports_dir "$WORK/reports")
mkdir -p "$WORK/logs" "$WORK/data/reproduce" "$OUT" || exit 1
# The runs read the folder gpu_check.sh's data step extracted (and its decoded cache), not a second copy.
ln -sfn "$PWD/.offline/cifar10-jpeg" "$WORK/data/reproduce/offline-cifar10-jpeg"
[[ -d "$CARRY/reproduce" ]] && cp -rn "$CARRY/reproduce" "$WORK/"
if ((TINY)); then  # the gpu scale at the smoke scale's sizes: the same rows, a few batches each
  mkdir -p "$WORK/scales"
  "${PYTHON:-python3}" -c "import sys, yaml; gpu, smoke = (yaml.safe_load(open(f'configs/experiments/scales/{n}.yaml')) for n in ('gpu', 'smoke'))
gpu.update(scaled_down=True, data=smoke['data'], analyses=smoke['analyses'], runs={**gpu['runs'], **smoke['runs']})
yaml.safe_dump(gpu, open(sys.argv[1], 'w'))" "$WORK/scales/gpu.yaml" || exit 1
  COMMON+=(--scales_dir "$WORK/scales")
fi
REPRODUCE=(litvision reproduce run "${COMMON[@]}" --yes)

failed=0
for row in $ROWS; do
  report=${row%%/*}
  # Each seed of the row by itself (--seeds K trains the first K seeds that are not finished), so that a
  # row of three seeds advances one run at a time.
  mapfile -t states < <("${REPRODUCE[@]}" "$report" --only "$row" --dry_run 2>/dev/null | sed -n 's/^# .* (\(.*\))$/\1/p')
  [[ " ${states[*]} " == *" to run "* ]] || { say "$row: finished already (or no such row)"; continue; }
  for ((k = 1; k <= ${#states[@]}; k++)); do
    [[ "${states[k - 1]}" == "to run" ]] || continue
    need=$(run_seconds "$row") left=$((DEADLINE - SECONDS)) log="$WORK/logs/rows-${row//\//-}-seed$((k - 1)).log"
    if ((need > left)); then say "$row, seed $((k - 1)): about ${need}s, ${left}s left: not started"; continue 2; fi
    say "$row, seed $((k - 1)): about ${need}s (${left}s left)"
    # With its analyses (they read the checkpoints, which stay here); cut only where the budget ends.
    timeout -k 10 "$left" "${REPRODUCE[@]}" "$report" --only "$row" --seeds "$k" >"$log" 2>&1
    rc=$?
    say "$row, seed $((k - 1)): exit $rc (log: $log)"
    ((rc == 0)) || failed=1
  done
done
# The report of every run here, with the scale's seeds (the commands above wrote it with theirs).
[[ -d "$WORK/reproduce" ]] && litvision reproduce report "${COMMON[@]}" >"$WORK/logs/rows-report.log" 2>&1
[[ -d "$WORK/reproduce" ]] && tar -czf "$OUT/rows.tar.gz" -C "$WORK" --exclude='*.ckpt' --exclude='*.npz' \
  reproduce $(test -d "$WORK/reports" && echo reports)
exit $failed
