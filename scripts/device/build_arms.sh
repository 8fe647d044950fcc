#!/usr/bin/env bash
# build_arms.sh — the binaries of an ab comparison, built here for
# cuda_check.sh on the GPU machine (which has no Go): `marlin` of each
# commit as gpubin/NAME, all of them in gpubin/pair.tar.xz (compressed
# together they take little more room than one), and the test binary of
# the last commit as gpubin/cuda.test.xz. Each arm is NAME=REF (a branch,
# tag or commit; the working tree itself with REF "."):
#
#   bash scripts/device/build_arms.sh marlin-base=main marlin-pre3=attn-pre3 marlin=decode-next
#
# then, on the GPU machine, AB_ARMS='marlin-base|;marlin-pre3|;marlin|'.
# One arm must be named marlin (cuda_check.sh's other steps run it).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -gt 0 ] || { echo "usage: $0 NAME=REF ... (one NAME is marlin)" >&2; exit 2; }
[[ " $* " == *" marlin="* ]] || { echo "$0: one arm must be named marlin" >&2; exit 2; }
mkdir -p gpubin
rm -f gpubin/pair.tar.xz gpubin/cuda.test gpubin/cuda.test.xz
names=()
commits=()
for arm in "$@"; do
	name=${arm%%=*} ref=${arm#*=}
	[[ "$name" == marlin* && "$name" != "$arm" ]] || { echo "$arm: want NAME=REF, NAME starting with marlin" >&2; exit 2; }
	src=. tmp=
	if [ "$ref" != . ]; then
		tmp=$(mktemp -d)
		src=$tmp/tree
		git worktree add -q --detach "$src" "$ref"
	fi
	(cd "$src" && CGO_ENABLED=0 go build -ldflags='-s -w' -o "$OLDPWD/gpubin/$name" ./cmd/marlin)
	if [ "$arm" == "${!#}" ]; then # the last arm: the test binary too
		(cd "$src" && CGO_ENABLED=0 go test -c -ldflags='-s -w' -o "$OLDPWD/gpubin/cuda.test" ./backend/cuda)
	fi
	commits+=("$name=$(git -C "$src" rev-parse --short HEAD)")
	[ -z "$tmp" ] || { git worktree remove --force "$src" && rmdir "$tmp"; }
	names+=("$name")
done
xz -9 -T1 gpubin/cuda.test
(cd gpubin && tar -cf - "${names[@]}" | xz -9e -T1 >pair.tar.xz && rm -f "${names[@]}")
echo "${commits[*]}" >gpubin/commit
ls -la gpubin
