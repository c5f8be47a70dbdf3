#!/usr/bin/env bash
# Style check: every C/CUDA source and header git knows of (tracked, plus new files that are not
# ignored: git ls-files --cached --others --exclude-standard '*.c' '*.h' '*.cu' '*.cuh') must be
# clang-format clean with the checked-in .clang-format. Uses clang-format-14 when it is
# installed (the version the tree was formatted with, what CI installs), else clang-format, and
# prints the version it used. Lists the offending files and exits 1 when any is not clean;
# exits 2 when no clang-format or no git checkout is available.
#
# Fix a file with: clang-format-14 -i FILE
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if command -v clang-format-14 >/dev/null 2>&1; then
	fmt=clang-format-14
elif command -v clang-format >/dev/null 2>&1; then
	fmt=clang-format
else
	echo "check-style: clang-format not found (install clang-format-14)" >&2
	exit 2
fi
echo "check-style: $("$fmt" --version)"
case "$("$fmt" --version)" in
*" version 14."*) ;;
*) echo "check-style: warning: the tree is formatted with clang-format 14; other versions may" \
	"disagree" >&2 ;;
esac

if ! files=$(git ls-files --cached --others --exclude-standard -- '*.c' '*.h' '*.cu' '*.cuh' |
	sort -u); then
	echo "check-style: not a git checkout: cannot list tracked files" >&2
	exit 2
fi

checked=0
bad=()
while IFS= read -r f; do
	[ -n "$f" ] || continue
	[ -f "$f" ] || continue # tracked but deleted in the work tree
	checked=$((checked + 1))
	if ! "$fmt" --style=file --dry-run -Werror "$f" >/dev/null 2>&1; then
		bad+=("$f")
	fi
done <<<"$files"

if [ ${#bad[@]} -gt 0 ]; then
	echo "check-style: ${#bad[@]} of $checked files are not clang-format clean:"
	printf '  %s\n' "${bad[@]}"
	echo "check-style: see the changes with: $fmt --dry-run FILE; fix with: $fmt -i FILE"
	exit 1
fi
echo "check-style: $checked files clean"
