#!/usr/bin/env bash
# cuda_check.sh — every check and benchmark of the CUDA backend on a GPU
# machine, in one go.
#
# The GPU machine has no Go toolchain: build the binaries first, here
# (stripped and xz-compressed, so that they travel with the working tree
# in little space; the script unpacks them):
#
#   CGO_ENABLED=0 go test -c -ldflags='-s -w' -o gpubin/cuda.test ./backend/cuda
#   CGO_ENABLED=0 go build -ldflags='-s -w' -o gpubin/marlin ./cmd/marlin
#   xz -f -9 gpubin/cuda.test gpubin/marlin
#   echo "$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)" >gpubin/commit
#
# then run this script there with gpubin/ carried along (it is git-ignored),
# e.g. through the device tool: bash scripts/device/cuda_check.sh
#
# For the ab step's builds of several commits in one go, see
# scripts/device/build_arms.sh. To compare against another commit in the
# same call by hand, add its builds as
# gpubin/cuda-base.test.xz (the perf step) and gpubin/marlin-base.xz (the
# ab step), e.g. from a git worktree of it:
#
#   git worktree add /tmp/base main && (cd /tmp/base &&
#     CGO_ENABLED=0 go test -c -ldflags='-s -w' -o "$OLDPWD/gpubin/cuda-base.test" ./backend/cuda)
#   xz -f -9 gpubin/cuda-base.test
#
# Steps, in order of importance, each skipped when too little of BUDGET
# (seconds, default 280) is left; STEPS (default all) picks some of
# tests,perf,bench,ab,moe,profile,ncu,run,memcheck,racecheck (PERF_ENVS and
# AB_ARMS, below, compare environment settings of one build):
#   1. the backend's tests (ops against the CPU, the tensor-core kernels at
#      split-K sizes, graph segments, fixtures against transformers,
#      batching, GPTQ checkpoints, errors, call costs, experts, latent
#      attention, sampling, trellis)
#   2. perf: the quantized matmuls (TestQMatMulSpeed) and torch's fp16
#      F.linear on the same shapes in the same run, joined into
#      $OUT/perf_table.md by perf_table.py, with the read probe's lines
#      (TestReadPatternSpeed: bare reads, and the decode kernel's inner
#      loop built up part by part); with gpubin/cuda-base.test (a test
#      binary of an earlier commit, e.g. main against a branch) the same
#      for it in the same call, perf_table-base.md
#   3. bench: `marlin bench` of the Llama-3-8B shape, BF16 and INT4 g128,
#      decode with and without CUDA graphs (the synthetic checkpoints are
#      generated on this machine's disk on first use)
#   3b. moe: the GLM-4.7-Flash shape (INT4 g128, EXL3 4-bit, a BF16 slice)
#      at batch 1 and 32 with a 2K prefill, and Mixtral-8x7B at INT4
#   3a. ab (with gpubin/marlin-base, a build of an earlier commit, or both
#      binaries as gpubin/pair.tar.xz): old and new `marlin bench` decode
#      alternating on AB_SHAPES, then each arm's decode logits at depth
#      against the first arm's; see the step below (KEEP_SYNTH=1 keeps
#      the GLM checkpoint it builds for a next call on the same warm
#      machine, which then skips the ~60–100 s of building it again)
#   3c. profile: kernel times of one decode step (MARLIN_CUDA_PROFILE=1)
#   3d. ncu: each kernel's warp samples by code region (ncu_regions.py)
#   4. `marlin run` of the embedded model, greedy, on cuda and on cpu: same text
#   5. the op tests (dense, MoE and MLA kernels) under compute-sanitizer memcheck
#   6. racecheck (shared-memory hazards) of the tiled kernels
# Logs go to $OUT (default: a fresh temporary folder); a summary is printed.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
BUDGET=${BUDGET:-280}
STEPS=${STEPS:-tests,perf,bench,ab,moe,profile,run,memcheck,racecheck}  # ncu: only when asked
want() { [[ ",$STEPS," == *",$1,"* ]]; }
start=$SECONDS
left() { echo $((BUDGET - (SECONDS - start))); }
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

# (an ab run may bring marlin and marlin-base as one archive, pair.tar.xz:
# compressed together they take little more room than one)
[ -f gpubin/pair.tar.xz ] && tar -xJf gpubin/pair.tar.xz -C gpubin
for f in gpubin/cuda.test gpubin/marlin gpubin/marlin-base gpubin/cuda-base.test; do
	if [ ! -x "$f" ] && [ -f "$f.xz" ]; then
		xz -dkc "$f.xz" >"$f" && chmod +x "$f"
	fi
	[ -x "$f" ] || [[ "$f" == *-base* ]] || { echo "missing $f: build it first (see the top of $0)"; exit 2; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$summary"
# synthetic checkpoints (and the kernel cache) in memory when /dev/shm can
# hold them (48 GB): the GLM shape's 17 GB are otherwise written to disk
# twice (a shard's data, then the file) and synced before each bench, on a
# machine that lives for one call
shm=$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)
if [ -z "${XDG_CACHE_HOME:-}" ] && [ "${shm:-0}" -gt $((48 << 20)) ] 2>/dev/null; then
	export XDG_CACHE_HOME=/dev/shm/marlin-cache
	mkdir -p "$XDG_CACHE_HOME"
	echo "cache in $XDG_CACHE_HOME (tmpfs, $((shm >> 20)) GB free)" | tee -a "$summary"
fi
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 || true)
[ -n "$sanitizer" ] || sanitizer=$(find / -xdev -name compute-sanitizer -type f -perm -u+x 2>/dev/null | head -1)

# run NAME MIN MAX LOG CMD...: runs CMD with a timeout of MAX seconds (less
# when less of the budget is left; skipped below MIN).
run() {
	local name=$1 min=$2 max=$3 log=$4
	shift 4
	local l
	l=$(($(left) - 5))
	if [ "$l" -lt "$min" ]; then
		note "$name: skipped ($l s left of the budget)"
		return
	fi
	local t0=$SECONDS
	timeout "$((l < max ? l : max))" "$@" >"$log" 2>&1
	local rc=$?
	note "$name: exit $rc in $((SECONDS - t0)) s"
}

# 1. tests, from the package folder as go test would run them, in groups
# (separate processes: a device fault in one cannot hide the others' results)
# the commit the binaries were built from: gpubin/commit, written with them
# (the GPU machine's copy of the tree has no current git history)
echo "commit $(cat gpubin/commit 2>/dev/null || echo unknown) $(date -u +%FT%TZ)" | tee -a "$summary"
if want tests; then
	# TEST_GROUPS (groups separated by ';') overrides the default groups
	# (TestCompileKernels is left to CI and the dev VM: on the device it
	# compiles the module twice more, ~160 s; the first test of a group
	# compiles it once, ~80 s, unless the disk cache has it)
	default_groups="TestKernelResources|TestPack|TestTensors|TestStickyErrors|TestClose|TestCollect|TestGraph$|TestCallCost;TestOps;TestQMatMul$|TestXTiles|TestTileClusters|TestTCSplits|TestGraphSegments|TestFusedOps;TestFixtures|TestBatchedGeneration|TestGPTQCheckpoints;TestExpertsOnDevice|TestExpertsAdd|TestHeadsOnDevice|TestMLA|TestSample|TestTrellis(MatMul|Viterbi|Windows)"
	IFS=';' read -ra groups <<<"${TEST_GROUPS:-$default_groups}"
	for group in "${groups[@]}"; do
		run "tests $group" 20 280 "$OUT/test.part" bash -c "cd backend/cuda && ../../gpubin/cuda.test -test.v -test.timeout 275s -test.run '$group'"
		cat "$OUT/test.part" >>"$OUT/test.log" 2>/dev/null
	done
	rm -f "$OUT/test.part"
	grep -E "^(--- |    --- |ok|PASS|FAIL|panic)|cuda tests on|worst position|purego call|segments:|Used [0-9]+ registers" "$OUT/test.log" | head -150; grep -E "_test.go:[0-9]+: " "$OUT/test.log" | grep -v "ptxas\|worst position" | head -40
fi

# 2. the quantized matmuls against torch fp16 F.linear, same run
# (PERF_ENVS: ';'-separated sets of environment assignments, e.g.
# 'MARLIN_QMV_L2PF=0;MARLIN_QMV_L2PF=32': marlin's side runs once with each,
# one table each, perf_table-N.md)
if want perf; then
	run perf-torch 20 120 "$OUT/torch.log" python3 scripts/device/torch_linear.py
	IFS=';' read -ra penvs <<<"${PERF_ENVS:-}"
	[ ${#penvs[@]} -gt 0 ] || penvs=("")
	for i in "${!penvs[@]}"; do
		sfx=${PERF_ENVS:+-$i}
		run "perf-marlin ${penvs[$i]}" 30 200 "$OUT/perf$sfx.log" env ${penvs[$i]} bash -c "cd backend/cuda && ../../gpubin/cuda.test -test.v -test.timeout 190s -test.run 'TestQMatMulSpeed$|TestReadPatternSpeed$'"
		{
			[ -n "${penvs[$i]}" ] && echo "environment: ${penvs[$i]}"
			python3 scripts/device/perf_table.py "$OUT/perf$sfx.log" "$OUT/torch.log"
			echo
			echo "read probe (order or work, bytes, µs, GB/s):"
			grep '^readprobe' "$OUT/perf$sfx.log"
		} >"$OUT/perf_table$sfx.md" 2>&1
		cat "$OUT/perf_table$sfx.md"
	done
	if [ -x gpubin/cuda-base.test ]; then
		run "perf-marlin base" 30 200 "$OUT/perf-base.log" bash -c "cd backend/cuda && ../../gpubin/cuda-base.test -test.v -test.timeout 190s -test.run 'TestQMatMulSpeed$|TestReadPatternSpeed$'"
		python3 scripts/device/perf_table.py "$OUT/perf-base.log" "$OUT/torch.log" >"$OUT/perf_table-base.md" 2>&1
		echo "base build:"
		cat "$OUT/perf_table-base.md"
	fi
fi

# 3. end to end: the Llama-3-8B shape in BF16 and INT4 g128 (BENCH_FLAGS:
# more flags, e.g. '--head-bits 4' for the INT4 model's head at 4 bits)
if want bench; then
	run bench 60 400 "$OUT/bench.log" ./gpubin/marlin bench --synthetic llama3-8b --format bf16,int4:128 --device cuda --prompt 512 --gen 64 --membw=false --json ${BENCH_FLAGS:-}
	grep -E "cuBLAS" "$OUT/perf.log"
	grep -vE '^\s*$' "$OUT/bench.log" | grep -E 'decode_tokens|prefill_tokens|weight_bytes|kv_bytes_8k|"model"|building|Error|error' | head -30
fi

# 3a. old against new decode: gpubin/marlin-base (a build of an earlier
# commit) and gpubin/marlin alternate, AB_RUNS pairs (default 2) on each of
# AB_SHAPES (synthetic shape:format[:extra flags], default the 8B shape at
# INT4 with the 4-bit head, and GLM-4.7-Flash at INT4); with the profile
# step, the kernel times of the new build on each shape too. AB_ARMS
# chooses other arms: ';'-separated 'binary|environment' items, e.g.
# 'marlin|MARLIN_CUDA_NORMFUSE=0;marlin|' (settings of one build) or
# 'marlin-base|;marlin|;marlin|MARLIN_CUDA_GRAPHS=0'. AB_PROMPT and AB_GEN
# (default 512 and 64) set the runs' prompt and decode lengths; a shape's
# extra flags come last, so that they can set its own (e.g.
# 'glm4.7-flash:int4:128:--prompt 2048 --gen 32'). After a shape's runs,
# each arm's decode logits at depth against the first arm's (below).
ab_ready() { [ -x gpubin/marlin-base ] || [ -n "${AB_ARMS:-}" ]; }
if want ab && ab_ready; then
	arms=("marlin-base|" "marlin|")
	[ -n "${AB_ARMS:-}" ] && IFS=';' read -ra arms <<<"$AB_ARMS"
	IFS=';' read -ra shapes <<<"${AB_SHAPES:-llama3-8b:int4:128:--head-bits 4;glm4.7-flash:int4:128}"
	for si in "${!shapes[@]}"; do
		IFS=':' read -r model fmt grp extra <<<"${shapes[$si]}"
		for i in $(seq "${AB_RUNS:-2}"); do
			for arm in "${arms[@]}"; do
				IFS='|' read -r bin envset <<<"$arm"
				log="$OUT/ab$si-$model-$bin-${envset//[^A-Za-z0-9_]/_}-$i.log"
				run "ab $model $bin $envset $i" 30 300 "$log" env $envset ./gpubin/$bin bench --synthetic "$model" --format "$fmt:$grp" --device cuda --prompt "${AB_PROMPT:-512}" --gen "${AB_GEN:-64}" --membw=false --json $extra
				note "  $(grep -ohE '"(batch_)?(prefill|decode)_tokens_per_second[a-z_]*": [0-9.]+|"decode_forward_ms": [0-9.]+' "$log" | tr '\n' ' ')"
				# traced arms (MARLIN_CUDA_TRACE=1): the first traced step's cost by kernel
				grep -q "each kernel's cost" "$log" && note "$(awk "/each kernel's cost/{p=1; print; next} p && /^  /{print; next} p{exit}" "$log")"
			done
		done
		# the decode check at depth (AB_CHECK=0 skips it): each untraced
		# arm's logits of the last 40 of 600 random ids (< 1000, in any
		# vocabulary), fed as one-row decode steps after a prefill of the
		# rest (`marlin logits --decode`), against the first arm's, by
		# logits_diff.py (2e-3 of the largest logit; any NaN fails). A build
		# whose tests passed gave NaN only past ~26 layers of this shape,
		# which the speed runs cannot show (2026-11-29, fourth session).
		dir=$(grep -ohE '"model": "[^"]+"' "$OUT"/ab$si-*.log 2>/dev/null | head -1 | cut -d'"' -f4)
		if [ "${AB_CHECK:-1}" = 1 ] && [ -d "$dir" ]; then
			ids=$(python3 -c "import random; r = random.Random(5); print(','.join(str(r.randrange(1000)) for _ in range(600)))")
			files=()
			for ai in "${!arms[@]}"; do
				IFS='|' read -r bin envset <<<"${arms[$ai]}"
				[[ "$envset" == *TRACE* ]] && continue
				f="$OUT/logits$si-$ai.json"
				run "logits $model $bin $envset" 20 120 "$OUT/logits$si-$ai.err" bash -c "env $envset ./gpubin/$bin logits '$dir' --ids $ids --decode 40 --last 40 --json --device cuda >'$f'"
				[ -s "$f" ] && files+=("$f") # (a skipped or failed run leaves none: its log says why)
			done
			[ ${#files[@]} -gt 1 ] && note "$(python3 scripts/device/logits_diff.py "${files[@]}" 2>&1 | cut -c1-160)"
			rm -f "${files[@]}"
		fi
		if want profile; then
			MARLIN_CUDA_PROFILE=1 run "profile $model" 30 90 "$OUT/profile-$model.log" ./gpubin/marlin bench --synthetic "$model" --format "$fmt:$grp" $extra --device cuda --prompt 512 --gen 16 --membw=false
			grep -A24 "kernel times" "$OUT/profile-$model.log" | head -26
		fi
		want moe || [ "${KEEP_SYNTH:-0}" = 1 ] || rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}"/marlin/synthetic/glm* # (moe uses it, then removes it)
	done
fi

# 3b. mixtures of experts: the GLM-4.7-Flash shape with INT4 g128 experts
# (batch 1 and 32, prefill of 2K tokens), its EXL3 4-bit variant, a BF16
# reference of 12 of its 47 layers (the whole BF16 model, 60 GB, does not
# fit the machine's disk beside the others), and Mixtral-8x7B at INT4
# (MOE_FORMATS, MOE_BF16=0 and MOE_MIXTRAL=0 choose fewer)
if want moe; then
	for f in ${MOE_FORMATS:-int4:128 exl3:4}; do
		run "moe-$f" 60 300 "$OUT/moe-${f%%:*}.log" ./gpubin/marlin bench --synthetic glm4.7-flash --format $f --device cuda --prompt 2048 --gen 32 --batch 32 --membw=false --json
		if want profile; then
			MARLIN_CUDA_PROFILE=1 run "profile moe-$f" 30 90 "$OUT/profile-moe-${f%%:*}.log" ./gpubin/marlin bench --synthetic glm4.7-flash --format $f --device cuda --prompt 512 --gen 16 --batch 32 --membw=false
			grep -A14 "kernel times" "$OUT/profile-moe-${f%%:*}.log" | head -34
		fi
		rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}"/marlin/synthetic/glm*
	done
	[ "${MOE_BF16:-1}" = 1 ] && run moe-bf16 40 200 "$OUT/moe-bf16.log" ./gpubin/marlin bench --synthetic glm4.7-flash --layers 12 --format bf16 --device cuda --prompt 2048 --gen 32 --batch 32 --membw=false --json
	rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}"/marlin/synthetic/glm*
	[ "${MOE_MIXTRAL:-1}" = 1 ] && run mixtral 40 300 "$OUT/mixtral.log" ./gpubin/marlin bench --synthetic mixtral-8x7b --format int4:128 --device cuda --prompt 512 --gen 32 --membw=false --json
	grep -hE 'decode_tokens|prefill_tokens|batch|"model"|Error|error' "$OUT"/moe-*.log "$OUT/mixtral.log" | head -40
fi

# 3c. kernel times of one decode step (CUDA events around every launch,
# graphs off): the Llama-3-8B shape at INT4 with the 4-bit head
if want profile && ! { want ab && ab_ready; }; then
	MARLIN_CUDA_PROFILE=1 run "profile llama3-8b" 30 150 "$OUT/profile-8b.log" ./gpubin/marlin bench --synthetic llama3-8b --format int4:128 --head-bits 4 --device cuda --prompt 512 --gen 16 --membw=false
	grep -A16 "kernel times" "$OUT/profile-8b.log"
fi

# 3d. where each kernel's time goes, by code region: Nsight Compute's
# warp-state sampling (--section SourceCounters) of NCU_COUNT launches
# (default 1) after NCU_SKIP (default 200) of each kernel matching
# NCU_KERNELS (a regex, default GLM's per-layer kernels) in NCU_CMD
# (default: a 4-layer GLM-4.7-Flash decode at INT4 after a 2K prompt),
# summed over runs of equally executed instructions by ncu_regions.py
# (NCU_EXTRA: more ncu flags, e.g. --filter-mode per-launch-config)
if want ncu; then
	ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1 || true)
	cmd=${NCU_CMD:-./gpubin/marlin bench --synthetic glm4.7-flash --layers 4 --format int4:128 --device cuda --prompt 2048 --gen 8 --membw=false}
	if [ -n "$ncu" ]; then
		$cmd >/dev/null 2>&1 # (the synthetic checkpoint first, outside the profile)
		run ncu 30 300 "$OUT/ncu.log" "$ncu" -k "regex:${NCU_KERNELS:-attn_mla|route_mv|moe_|head_mv|mla_prologue|qmv_}" --launch-skip "${NCU_SKIP:-200}" --launch-count "${NCU_COUNT:-1}" ${NCU_EXTRA:-} --section SourceCounters --section SpeedOfLight -o "$OUT/regions" $cmd
		"$ncu" -i "$OUT/regions.ncu-rep" --page source --csv --print-source sass >"$OUT/regions.csv" 2>&1
		python3 scripts/device/ncu_regions.py "$OUT/regions.csv" | tee "$OUT/regions.txt" | head -120
		rm -f "$OUT/regions.csv"
	else
		note "ncu: skipped (no Nsight Compute)"
	fi
fi

if want run; then
# 4. the embedded model, greedy, on both devices
run run-cuda 10 30 "$OUT/run.log" ./gpubin/marlin run "ROMEO:" -n 48 --temperature 0 --device cuda -v
run run-cpu 10 30 "$OUT/run-cpu.log" ./gpubin/marlin run "ROMEO:" -n 48 --temperature 0 --device cpu
if [ -s "$OUT/run.log" ] && [ -s "$OUT/run-cpu.log" ]; then
	if diff <(grep -v -E '^(loaded|prompt )' "$OUT/run.log") <(grep -v -E '^(loaded|prompt )' "$OUT/run-cpu.log") >/dev/null; then
		note "marlin run: cuda and cpu texts identical"
	else
		note "marlin run: cuda and cpu texts DIFFER"
	fi
	cat "$OUT/run.log"
fi

note "--device auto: runs $(./gpubin/marlin run --ids 1,2,3 -n 2 --temperature 0 --device auto -v 2>&1 | grep -o ' on [a-z0-9:]* in' | head -1)"

fi
# 5. memcheck of the op tests (MEMCHECK_RUN: another -test.run pattern)
if want memcheck && [ -n "$sanitizer" ]; then
	run memcheck 40 200 "$OUT/memcheck.log" bash -c "cd backend/cuda && '$sanitizer' --tool memcheck --error-exitcode 9 ../../gpubin/cuda.test -test.v -test.run '${MEMCHECK_RUN:-TestOps|TestQMatMul$|TestXTiles|TestTileClusters|TestGraphSegments|TestFusedOps|TestExpertsOnDevice|TestHeadsOnDevice|TestMLAAttentionLong|TestMLAPrologue|TestExpertsAdd|TestSample}' -test.timeout 170s"
	grep -E '^(    --- |--- |=========)' "$OUT/memcheck.log" | tail -14
elif want memcheck; then
	note "memcheck: skipped (no compute-sanitizer)"
fi

# 6. shared-memory races in the tiled kernels (RACE_RUN overrides the tests)
if want racecheck && [ -n "$sanitizer" ]; then
	run racecheck 30 120 "$OUT/racecheck.log" bash -c "cd backend/cuda && '$sanitizer' --tool racecheck --error-exitcode 9 ../../gpubin/cuda.test -test.run '${RACE_RUN:-TestOps/(MatMul|RMSNorm|Attention)}' -test.timeout 120s"
	tail -3 "$OUT/racecheck.log"
fi

echo "== summary ($((SECONDS - start)) s)"
cat "$summary"
# one archive of the logs (the device tool brings back at most 8 files)
(cd "$OUT" && tar czf logs.tgz ./*.log && rm -f ./*.log)
