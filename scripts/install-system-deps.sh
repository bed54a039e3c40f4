#!/usr/bin/env bash
# Installs what building and running hdlm needs on Debian 12 / Ubuntu (apt):
#   cmake g++ make python3   the native build (cmake-js; python3 is only for node-gyp)
#   libtorch-dev             libtorch headers, CMake config and shared libraries (CPU)
#   libopenblas0-pthread     an optimized BLAS/LAPACK for libtorch (it would otherwise run
#                            on the slow reference BLAS)
#   clang-format             the C++ style check of native/ (npm run lint:native); not needed
#                            to build or run hdlm
# python3-torch is NOT needed and not installed. Node.js (>= 20.17) is not installed either:
# Debian's nodejs is too old; use nodejs.org, NodeSource or nvm.
#
# Safe to run again: it installs only what is missing (no apt-get update when nothing is).
# Runs apt through sudo unless already root. On other systems it prints what to install
# instead and exits 1.
set -euo pipefail

PACKAGES=(cmake g++ make python3 libtorch-dev libopenblas0-pthread clang-format)

say() { printf 'install-system-deps: %s\n' "$*"; }

other_system() {
  cat >&2 <<'EOF'
install-system-deps: this script supports Debian/Ubuntu (apt-get) only. Install instead:
  - cmake >= 3.19, a C++17 compiler (g++ or clang++), make, python3
  - libtorch (CPU or CUDA): either your distribution's package, a Python `pip install torch`
    (then `python3 -c "import torch"` must work, or set Torch_DIR), or a libtorch zip from
    https://pytorch.org unpacked anywhere, with LIBTORCH=/path/to/libtorch
  - an optimized BLAS (OpenBLAS) when your libtorch uses the system BLAS
  - Node.js >= 20.17
Then run: npm ci   (see README.md, "Install")
EOF
  exit 1
}

if [ "$(uname -s)" != Linux ] || ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
  other_system
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  say "not root and sudo is not installed: run this script as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]; }

missing=()
for p in "${PACKAGES[@]}"; do
  if installed "$p"; then say "already installed: $p"; else missing+=("$p"); fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  say "installing: ${missing[*]}"
  "${SUDO[@]}" apt-get update -q
  # libtorch-dev exists from Debian 12 (bookworm) and Ubuntu 23.04 on.
  if [ -z "$(apt-cache policy libtorch-dev 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)' || true)" ] \
     && ! installed libtorch-dev; then
    say "this release has no libtorch-dev package (it needs Debian >= 12 or Ubuntu >= 23.04)." >&2
    say "install the rest with: sudo apt-get install cmake g++ make python3 libopenblas0-pthread clang-format" >&2
    say "then unpack a libtorch zip from https://pytorch.org and set LIBTORCH=/path/to/libtorch" >&2
    exit 1
  fi
  # Recommends are not needed: libtorch1.13 only recommends a BLAS, which is listed above
  # (in the same transaction, apt takes OpenBLAS for libtorch's libblas.so.3 dependency).
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "nothing to install"
fi

# libtorch loads libblas.so.3 / liblapack.so.3 through the alternatives system. OpenBLAS
# registers with priority 100 and the reference implementations (libblas3, liblapack3) with
# 10, so in auto mode OpenBLAS wins; only a manual choice of the reference BLAS is switched.
for lib in libblas.so.3 liblapack.so.3; do
  for link in /etc/alternatives/"$lib"-*; do
    [ -e "$link" ] || continue
    name=$(basename "$link")
    current=$(readlink -f "$link")
    case "$current" in
      *openblas*) say "$name -> $current" ;;
      */blas/*|*/lapack/*)
        best=$(update-alternatives --list "$name" | grep openblas-pthread | head -n1 || true)
        if [ -n "$best" ]; then
          "${SUDO[@]}" update-alternatives --set "$name" "$best"
          say "$name: switched from the reference implementation to $best"
        else
          say "$name -> $current (reference BLAS/LAPACK: slow; OpenBLAS is not registered)" >&2
        fi ;;
      *) say "$name -> $current (left as chosen)" ;;
    esac
  done
done

torch_version=$(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || true)
say "libtorch-dev ${torch_version:-?}, $(cmake --version | head -n1), $(g++ --version | head -n1)"

if ! command -v node >/dev/null 2>&1; then
  say "note: Node.js is not installed; hdlm needs Node.js >= 20.17 (nodejs.org, NodeSource or nvm)" >&2
elif ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=17)?0:1)'; then
  say "note: Node.js $(node --version) is too old; hdlm needs >= 20.17" >&2
fi
say "done; next: npm ci (or npm install hdlm)"

# Headless Chromium for the test of `hdlm serve`'s page (test/95-server-page.test.js drives it
# with puppeteer-core; no browser is downloaded). Tests only: HDLM_NO_TEST_BROWSER=1 skips it.
if [ "${HDLM_NO_TEST_BROWSER:-0}" != 1 ]; then
  if installed chromium; then
    say "already installed: chromium (test browser)"
  else
    say "installing: chromium (test browser; HDLM_NO_TEST_BROWSER=1 skips it)"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends chromium
  fi
fi
