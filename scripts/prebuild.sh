#!/usr/bin/env bash
# The prebuilt engines the package ships, so that installing retro-ts needs no compiler: the portable kernel
# (no OpenBLAS) built twice — prebuilds/linux-x64/ for x86-64-v3 (AVX2 + FMA: every recent x86-64) and
# prebuilds/linux-x64-v4/ for x86-64-v4 (AVX-512), which the loader picks where the CPU has it. A source build
# uses -march=native. libstdc++ and libgcc are linked in; libgomp (OpenMP's runtime, GPL with the GCC runtime
# library exception; its static archive cannot go into a shared object) is copied beside each binary and found
# through an $ORIGIN rpath, as Python wheels bundle it: the binaries need only glibc. Run by `npm pack` (prepack);
# a machine where none loads compiles from source at install (native/install.cjs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { echo "prebuild: linux-x64 only (this is $(uname -s)-$(uname -m))"; exit 0; }
tmp=$(mktemp -d /tmp/retro-prebuild-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r binding.gyp native "$tmp/"
echo '{ "name": "retro-prebuild", "private": true, "scripts": { "gyp": "node-gyp rebuild" } }' > "$tmp/package.json"
ln -s "$PWD/node_modules" "$tmp/node_modules"

build() { # march, output folder
  # `npm run` puts npm's own node-gyp on the PATH
  (cd "$tmp" && RETRO_BLAS=none RETRO_MARCH="$1" RETRO_STATIC_RUNTIME=1 npm run --silent gyp >build.log 2>&1) \
    || { cat "$tmp/build.log"; exit 1; }
  rm -rf "$2" && mkdir -p "$2"
  local bin="$2/retro_engine_portable.node"
  cp "$tmp/build/Release/retro_engine_portable.node" "$bin"
  local gomp
  gomp=$(ldd "$bin" | awk '/libgomp/ { print $3 }')
  [ -n "$gomp" ] && cp -L "$gomp" "$2/libgomp.so.1"
  # what it needs at run time: glibc, and the libgomp beside it
  if ldd "$bin" | grep -E "libstdc\+\+|libgcc_s"; then echo "prebuild: $bin links the C++ runtime dynamically"; exit 1; fi
  ldd "$bin" | grep -q "libgomp.so.1 => $PWD/$2/libgomp.so.1" \
    || { echo "prebuild: libgomp is not taken from beside $bin"; ldd "$bin"; exit 1; }
  echo "prebuild: $bin ($1, $(stat -c %s "$bin") bytes)"
}
build x86-64-v3 prebuilds/linux-x64
build x86-64-v4 prebuilds/linux-x64-v4
