#!/usr/bin/env bash
# Copy Criterion's shared library and the libraries it needs that the GPU machine's image lacks
# into .carry/lib (git-ignored), so that test/gpu/run-on-gpu.sh can run the GPU test binaries
# built here. Carry the folder with the build: run(carry: ["build-test", ".carry"]).
# The list is what `ldd build-test/test/gpu/test_gpu_codec` resolves here and the H100 image did
# not have (Ubuntu 24.04 with CUDA 13 and PyTorch, 2026-11).
set -euo pipefail
cd "$(dirname "$0")/../.."
exe=${1:-build-test/test/gpu/test_gpu_codec}
want='libcriterion|libnanomsg|libgit2|libhttp_parser|libssh2|libmbed|libffi|libgssapi_krb5|libkrb5|libk5crypto|libcom_err|libkeyutils'
mkdir -p .carry/lib
ldd "$exe" | awk '/=> \// {print $3}' | grep -E "/($want)[^/]*$" | while read -r lib; do
	cp -L "$lib" .carry/lib/
done
ls .carry/lib
