#!/usr/bin/env bash
# The prebuilt engine the package ships (prebuilds/linux-x64/retro_engine_portable.node), so that installing
# retro-ts needs no compiler. Built for a CPU baseline every recent x86-64 has (x86-64-v3: AVX2 + FMA; a source build
# uses -march=native), without OpenBLAS, and with libstdc++, libgcc and libgomp linked in, so that it needs only
# glibc. Run by `npm pack` (prepack); a machine where it does not load compiles from source at install
# (native/install.cjs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { echo "prebuild: linux-x64 only (this is $(uname -s)-$(uname -m))"; exit 0; }
tmp=$(mktemp -d /tmp/retro-prebuild-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -r binding.gyp native "$tmp/"
echo '{ "name": "retro-prebuild", "private": true, "scripts": { "gyp": "node-gyp rebuild" } }' > "$tmp/package.json"
ln -s "$PWD/node_modules" "$tmp/node_modules"
# `npm run` puts npm's own node-gyp on the PATH
(cd "$tmp" && RETRO_BLAS=none RETRO_MARCH=x86-64-v3 RETRO_STATIC_RUNTIME=1 npm run --silent gyp >build.log 2>&1) \
  || { cat "$tmp/build.log"; exit 1; }
mkdir -p prebuilds/linux-x64
cp "$tmp/build/Release/retro_engine_portable.node" prebuilds/linux-x64/
# what it needs at run time: glibc only
if ldd prebuilds/linux-x64/retro_engine_portable.node | grep -E "libstdc\+\+|libgomp|libgcc_s"; then
  echo "prebuild: the binary still links a compiler runtime dynamically"; exit 1
fi
echo "prebuild: prebuilds/linux-x64/retro_engine_portable.node ($(stat -c %s prebuilds/linux-x64/retro_engine_portable.node) bytes)"
