#!/usr/bin/env bash
# Builds the linux-x64 CUDA prebuild against a libtorch zip from pytorch.org, and packs it as a
# release asset (it is NOT put into the npm package, which ships the CPU prebuild: both are
# prebuilds/linux-x64/hdlm.node).
#
#   scripts/prebuild-cuda.sh [zip-url-or-file]
#
#   LIBTORCH_URL   the zip (default below: libtorch 2.5.1 + CUDA 12.4, C++11 ABI)
#   LIBTORCH_DIR   where it is unpacked, default /opt/libtorch. The prebuild's RUNPATH points at
#                  $LIBTORCH_DIR/lib, so users unpack the same zip there (or put its lib/ on
#                  LD_LIBRARY_PATH); hdlm checks the version, CUDA and ABI at load time.
#   OUT_DIR        where the asset goes, default dist-prebuilds/
#   CUDA_HOME      the CUDA toolkit (default /usr/local/cuda): its include/ is added for the
#                  CUDA headers libtorch's headers pull in.
#
# Needs: node >= 20.17 with npm, g++, make, python3 (node-gyp), curl, unzip; no GPU. Run from
# a clone after `npm ci --ignore-scripts` (prebuildify and node-gyp come from devDependencies
# and npm). The GitHub workflow .github/workflows/prebuild.yml runs it in an nvidia/cuda
# -devel container. Users install the asset with:
#   mkdir -p ~/hdlm-cuda && tar -xzf hdlm-<version>-linux-x64-<libtorch>.tar.gz -C ~/hdlm-cuda
#   export HDLM_PREBUILD=~/hdlm-cuda      # node-gyp-build loads prebuilds/ from there
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

url=${1:-${LIBTORCH_URL:-https://download.pytorch.org/libtorch/cu124/libtorch-cxx11-abi-shared-with-deps-2.5.1%2Bcu124.zip}}
dest=${LIBTORCH_DIR:-/opt/libtorch}
out=${OUT_DIR:-dist-prebuilds}
cuda_home=${CUDA_HOME:-/usr/local/cuda}
say() { printf 'prebuild-cuda: %s\n' "$*"; }

for tool in node npm g++ make python3 unzip; do
  command -v "$tool" >/dev/null || { say "$tool is missing" >&2; exit 1; }
done

if [ ! -f "$dest/lib/libtorch_cuda.so" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if [ -f "$url" ]; then zip=$url; else
    command -v curl >/dev/null || { say "curl is missing" >&2; exit 1; }
    say "downloading $url"
    curl -fL --retry 3 -o "$work/libtorch.zip" "$url"
    zip=$work/libtorch.zip
  fi
  say "unpacking into $dest"
  unzip -q "$zip" -d "$work/unpacked"          # the zip holds one folder, libtorch/
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest"
  mv "$work/unpacked/libtorch" "$dest"
fi
[ -f "$dest/lib/libtorch_cuda.so" ] || { say "$dest is not a CUDA libtorch (no lib/libtorch_cuda.so)" >&2; exit 1; }
say "libtorch $(cat "$dest/build-version" 2>/dev/null || echo '?') in $dest"

[ -d node_modules/prebuildify ] || npm ci --ignore-scripts
if [ -d "$cuda_home/include" ]; then export CXXFLAGS="${CXXFLAGS:-} -isystem $cuda_home/include"; fi
LIBTORCH=$dest node scripts/prebuild.js

version=$(node -p "require('./package.json').version")
torch_tag=$(node -p "const m=require('./prebuilds/linux-x64/hdlm.libtorch.json').libtorch; 'libtorch' + m.version.replace(/\+.*/, '') + (m.cuda ? '-cu' + (m.cudaVersion || '').replace('.', '') : '-cpu')")
node -e "const m=require('./prebuilds/linux-x64/hdlm.libtorch.json'); if (!m.libtorch.cuda) { console.error('prebuild-cuda: the prebuild is not a CUDA build'); process.exit(1); }"
mkdir -p "$out"
asset="$out/hdlm-v$version-linux-x64-$torch_tag.tar.gz"
tar -czf "$asset" prebuilds/linux-x64/hdlm.node prebuilds/linux-x64/hdlm.libtorch.json
say "wrote $asset"
