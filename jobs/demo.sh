#!/usr/bin/env bash
# The whole pipeline on the embedded default (tiny model, bundled corpus), in order, with
# several MPI ranks: init -> extract (training and held-out texts) -> label -> AV SFT ->
# the SFT AV labels the training rows -> AR SFT on those descriptions -> GRPO -> all-layer eval
# sweep -> steering audit -> report. Options of every stage are in
# configs/demo.ini (the same stages run on a real Qwen2.5-7B by changing the config only:
# model, layer, steps, batch sizes; see the comments there).
#   NLA_RUN_DIR (runs/demo)  NLA_RANKS (2)  NLA_BIN (build/bin/nla)  NLA_CONFIG (configs/demo.ini)
#   NLA_DEVICE, NLA_PRECISION (unset: auto, i.e. the local rank's GPU in bf16 when one is
#   visible, else the CPU in fp32): --device / --precision of every stage that runs the model,
#   e.g. NLA_DEVICE=cuda scripts/main_job.sh, or NLA_DEVICE=cpu to stay off the GPU
set -euo pipefail
cd "$(dirname "$0")/.."
source jobs/lib.sh
run_dir=${NLA_RUN_DIR:-runs/demo}
ranks=${NLA_RANKS:-2}
config=${NLA_CONFIG:-configs/demo.ini}
nla=$NLA_BIN
stage() { printf '\n=== [%s s] %s\n' "$(($(date +%s) - start))" "$*" >&2; }
mkdir -p "$run_dir"
start=$(date +%s)

stage "1/12 init-model: seeded random tiny Qwen2 checkpoint"
"$nla" init-model --config "$config" --out "$run_dir/model" --overwrite

stage "2/12 extract: training texts (every 10th document), all layers, $ranks ranks"
nla_launch "$ranks" extract --config "$config" --model "$run_dir/model" --out "$run_dir/acts.h5" --overwrite \
  "${nla_device_options[@]}"

stage "3/12 extract: held-out texts (documents 5, 15, 25, ...: disjoint from training; 8 positions each, so that recall@10 has 500 candidates), $ranks ranks"
nla_launch "$ranks" extract --config "$config" --model "$run_dir/model" --out "$run_dir/held_out.h5" \
  --doc-offset 5 --max-docs 1000 --positions-per-doc 8 --overwrite "${nla_device_options[@]}"

stage "4/12 label: the token at each position (gold for AV SFT)"
"$nla" label --config "$config" --store "$run_dir/acts.h5"

stage "5/12 train-av: AV SFT (FSDP over $ranks ranks)"
rm -rf "$run_dir/train_av"
nla_launch "$ranks" train-av --config "$config" --store "$run_dir/acts.h5" --model "$run_dir/model" \
  --out "$run_dir/train_av" "${nla_device_options[@]}"

stage "6/12 label av: the SFT AV describes the training rows (greedy, $ranks ranks)"
nla_launch "$ranks" label --config "$config" --store "$run_dir/acts.h5" --labeler "av:$run_dir/train_av/av" \
  --name av "${nla_device_options[@]}"

stage "7/12 train-ar: AR SFT on the AV's descriptions (FSDP over $ranks ranks)"
rm -rf "$run_dir/train_ar"
nla_launch "$ranks" train-ar --config "$config" --store "$run_dir/acts.h5" --model "$run_dir/model" \
  --out "$run_dir/train_ar" "${nla_device_options[@]}"

stage "8/12 grpo: RL of the AV against the live AR ($ranks ranks, colocate)"
rm -rf "$run_dir/grpo"
nla_launch "$ranks" grpo --config "$config" --store "$run_dir/acts.h5" --av "$run_dir/train_av/av" \
  --ar "$run_dir/train_ar/ar" --out "$run_dir/grpo" --eval-store "$run_dir/held_out.h5" "${nla_device_options[@]}"

stage "9/12 eval: the GRPO AV and AR on every layer of the held-out texts, $ranks ranks"
rm -rf "$run_dir/eval"
nla_launch "$ranks" eval --config "$config" --store "$run_dir/held_out.h5" --model "$run_dir/model" \
  --av "$run_dir/grpo/av" --ar "$run_dir/grpo/ar" --out "$run_dir/eval" "${nla_device_options[@]}"

stage "10/12 steer-vector: code minus wiki texts at the anchor layer ($ranks ranks)"
nla_launch "$ranks" steer-vector --config "$config" --model "$run_dir/model" \
  --positive data/corpus/code.jsonl.zst --negative data/corpus/wiki.jsonl.zst \
  --out "$run_dir/steer/code_minus_wiki.safetensors" --overwrite "${nla_device_options[@]}"

stage "11/12 steer-audit: the GRPO AV and AR read the model steered toward code ($ranks ranks)"
nla_launch "$ranks" steer-audit --config "$config" --model "$run_dir/model" --av "$run_dir/grpo/av" \
  --ar "$run_dir/grpo/ar" --vector "$run_dir/steer/code_minus_wiki.safetensors" --prompts data/corpus/forum.jsonl.zst \
  --out "$run_dir/steer" --overwrite "${nla_device_options[@]}"

stage "12/12 report: statistics, figures, report.md (with the steering audit)"
/usr/bin/python3 analysis/nla_report.py "$run_dir/eval" --steer "$run_dir/steer"

echo "demo finished in $(($(date +%s) - start)) s; the report: $run_dir/eval/report/report.md" >&2
