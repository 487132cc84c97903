# Shared by the scripts: install what a fresh machine lacks, keep one cargo target directory.
# Every script builds the release profile of the whole workspace (`cargo build --release --workspace`,
# `cargo test --release --workspace`): the server command and the test command share one build, so
# DuckDB's C++ is compiled once. Always `--workspace`, never `-p` alone: cargo unifies features over
# the packages it is given, and another feature set would rebuild the dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/polarway/target}"
mkdir -p "$CARGO_TARGET_DIR"
# The binaries of that build: the scripts' default for POLARWAY_BIN and its siblings.
# shellcheck disable=SC2034  # used by the scripts that source this file
POLARWAY_RELEASE_DIR="$CARGO_TARGET_DIR/release"

# Installs shared by the suites of one scripts/test.sh run, which sets POLARWAY_TEST_RUN_DIR: the
# first suite that installs something records it there and later suites of the same run skip it.
# A script run on its own (no POLARWAY_TEST_RUN_DIR) always installs.
#   run_done KEY VALUE: KEY was recorded in this run with VALUE (e.g. the virtualenv's path).
#   mark_done KEY VALUE: record KEY.
run_done() {
  [ -n "${POLARWAY_TEST_RUN_DIR:-}" ] && [ -f "$POLARWAY_TEST_RUN_DIR/$1" ] &&
    [ "$(cat "$POLARWAY_TEST_RUN_DIR/$1")" = "$2" ]
}
mark_done() {
  if [ -n "${POLARWAY_TEST_RUN_DIR:-}" ] && [ -d "$POLARWAY_TEST_RUN_DIR" ]; then
    printf '%s\n' "$2" >"$POLARWAY_TEST_RUN_DIR/$1"
  fi
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_install PACKAGE...: install from Debian's packages (the package lists are updated once per
# script, and once per scripts/test.sh run).
_apt_updated=""
apt_install() {
  if [ -z "$_apt_updated" ] && ! run_done apt-update yes; then
    as_root apt-get update -qq
    mark_done apt-update yes
  fi
  _apt_updated=1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_apt COMMAND PACKAGE: install PACKAGE unless COMMAND exists.
ensure_apt() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# python3 with venv and ensurepip, which a bare Debian lacks (python3-venv).
ensure_python_venv() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && return 0
  apt_install python3 python3-venv
}

ensure_build_tools() {
  command -v cargo >/dev/null 2>&1 || { echo "Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
  ensure_apt protoc protobuf-compiler   # tonic-prost-build compiles proto/ with protoc
}

# moto_server (PyPI, pinned) in a tools virtualenv: the S3-compatible server of the s3 tests.
ensure_moto() {
  local venv="$HOME/.cache/polarway/tools-venv"
  [ -x "$venv/bin/moto_server" ] && return 0
  ensure_python_venv
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]==5.2.5'
}

# check_gofmt DIR: fail, listing them, if Go files under DIR are not as gofmt writes them.
check_gofmt() {
  local files
  files="$(gofmt -l "$1")"
  [ -z "$files" ] && return 0
  printf '%s\n' "$files" >&2
  echo "the Go files above are not gofmt-formatted: run gofmt -w $1" >&2
  exit 1
}

# Installs that several scripts need (scripts/prepare.sh runs them ahead for scripts/test.sh).
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The protoc plugins at the versions clients/go/gen.sh documents; installed only when missing or
# different (scripts/test-go.sh checks the generated code with them).
ensure_go_protoc_plugins() {
  local gobin
  gobin="$(go env GOPATH)/bin"
  "$gobin/protoc-gen-go" --version 2>/dev/null | grep -qx 'protoc-gen-go v1.36.12' ||
    go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
  "$gobin/protoc-gen-go-grpc" --version 2>/dev/null | grep -qx 'protoc-gen-go-grpc 1.6.2' ||
    go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
}

# grpcurl (scripts/smoke.sh), in Go's bin directory unless one is on PATH.
ensure_grpcurl() {
  command -v grpcurl >/dev/null 2>&1 || [ -x "$(go env GOPATH)/bin/grpcurl" ] ||
    GOFLAGS=-mod=mod go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
}

# npm ci and the build of clients/typescript, once per scripts/test.sh run (the TypeScript and
# cross-language suites both need them; npm ci replaces node_modules, so never two at once).
typescript_build() {
  local dir="$_repo_root/clients/typescript"
  if run_done typescript-build "$dir"; then
    echo "== clients/typescript: npm ci and build done earlier in this run"
    return 0
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
  mark_done typescript-build "$dir"
}
