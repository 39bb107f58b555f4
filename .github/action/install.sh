#!/bin/sh
# Installs meshroll for the GitHub Action (action.yml): the released binary of the action's
# own ref, checked against the release's checksums file, or else a build from the action's
# source. POSIX sh, for the Linux and macOS runners.
#
#   install.sh         pick, download and verify the binary of the release at the action's ref
#   install.sh build   build meshroll from the source beside this script (a ref that is no
#                      release), once Go is set up
#
# Environment (action.yml sets the first two from github.action_repository and
# github.action_ref, which composite actions do not pass to a script by themselves):
#   ACTION_REPOSITORY  owner/name of the action, e.g. meshroll/meshroll
#   ACTION_REF         its ref: a tag (v1.2.3, v1), a branch or a commit
#   RUNNER_OS, RUNNER_ARCH, RUNNER_TEMP, GITHUB_OUTPUT   the runner's (uname and TMPDIR outside one)
#   ACTION_SERVER_URL  where the repository and its releases are; https://github.com unless
#                      set (tests, a mirror); the action never sets it
#   BINARY             install.sh build: the path to build to (the install step's output path)
#
# The release: a tag vX.Y.Z at the same commit as the ref (the ref itself when it is one;
# for v1, a branch or a commit, the newest such tag, found with git ls-remote). The archive
# meshroll_<X.Y.Z>_<linux|darwin>_<amd64|arm64>.tar.gz of that release is downloaded, its
# sha256 compared with the release's meshroll_<X.Y.Z>_checksums.txt, and only then is the
# binary unpacked and made executable. .goreleaser.yaml names the files; release_test.go
# holds the two together.
#
# Outputs (GITHUB_OUTPUT): path (the binary), source (release or build), version (the tag,
# or the ref that is built).
set -eu

# fail ends the script with an annotation; on stderr, which the runner reads for workflow
# commands as it reads stdout, so that it also works inside $(…).
fail() {
	printf '::error title=meshroll::%s\n' "$*" >&2
	exit 1
}

output() {
	if [ -n "${GITHUB_OUTPUT:-}" ]; then
		printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
	else
		printf '%s=%s\n' "$1" "$2"
	fi
}

server=${ACTION_SERVER_URL:-https://github.com}
server=${server%/}
repository=${ACTION_REPOSITORY:-}
ref=${ACTION_REF:-}
root=${RUNNER_TEMP:-${TMPDIR:-/tmp}}/meshroll

# Both become parts of URLs, file names and GITHUB_OUTPUT lines: nothing but what git and
# GitHub allow in them.
case $repository in
*[!A-Za-z0-9._/-]*) fail "ACTION_REPOSITORY is not owner/name: $repository" ;;
esac
case $ref in
*[!A-Za-z0-9._/+-]* | -*) fail "ACTION_REF is not a tag, branch or commit: $ref" ;;
esac

# platform prints <os> <arch> as the release names them, for the runner this runs on.
platform() {
	os=${RUNNER_OS:-$(uname -s)}
	arch=${RUNNER_ARCH:-$(uname -m)}
	case $os in
	Linux) os=linux ;;
	macOS | Darwin) os=darwin ;;
	*) fail "meshroll is released for Linux and macOS runners, not $os: run it in a Linux job, or with docker run (docs/ci.md)" ;;
	esac
	case $arch in
	X64 | x86_64 | amd64) arch=amd64 ;;
	ARM64 | aarch64 | arm64) arch=arm64 ;;
	*) fail "meshroll is released for x64 and ARM64 runners, not $arch" ;;
	esac
	echo "$os $arch"
}

# release prints the release tag for the action's ref, or nothing when the ref is no release.
release() {
	if [ -z "$repository" ] || [ -z "$ref" ]; then
		return 0 # a local action (uses: ./): its source is all there is
	fi
	if printf '%s\n' "$ref" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$'; then
		echo "$ref"
		return 0
	fi
	command -v git >/dev/null 2>&1 ||
		fail "git is not installed: it finds the release of $ref (a full version, @vX.Y.Z, needs none)"
	refs=$(GIT_TERMINAL_PROMPT=0 git ls-remote --tags --heads "$server/$repository") ||
		fail "cannot list the tags of $server/$repository to find the release of $ref (git ls-remote failed)"
	printf '%s\n' "$refs" | awk -v ref="$ref" '
		{
			sha = $1; name = $2
			if (substr(name, 1, 10) == "refs/tags/") {
				name = substr(name, 11)
				if (substr(name, length(name) - 2) == "^{}") peeled[substr(name, 1, length(name) - 3)] = sha
				else tag[name] = sha
			} else if (substr(name, 1, 11) == "refs/heads/") {
				head[substr(name, 12)] = sha
			}
		}
		END {
			for (t in tag) commit[t] = (t in peeled) ? peeled[t] : tag[t]
			if (ref in commit) target = commit[ref]
			else if (ref in head) target = head[ref]
			else if (ref ~ /^[0-9a-f]+$/ && length(ref) >= 7 && length(ref) <= 40) target = ref
			else exit
			for (t in commit)
				if (t ~ /^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$/ && index(commit[t], target) == 1) print t
		}' | newest
}

# newest prints the newest of the tags on stdin: a release before a pre-release.
newest() {
	sed 's/^v//' | awk '{ print (index($0, "-") ? 0 : 1) "." $0 }' |
		sort -t . -k 1,1n -k 2,2n -k 3,3n -k 4,4n | tail -n 1 | sed 's/^[01]\./v/'
}

download() { # url file
	if command -v curl >/dev/null 2>&1; then
		curl --fail --silent --show-error --location --retry 3 --output "$2" "$1"
	else
		wget --quiet --tries=3 --output-document="$2" "$1"
	fi
}

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d ' ' -f 1
	else
		shasum -a 256 "$1" | cut -d ' ' -f 1
	fi
}

install_release() { # tag os arch
	tag=$1
	version=${tag#v}
	archive=meshroll_${version}_$2_$3.tar.gz
	checksums=meshroll_${version}_checksums.txt
	base=$server/$repository/releases/download/$tag

	work=$(mktemp -d "${TMPDIR:-/tmp}/meshroll-install.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	download "$base/$checksums" "$work/$checksums" ||
		fail "cannot download $base/$checksums: the release $tag of $repository has no checksums file (is it still being published?)"
	download "$base/$archive" "$work/$archive" ||
		fail "cannot download $base/$archive: the release $tag of $repository has no archive for $2/$3"

	want=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$work/$checksums")
	[ -n "$want" ] || fail "$checksums lists no $archive: not installed"
	got=$(sha256 "$work/$archive")
	if [ "$got" != "$want" ]; then
		rm -f "$work/$archive"
		fail "checksum mismatch: $archive has sha256 $got, $checksums of $tag says $want: not installed"
	fi

	mkdir "$work/unpacked"
	tar -xzf "$work/$archive" -C "$work/unpacked" meshroll ||
		fail "$archive holds no meshroll binary"
	if [ ! -f "$work/unpacked/meshroll" ] || [ -L "$work/unpacked/meshroll" ]; then
		fail "$archive holds no meshroll binary"
	fi
	chmod 0755 "$work/unpacked/meshroll"
	dir=$root/$tag
	mkdir -p "$dir"
	mv -f "$work/unpacked/meshroll" "$dir/meshroll"

	printed=$(env -i MESHROLL_MODE=version "$dir/meshroll") ||
		fail "the meshroll of release $tag ($2/$3) does not run on this runner"
	echo "meshroll $printed: release $tag, $archive, sha256 $got"
	output path "$dir/meshroll"
	output source release
	output version "$tag"
}

case ${1:-install} in
install)
	target=$(platform)
	tag=$(release)
	if [ -n "$tag" ]; then
		install_release "$tag" "${target% *}" "${target#* }"
		exit 0
	fi
	echo "::notice title=meshroll::${repository:-the action}@${ref:-local} is not a release (no tag vX.Y.Z at its commit): building meshroll from the action's source"
	output path "$root/source/meshroll"
	output source build
	output version "${ref:-dev}"
	;;
build)
	: "${BINARY:?BINARY: the path to build meshroll to}"
	command -v go >/dev/null 2>&1 || fail "go is not installed: building meshroll from source needs it"
	mkdir -p "$(dirname "$BINARY")"
	cd "$(dirname "$0")/../.."
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/meshroll/meshroll/internal/app.Version=${ACTION_REF:-dev}" -o "$BINARY" .
	echo "meshroll $(env -i MESHROLL_MODE=version "$BINARY"): built from the source of ${repository:-the action}@${ref:-local}"
	;;
*)
	echo "usage: install.sh [install|build]" >&2
	exit 2
	;;
esac
