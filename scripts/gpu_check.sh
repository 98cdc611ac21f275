#!/usr/bin/env bash
# GPU check: every GPU path end to end at real size with random weights, one report.
#
#   bash scripts/gpu_check.sh [REPORT_DIR]        (default gpu_check/; needs a CUDA device)
#
# Steps (each under its own time limit; a failing step is recorded and the next one runs):
#   env         torch, CUDA, the GPU
#   cuda_tests  the tests that need a CUDA device
#   render      BigBiGAN (128 px) and StyleGAN2 config-f (512 px) rendering, fp32/bf16 x contiguous/channels_last
#   pretrain_*  a short ResNet-18 bf16 pretraining on BigBiGAN and on StyleGAN2 (Continuous Sampling, 112 px)
#   mi_quant    MI quantification steps on BigBiGAN (ResNet-18, 112 px, bf16) and its Monte Carlo
#   dali        the DALI tests: the pipeline on the GPU where a data module picks it (needs nvidia-dali)
#   bench       the paper's benchmark setting: BigBiGAN, ResNet-18 at 112 px, bf16, batch 32-256,
#               torch loader with 8 workers (plus DALI/FFCV where installed)
#   quickstart  the toy-world quickstart on the GPU (SimCLR, bf16-mixed) and its linear probe
#   solo_run    (solo-learn importable) the quickstart's config on solo-learn's SimCLR, bf16, and
#               solo-learn's linear evaluation of it
#   solo_file   (solo-learn importable, with its scripts/) solo-learn's own cifar simsiam.yaml with its GPU
#               settings unchanged (devices [0], ddp, 16-mixed, sync_batchnorm), 2 short epochs
#   solo_tests  (solo-learn importable) the solo-learn test files
# GPU_CHECK_STEPS="bench quickstart" runs only the steps named (env always runs).
# The steps take about 12 minutes together on an H200 (the benchmark about 8), plus about 5.5 for the three
# solo-learn steps where solo-learn imports; where a job may run for less, run it twice:
# GPU_CHECK_STEPS="cuda_tests render pretrain_bigbigan pretrain_stylegan2 mi_quant dali
# quickstart" into one REPORT_DIR, GPU_CHECK_STEPS=bench into another, and GPU_CHECK_STEPS="solo_run solo_file
# solo_tests" where solo-learn is installed (about 5.5 minutes on an H200: 75 s, 29 s and 225 s).
# REPORT_DIR gets report.md (one line per step), gpu_check.log (all output), render.json and the benchmark's bench.json, bench.csv and bench.png.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # scripts/*.py import the package from this checkout, installed or not
if ! python -c "import torch" 2>/dev/null; then
    echo "error: '$(command -v python || echo python)' cannot import torch: activate the project's environment first" >&2
    exit 2
fi
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: no CUDA device visible to torch; this script checks the GPU paths" >&2
    exit 2
fi
mkdir -p "$out"
log="$out/gpu_check.log"
report="$out/report.md"
: >"$log"
{
    echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "| step | result | seconds |"
    echo "| --- | --- | --- |"
} >"$report"

step() {  # step NAME TIMEOUT_S COMMAND...
    local name=$1 limit=$2
    shift 2
    if [ -n "${GPU_CHECK_STEPS:-}" ] && [ "$name" != env ] && [[ " $GPU_CHECK_STEPS " != *" $name "* ]]; then
        return 0
    fi
    echo "=== $name: $*" | tee -a "$log"
    local t0=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    local rc=$? dt=$((SECONDS - t0)) result
    case $rc in
        0) result=pass ;;
        124) result="FAIL (over ${limit} s)" ;;
        5) result="skipped (no test matched)" ;;
        *) result="FAIL (exit $rc)" ;;
    esac
    echo "| $name | $result | $dt |" >>"$report"
    echo "=== $name: $result in $dt s" | tee -a "$log"
}

step env 60 python -c "
import torch, lightning, sys
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'lightning', lightning.__version__)
p = torch.cuda.get_device_properties(0)
print('gpu', p.name, p.total_memory // 2**20, 'MiB', p.multi_processor_count, 'SMs, bf16', torch.cuda.is_bf16_supported())
"
step cuda_tests 120 python -m pytest -q -p no:cacheprovider tests -k cuda
step render 150 python scripts/generator_speed.py --device cuda --generators bigbigan stylegan2 \
    --batch-sizes 32 128 --precisions fp32 bf16 --formats contiguous channels_last --repeats 3 \
    --json "$out/render.json"
gen_bigbigan=(generator=bigbigan generator.checkpoint=null views=bigbigan_ml_random)
gen_stylegan2=(generator=stylegan2_cars generator.checkpoint=null views=stylegan2_ml_random)
gpu_run=(backbone.name=resnet18 backbone.small_image_stem=false data.crop_size=112 precision=bf16-mixed)
step pretrain_bigbigan 150 python main_pretrain.py --config-name mlvgm_simclr name=gpu_check_bigbigan \
    "${gen_bigbigan[@]}" "${gpu_run[@]}" optimizer.batch_size=128 max_steps=40 log_every_n_steps=10
step pretrain_stylegan2 150 python main_pretrain.py --config-name mlvgm_simclr name=gpu_check_stylegan2 \
    "${gen_stylegan2[@]}" "${gpu_run[@]}" optimizer.batch_size=64 max_steps=20 log_every_n_steps=5
step mi_quant 150 python main_quantify.py --config-name mi_quant name=gpu_check_mi generator=bigbigan \
    generator.checkpoint=null backbone.name=resnet18 backbone.small_image_stem=false \
    method_kwargs.input_size=112 method_kwargs.encoder_warmup_steps=5 precision=bf16-mixed \
    levels=[z1] max_steps=30 log_every_n_steps=10 monte_carlo.samples=20000 recommend.crop_min_scale=0.2
if [ -z "${GPU_CHECK_STEPS:-}" ] || [[ " $GPU_CHECK_STEPS " == *" dali "* ]]; then
    if dali_error=$(python -c "import nvidia.dali" 2>&1); then
        step dali 150 python -m pytest -q -p no:cacheprovider tests -k dali
    else
        echo "=== dali: skipped, nvidia.dali does not import: ${dali_error##*$'\n'}" | tee -a "$log"
        echo "| dali | skipped: nvidia.dali does not import (see log) | 0 |" >>"$report"
    fi
fi
step bench 600 python main_bench.py --config-name bench "${gen_bigbigan[@]}" "${gpu_run[@]}" \
    bench.batch_sizes=[32,64,128,256] bench.torch.num_workers=8 bench.steps=20 bench.energy.enabled=false
step quickstart 180 bash scripts/quickstart.sh precision=bf16-mixed
if solo_scripts=$(python -c "
import pathlib, solo
print(pathlib.Path(solo.__file__).resolve().parents[1] / 'scripts' / 'pretrain' / 'cifar')" 2>/dev/null); then
    step solo_run 180 bash -c "python main_pretrain.py --config-name mlvgm_simclr name=gpu_check_solo backend=solo \
        precision=bf16-mixed && python main_linear.py pretrained=runs/gpu_check_solo/latest backend=solo"
    if [ -d "$solo_scripts" ]; then
        step solo_file 180 python main_pretrain.py --config-path "$solo_scripts" --config-name simsiam.yaml \
            data.format=mlvgm +generator=toyworld +views=toyworld_multilevel wandb.enabled=False max_epochs=2 \
            +data.epoch_size=12800 checkpoint.dir=runs/gpu_check_solo_file
    else
        echo "| solo_file | skipped: solo-learn's scripts/ not found beside its package | 0 |" >>"$report"
    fi
    step solo_tests 420 python -m pytest -q -p no:cacheprovider -n "$(( $(nproc) < 12 ? $(nproc) : 12 ))" tests/test_solo_backend.py \
        tests/test_solo_files.py tests/test_entry_points.py
else
    for name in solo_run solo_file solo_tests; do
        if [ -z "${GPU_CHECK_STEPS:-}" ] || [[ " $GPU_CHECK_STEPS " == *" $name "* ]]; then
            echo "| $name | skipped: solo-learn does not import | 0 |" >>"$report"
        fi
    done
fi
latest_bench=$(ls -td runs/bench/*/ 2>/dev/null | head -1)
if grep -q "^| bench | pass " "$report" && [ -n "$latest_bench" ]; then  # this run's figures only
    for f in bench.json bench.csv bench.png; do [ -f "$latest_bench$f" ] && cp "$latest_bench$f" "$out/"; done
fi
echo
cat "$report"
echo "report: $report, log: $log"
