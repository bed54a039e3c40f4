#!/usr/bin/env bash
# CUDA from `npm install` alone, checked end to end on a GPU machine in one run:
#
#   (a) builds the prebuild for the torch of this machine's python3 (scripts/prebuild.js: one
#       build of native/prebuilds.json) into prebuilds/, and copies it to $OUT to be committed;
#   (b) npm pack;
#   (c) in an empty project, with a PATH holding no compiler, cmake or make, and npm pointed at
#       a registry on 127.0.0.1 that serves the dependencies from the carried node_modules
#       (scripts/device/offline-registry.js; no network): npm install ./hdlm-<version>.tgz,
#       which must use the prebuild and compile nothing;
#   (d) npx hdlm info, then npx hdlm generate --device <device> with the shipped demo model, and
#       the time from the start of npm install to that first sample;
#   (e) the GPU suite's parity test (test/gpu/80-cuda-parity.test.js) run against the installed
#       package (CUDA only; fixtures with weights from HDLM_FIXTURES).
#
#   bash scripts/device/cuda-install-check.sh [cuda|cpu]        (default cuda)
#
# Run from the checkout root with node, npm and node_modules present. A machine without Node.js
# may carry a bundle that puts them there: when node is not on PATH and the checkout holds
# .device/setup.sh (an optional, untracked bundle script), it is sourced. With `cpu` it checks the same on a CPU
# machine (Debian's libtorch), where (e) is skipped. Every step prints "== [time] step"; the
# first failure stops the run with "FAILED: ..." and a non-zero exit status.
#
# REUSE_PREBUILD=1 skips the build of (a) when prebuilds/ already has one (for a second run).
#
# Writes to $OUT (a temp folder when unset): prebuild.log (the build's output), prebuilds/ (the new prebuild folder, the library
# opener and manifest.json, as in the package), install-check.log (this run's summary lines) and
# hdlm-info.json (npx hdlm info --json in the installed project).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.."
repo=$PWD
device=${1:-cuda}
case "$device" in cuda | cpu) ;; *) echo "usage: $0 [cuda|cpu]" >&2; exit 2 ;; esac
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
summary=$OUT/install-check.log
: >"$summary"
since() { node -e 'process.stdout.write((Date.now() / 1000 - Number(process.argv[1])).toFixed(1))' "$1"; }
t0=$(date +%s.%N)
step() { printf '\n== [%ss] %s\n' "$(since "$t0" 2>/dev/null || echo '?')" "$*"; }
note() { echo "$*" | tee -a "$summary"; }
die() { echo "FAILED: $*" | tee -a "$summary" >&2; exit 1; }

if ! command -v node >/dev/null && [ -f .device/setup.sh ]; then
  step "environment: source .device/setup.sh"
  # shellcheck disable=SC1091
  source .device/setup.sh
  set -euo pipefail
fi
command -v node >/dev/null || die "node is not on PATH (and no .device/setup.sh)"
[ -d node_modules ] || die "no node_modules (carry .device/ with node_modules.tar.xz, or npm ci)"
note "node $(node --version), npm $(npm --version), $(nproc) cores, python3: $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || echo 'no torch')"

# ---------------------------------------------------------------------------------------------
step "(a) the prebuild for this machine's torch"
npm run build:ts >/dev/null || die "npm run build:ts"
start=$(date +%s)
if [ "${REUSE_PREBUILD:-0}" = 1 ] && [ -f prebuilds/manifest.json ]; then
  echo "REUSE_PREBUILD=1: using the prebuild already in prebuilds/"
else
  set +e
  nice node scripts/prebuild.js >"$OUT/prebuild.log" 2>&1
  rc=$?
  set -e
  grep -E '^hdlm prebuild|error:|Error' "$OUT/prebuild.log" | head -40 || true
  [ "$rc" -eq 0 ] || { tail -60 "$OUT/prebuild.log"; die "scripts/prebuild.js (exit $rc; log: $OUT/prebuild.log)"; }
fi
id=$(node -e "
  const m = require('./prebuilds/manifest.json');
  const e = m.prebuilds.filter((p) => p.built && p.built.libtorchDir).sort((a, b) => String(b.built.at).localeCompare(String(a.built.at)))[0];
  process.stdout.write(e ? e.id : '');")
[ -n "$id" ] || die "prebuilds/manifest.json lists no prebuild built here"
entry=prebuilds/linux-x64/$id/hdlm.libtorch.json
cuda=$(node -p "require('./$entry').libtorch.cuda")
if [ "$device" = cuda ] && [ "$cuda" = null ]; then die "the prebuild $id is a CPU build: this machine's torch has no CUDA"; fi
note "prebuild $id in $(( $(date +%s) - start )) s: $(node -p "const e=require('./$entry'); e.needed.join(', ') + ' (' + (require('fs').statSync('prebuilds/' + e.file).size/1e6).toFixed(1) + ' MB)'")"
mkdir -p "$OUT/prebuilds/linux-x64"
cp -r "prebuilds/linux-x64/$id" "$OUT/prebuilds/linux-x64/"
cp prebuilds/linux-x64/hdlm_libloader.node "$OUT/prebuilds/linux-x64/"
cp prebuilds/manifest.json "$OUT/prebuilds/"

# ---------------------------------------------------------------------------------------------
step "(b) npm pack"
work=$(mktemp -d)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; die "npm pack"; }
tgz=$(ls "$work"/hdlm-*.tgz)
tar -tzf "$tgz" >"$work/contents" || die "tar -tzf $tgz"
grep -qx "package/prebuilds/linux-x64/$id/hdlm.node" "$work/contents" || die "$tgz does not ship prebuilds/linux-x64/$id/hdlm.node"
grep -qx "package/prebuilds/manifest.json" "$work/contents" || die "$tgz does not ship prebuilds/manifest.json"
note "$(basename "$tgz"): $(du -h "$tgz" | cut -f1)"

# ---------------------------------------------------------------------------------------------
step "(c) npm install in an empty project: no compiler, cmake or make on PATH, no network"
bin=$work/bin
mkdir -p "$bin"
for tool in node npm npx; do ln -s "$(readlink -f "$(command -v $tool)")" "$bin/$tool"; done
# python3 through a wrapper, not a link: a virtualenv's python finds its environment from its own path
if command -v python3 >/dev/null; then printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" >"$bin/python3" && chmod +x "$bin/python3"; fi
for tool in sh bash env cat ls mkdir rm cp mv ln chmod uname tar gzip grep sed head tail date dirname basename readlink realpath sort tr cut wc tee sleep; do
  p=$(command -v $tool || true)
  if [ -n "$p" ]; then ln -s "$p" "$bin/$tool"; fi
done
for tool in cc gcc g++ c++ clang clang++ cmake make ninja; do
  if PATH=$bin command -v $tool >/dev/null 2>&1; then die "$tool is on the stripped PATH"; fi
done
node scripts/device/offline-registry.js "$repo" "$work/port" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.2; done
[ -s "$work/port" ] || { cat "$work/registry.log"; die "the offline registry did not start"; }
cat "$work/registry.log"
registry=http://127.0.0.1:$(cat "$work/port")/
project=$work/project
mkdir -p "$project"
echo '{ "name": "hdlm-cuda-install-check", "version": "1.0.0", "private": true }' >"$project/package.json"
# the user's environment: torch found through python3 (no Torch_DIR / CMAKE_PREFIX_PATH / LIBTORCH)
run_env=(env -i "PATH=$bin" "HOME=$work/home" "TMPDIR=${TMPDIR:-/tmp}" "npm_config_registry=$registry"
  "npm_config_cache=$work/npm-cache" "npm_config_audit=false" "npm_config_fund=false" "npm_config_update_notifier=false"
  "HDLM_CACHE=$work/hdlm-cache" "HF_HUB_CACHE=$work/hub" "HF_HUB_OFFLINE=1")
for v in HDLM_FIXTURES CUDA_VISIBLE_DEVICES NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS; do
  if [ -n "${!v:-}" ]; then run_env+=("$v=${!v}"); fi
done
mkdir -p "$work/home"
install_start=$(date +%s.%N)
(cd "$project" && "${run_env[@]}" npm install "$tgz" --foreground-scripts) >"$work/install.log" 2>&1 || { cat "$work/install.log"; die "npm install $tgz"; }
install_s=$(since "$install_start")
grep -E '^hdlm: ' "$work/install.log" | tee -a "$summary"
grep -q "hdlm: using the prebuilt binary prebuilds/linux-x64/$id/hdlm.node" "$work/install.log" || { cat "$work/install.log"; die "the install did not use the prebuild $id"; }
[ ! -e "$project/node_modules/hdlm/build" ] || die "the install compiled something (node_modules/hdlm/build exists)"
note "npm install: $install_s s, nothing compiled"

# ---------------------------------------------------------------------------------------------
step "(d) npx hdlm info; npx hdlm generate --device $device"
(cd "$project" && "${run_env[@]}" npx --no-install hdlm info) || die "npx hdlm info"
(cd "$project" && "${run_env[@]}" npx --no-install hdlm info --json) >"$OUT/hdlm-info.json" || die "npx hdlm info --json"
node -e "
  const i = require('$OUT/hdlm-info.json');
  const fail = (m) => { console.error('FAILED: ' + m); process.exit(1); };
  if (i.binary.kind !== 'prebuild' || i.binary.prebuild !== '$id') fail('hdlm info: binary ' + JSON.stringify(i.binary));
  if ('$device' === 'cuda' && !(i.cudaCompiled && i.cudaDeviceCount > 0)) fail('hdlm info: no CUDA device (' + i.cudaDeviceCount + ')');
  if (!i.libtorch || !i.binary.libtorch || require('fs').realpathSync(i.libtorch.dir) !== require('fs').realpathSync(i.binary.libtorch.libDir)) fail('hdlm info: runs on ' + JSON.stringify(i.libtorch) + ', chosen for ' + JSON.stringify(i.binary.libtorch));
  console.log('runs on ' + i.libtorch.file + ' (found through ' + i.binary.libtorch.source + '); opened ' + i.binary.opened.length + ' libraries');
" | tee -a "$summary" || die "hdlm info does not show the prebuild on the located libtorch"
(cd "$project" && "${run_env[@]}" npx --no-install hdlm generate "The future" --device "$device" --steps 16 --context-length 64 --seed 1) >"$work/generate.out" 2>"$work/generate.err" || { cat "$work/generate.err"; die "npx hdlm generate --device $device"; }
first_s=$(since "$install_start")
cat "$work/generate.out"
grep -q '^The future' "$work/generate.out" || die "hdlm generate printed no text starting with the prompt"
note "npm install start -> first $device sample: $first_s s"

# ---------------------------------------------------------------------------------------------
if [ "$device" = cuda ]; then
  step "(e) the GPU suite's parity test against the installed package"
  installed=$project/node_modules/hdlm
  mkdir -p "$installed/test"
  cp -r test/gpu test/helpers test/fixtures "$installed/test/"
  (cd "$installed" && "${run_env[@]}" node "$repo/node_modules/mocha/bin/mocha.js" --no-config --timeout 600000 test/gpu/80-cuda-parity.test.js) 2>&1 | tee "$work/parity.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "test/gpu/80-cuda-parity.test.js from the installed package"
  grep -q 'skipped' "$work/parity.log" && note "parity: some cases SKIPPED (see above: HDLM_FIXTURES needs tiny-epsilon / brown-epsilon with weights)"
  note "parity: $(grep -E '^\s+[0-9]+ (passing|pending|failing)' "$work/parity.log" | tr -s ' ' | tr '\n' ' ')"
else
  step "(e) skipped: the GPU suite needs CUDA"
fi

step "all steps passed"
cat "$summary"
echo "files in $OUT: $(cd "$OUT" && find . -type f | sort | tr '\n' ' ')"
